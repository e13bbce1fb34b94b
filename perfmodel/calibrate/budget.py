"""Time budgets of a calibration run: per run, per table (bench) and per point.

A run with a budget (``--budget-s``; ``--quick`` on a CPU defaults to 60 s, sweeps.yaml) hands
each table a share of what is left when the table starts, in proportion to the table weights
of sweeps.yaml, so time a table does not use goes to the tables after it. Inside a table:

* a point starts only while the table has time left; its timing loop ends at the earlier of
  the table's deadline and ``point_s`` after it starts (``timing.measure(deadline=...)``);
* a point whose single call is predicted (from the dtype probe, ``probe.py``) to take longer
  than the time a point may have is not started;
* what was not measured is not stored, so re-running the command with a larger budget
  measures just those points (the raw file resumes); each table's outcome is stored as a
  ``budget`` record (``raw.budget_record``) and printed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..errors import PerfModelError


@dataclass
class TableBudget:
    """One table's deadline and what happened to its points."""

    bench: str
    budget_s: float  # math.inf: unbounded
    point_s: float
    start: float = field(default_factory=time.perf_counter)
    measured: int = 0
    out_of_time: int = 0  # points not started: the table's time was used up
    over_point_budget: int = 0  # points not started: one call predicted to exceed point_s

    @property
    def deadline(self) -> float:
        return self.start + self.budget_s

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def expired(self) -> bool:
        return self.left_s() <= 0

    def point_deadline(self) -> float | None:
        """When the point starting now must stop (None: no bound at all)."""
        end = min(self.deadline, time.perf_counter() + self.point_s)
        return None if math.isinf(end) else end

    def admits(self, predicted_call_s: float | None) -> bool:
        """Whether to start a point; counts the ones refused."""
        if self.expired():
            self.out_of_time += 1
            return False
        if predicted_call_s is not None and predicted_call_s > min(self.point_s, self.left_s()):
            self.over_point_budget += 1
            return False
        self.measured += 1
        return True

    def used_s(self) -> float:
        return time.perf_counter() - self.start

    def summary(self, planned: int) -> dict:
        return {"table": self.bench, "budget_s": None if math.isinf(self.budget_s)
                else round(self.budget_s, 3), "used_s": round(self.used_s(), 3),
                "point_s": None if math.isinf(self.point_s) else self.point_s,
                "planned": planned, "measured": self.measured,
                "not_started_out_of_time": self.out_of_time,
                "not_started_over_point_budget": self.over_point_budget}

    @property
    def cut(self) -> bool:
        return bool(self.out_of_time or self.over_point_budget)


@dataclass
class Budget:
    """A run's budget; ``table`` hands out the next table's share."""

    run_s: float | None  # None: unbounded
    point_s: float | None
    weights: dict[str, float]
    start: float = field(default_factory=time.perf_counter)

    def left_s(self) -> float:
        if self.run_s is None:
            return math.inf
        return max(0.0, self.start + self.run_s - time.perf_counter())

    def share(self, bench: str, remaining: list[str]) -> float:
        """Seconds for ``bench`` out of what is left, ``remaining`` the tables still to run
        (``bench`` among them)."""
        left = self.left_s()
        if math.isinf(left):
            return math.inf
        total = sum(self.weights.get(b, 1.0) for b in remaining)
        return left * self.weights.get(bench, 1.0) / total

    def table(self, bench: str, remaining: list[str]) -> TableBudget:
        return TableBudget(bench, self.share(bench, remaining),
                           math.inf if self.point_s is None else float(self.point_s))

    def describe(self) -> dict:
        return {"run_s": self.run_s, "point_s": self.point_s, "weights": dict(self.weights)}


def default_budget(cfg: dict, device: str, mode: str, run_s: float | None,
                   point_s: float | None) -> Budget:
    """The budget of a run: command-line values, else the sweeps.yaml defaults.

    ``cfg`` is sweeps.yaml's ``budget`` section. A run budget of 0 means none."""
    for flag, value, low in (("--budget-s", run_s, 0.0), ("--point-budget-s", point_s, 1e-9)):
        if value is not None and not (math.isfinite(value) and value >= low):
            raise PerfModelError(f"{flag} {value:g}: give a number of seconds "
                                 f"{'>= 0 (0: no budget)' if low == 0 else '> 0'}")
    defaults = cfg[device][mode]
    run = defaults["run_s"] if run_s is None else run_s
    point = defaults["point_s"] if point_s is None else point_s
    return Budget(run_s=run or None, point_s=point,
                  weights=dict(cfg["weights"]))
