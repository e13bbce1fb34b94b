"""How far a measured profile can be trusted, from its raw records.

A point converges when the confidence interval of its median reached the stop rule's
tolerance (``timing.measure``). On a loaded or throttled machine most points stop at a cap
instead, and their medians carry the other tenants' time: a CPU profile with 85 % of its points
unconverged predicted 6-9x off (issue 12). Such a profile is ``poor``: written with a loud
warning, refused by ``calibrate --strict``, and every prediction made from it says so. A run
whose budget left points unmeasured is ``partial``.
"""

from __future__ import annotations

from ..profile import ProfileQuality
from .probe import rates
from .raw import BENCHES

MIN_CONVERGED = 0.5  # below this fraction of converged points a profile is poor


def assess(records: list[dict]) -> ProfileQuality:
    points = [r for r in records if r.get("bench") in BENCHES]
    ok = [r for r in points if r.get("status") == "ok"]
    converged = sum(bool((r.get("stats") or {}).get("converged")) for r in ok)
    frac = converged / len(ok) if ok else 0.0
    not_measured = sum(b["stats"]["not_started_out_of_time"]
                       + b["stats"]["not_started_over_point_budget"]
                       for b in _last_run_budgets(records))
    slow = sorted(d for d, rate in rates(records).items() if not rate.supported)
    notes = []
    if frac < MIN_CONVERGED:
        notes.append(f"only {frac:.0%} of {len(ok)} measured points converged (a loaded or "
                     "throttled machine?): times are noisy; re-run on an idle machine")
    if not_measured:
        notes.append(f"{not_measured} planned points were not measured within the time budget")
    verdict = "poor" if frac < MIN_CONVERGED else "partial" if not_measured else "good"
    return ProfileQuality(verdict=verdict, points_ok=len(ok), converged_fraction=round(frac, 4),
                          not_measured=not_measured, unsupported_dtypes=slow, notes=notes)


def _last_run_budgets(records: list[dict]) -> list[dict]:
    """The budget records of the latest run (an earlier run's cut points may since be
    measured)."""
    budgets = [r for r in records if r.get("bench") == "budget"]
    if not budgets:
        return []
    last = max(r["params"]["run"] for r in budgets)
    return [r for r in budgets if r["params"]["run"] == last]
