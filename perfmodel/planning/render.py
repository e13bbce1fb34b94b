"""The text of `perfmodel plan-training`: the table, the answer and the basis of every column
(MFU convention, energy scope per row, cost basis where a device has no price)."""

from __future__ import annotations

from ..search import describe
from ..textfmt import sig3
from .training import Row, TrainingPlanResult

HEADER = ("device", "GPUs", "plan", "days", "80 % band", "M GPU-h", "M USD", "MWh", "MFU %",
          "MFU 6ND %", "TFLOP/s", "free %", "bound by", "mark")


def render(result: TrainingPlanResult, all_rows: bool = False) -> str:
    """The table (Pareto rows, or every row), the answer and the basis of the figures."""
    from ..textfmt import table

    inp = result.inputs
    constrained = bool(inp["days"] or inp["budget_usd"])
    out = [f"plan-training: {inp['model']} on {inp['tokens']:.3g} tokens, "
           f"{inp['global_batch']} x {inp['seq_len']} tokens per step, {inp['precision']}, "
           f"{inp['framework']}, memory headroom {100 * inp['headroom']:g} %"]
    shown = result.rows if all_rows else [r for r in result.rows
                                           if r.pareto or (r.meets and constrained)]
    shown = shown or result.rows
    rows = [_cells(r, constrained) for r in sorted(shown, key=lambda r: (r.days, r.device))]
    out.append("")
    if rows:
        out.append(table(rows, header=HEADER))
        out += _legend(result, shown, constrained, all_rows)
    else:
        out.append("no plan fits on any device and GPU count tried:")
        out += [f"  {d['no_plan']}" for d in result.work.get("per_device", {}).values()
                if d.get("no_plan")]
    out.append("")
    out += _answer(result, constrained)
    w = result.work
    out.append(f"searched {w['considered']:,} whole plans ({w['plans_modelled']:,} modelled "
               f"after axis values with no valid plan were dropped, in {w['modelled']:,} mesh "
               f"cells incl. products off the GPU counts; {w['valid']:,} valid, "
               f"{w['fitting']:,} fit) in "
               f"{w['search_seconds']:.2f} s; rows predicted with bands and energy, "
               f"{w['seconds']:.2f} s in all")
    out.append(f"price basis: {inp['prices']['basis']} (hardware_specs/prices.yaml); "
               f"energy: {_energy_bases(result.rows)}; band: {inp['band']}")
    out += [f"note: {x}" for x in result.notes]
    out += [f"warning: {x}" for x in result.warnings]
    return "\n".join(out)


def _cells(r: Row, constrained: bool) -> tuple:
    rng = r.scaled(r.days)
    mwh = "-" if r.energy_mwh is None else sig3(r.energy_mwh) + ("*" if not r.energy_node
                                                                 else "")
    gpus = f"{r.gpus} of {r.gpus_billed}" if r.gpus_billed else r.gpus
    return (r.device, gpus, describe(r.plan), sig3(r.days),
            f"{sig3(rng[0])}-{sig3(rng[1])}" if rng else "-", sig3(r.gpu_hours / 1e6),
            sig3(r.usd / 1e6) if r.usd is not None else "no price", mwh,
            f"{100 * r.mfu:.1f}" if r.mfu is not None else "-",
            f"{100 * r.mfu_6nd:.1f}" if r.mfu_6nd is not None else "-",
            f"{r.model_tflops_per_gpu:.0f}" if r.model_tflops_per_gpu is not None else "-",
            f"{100 * r.plan['memory_headroom']:.0f}",
            ", ".join(f"{b['term']} {100 * b['share']:.0f}%" for b in r.bound),
            _mark_cell(r, constrained))


def _mark_cell(r: Row, constrained: bool) -> str:
    """"P" (Pareto), "ok" (meets --days / --budget across its 80 % band) or "may miss
    --days" (meets it at the point estimate only), "!" (may not fit)."""
    meets = ""
    if constrained and r.meets:
        meets = ("ok" if not r.may_miss else
                 " may miss " + ", ".join(f"--{m}" for m in r.may_miss))
    return ("P" if r.pareto else "") + meets + ("!" if r.may_not_fit else "")


def _legend(result: TrainingPlanResult, shown: list[Row], constrained: bool,
            all_rows: bool) -> list[str]:
    unpriced = sorted({r.device for r in result.rows if r.usd is None})
    by_hours = (f"; for {', '.join(unpriced)} (no price) by GPU-hours" if unpriced else "")
    out = ["P: time-vs-cost Pareto (no row both faster and cheaper" + by_hours + ")"
           + ("; ok: meets --days / --budget across its 80 % band" if constrained else "")
           + ("" if all_rows else "; --all shows every GPU count"),
           "MFU %: model FLOPs of Megatron's convention (as predict's mfu), attention counted "
           "non-causally, no recompute (Korthikanti et al. 2022 eq. 7; PaLM App. B), TFLOP/s "
           "the same FLOPs per GPU; MFU 6ND %: 6 x active parameters incl. embeddings x "
           "tokens/s / (GPUs x dense peak), no attention term (Chinchilla's N, Hoffmann et al. "
           "2022; Kaplan et al. 2020's non-embedding N gives less)"]
    if any(r.may_miss for r in shown):
        out.append("may miss --days / --budget: the point estimate meets it, the upper end of "
                   "the 80 % band does not; the answer prefers a row that meets the constraints "
                   "across its band when one exists (plan-serving's 'may miss SLO' rule)")
    if any(r.may_not_fit for r in shown):
        out.append("!: may not fit: the 80 % band of the memory per GPU reaches past the "
                   "device's memory (the fit rule uses the point estimate with the headroom; "
                   "a larger --headroom excludes such plans)")
    if any(r.energy_node is False for r in shown):
        others = any(r.energy_node for r in shown)
        out.append("*: MWh of the GPUs only (no sourced system power for the node)"
                   + ("; other rows add the node's power beyond its GPUs (an upper bound)"
                      if others else ""))
    return out


def _answer(result: TrainingPlanResult, constrained: bool) -> list[str]:
    ans, why = result.choice()
    if ans is None:
        return ([f"answer: no device and GPU count meets the constraints ({why['text']})"]
                if constrained else [])
    cost = f", {ans.usd / 1e6:.3g} M USD" if ans.usd is not None else ""
    rng = ans.scaled(ans.days)
    miss = ", may miss " + ", ".join(f"--{m}" for m in ans.may_miss) if ans.may_miss else ""
    band = f" (80 % band {rng[0]:.1f}-{rng[1]:.1f}{miss})" if rng else ""
    racks = f" (of {ans.gpus_billed} paid for: whole racks)" if ans.gpus_billed else ""
    out = [f"answer: {ans.gpus} x {ans.device}{racks}, {ans.days:.1f} days{band}, "
           f"{ans.gpu_hours / 1e6:.3g} M GPU-hours{cost} ({describe(ans.plan)})",
           f"  chosen as: {why['text']}"]
    if ans.usd is None:
        out.append(f"  no price for {ans.device} in hardware_specs/prices.yaml: chosen by "
                   "days and GPU-hours (for one device the same row as at any price per "
                   "GPU-hour)")
    return out


def _energy_bases(rows: list[Row]) -> str:
    """Each distinct energy basis with the devices it applies to."""
    by_basis: dict[str, list[str]] = {}
    for r in rows:
        if r.energy_basis and r.device not in by_basis.setdefault(r.energy_basis, []):
            by_basis[r.energy_basis].append(r.device)
    if len(by_basis) == 1:
        return next(iter(by_basis))
    return "; ".join(f"{', '.join(devs)}: {basis}" for basis, devs in by_basis.items()) or "-"


