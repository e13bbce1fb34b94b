"""Plain-text rendering of predictions and specs for the terminal."""

from __future__ import annotations

from .prediction import Prediction
from .textfmt import GIB, gib, percent, seconds, table, with_bands

__all__ = ["GIB", "gib", "percent", "render_prediction", "seconds", "table"]  # the formatters re-exported


def _hardware_tflops(p: Prediction) -> str:
    """Executed FLOP/s per GPU, recompute included: the figure papers such as Narayanan et al.
    2021 (eq. 3) report, HFU's numerator."""
    if p.hardware_tflops_per_gpu is not None:
        return f"{p.hardware_tflops_per_gpu:.1f}"
    flops = (p.breakdown.get("flops") or {}).get("hardware_per_step")
    if flops is None or not p.step_time_s:
        return "-"
    return f"{flops / p.step_time_s / p.num_gpus / 1e12:.1f}"


# head-table label -> (Prediction.ranges field, formatter): the rows that show their band
# (TFLOP/s and MFU bands are in --json; their rows keep the value last, as scripts read it)
_BANDED = {
    "step time": ("step_time_s", seconds),
    "tokens/s (system)": ("tokens_per_s", lambda x: f"{x:,.0f}"),
    "TTFT (prefill)": ("ttft_s", seconds), "TPOT": ("tpot_s", seconds),
    "end-to-end latency": ("e2e_latency_s", seconds),
    # serving: the simulated requests' medians (SERVING_HEAD)
    "TTFT (median, from the send)": ("ttft_s", seconds), "TPOT (median)": ("tpot_s", seconds),
    "end-to-end latency (median)": ("e2e_latency_s", seconds),
    "generated tokens/s (system)": ("tokens_per_s", lambda x: f"{x:,.1f}"),
    "memory per GPU": ("memory_per_gpu_bytes", gib),
    # an engine that fills its budget: the band is the KV pool's (uncertainty.fills_budget);
    # with attention DP the pool is one rank's and the instance row carries its own band
    "KV cache (engine, tokens per instance)": ("kv_cache_tokens", lambda x: f"{x:,.0f}"),
    "KV cache (engine, tokens per DP rank)": ("kv_cache_tokens", lambda x: f"{x:,.0f}"),
}


#: the head's latency rows. Inference: the batch's own prefill, decode step and request.
#: Serving: the medians of the simulated requests (Prediction.ttft_s = serving.ttft_s.p50,
#: which includes the wait behind other requests' prefills; serving.predict), not a pass
INFERENCE_HEAD = ("TTFT (prefill)", "TPOT", "end-to-end latency")
SERVING_HEAD = ("TTFT (median, from the send)", "TPOT (median)", "end-to-end latency (median)")


def _energy_rows(p: Prediction) -> list[tuple[str, str]]:
    """Power limit, sustained compute clock and energy (perfmodel.power; docs/modelling.md)."""
    from .textfmt import joules

    e = p.breakdown.get("energy")
    if not e or p.energy_per_step_j is None:
        return []
    step = "training step" if p.kind == "training" else "decode step"
    rows = [("power limit per GPU", f"{e['power_limit_w']:.0f} W"),
            ("compute clock (vs default limit)", f"{e['compute_clock_ratio']:.3f}"),
            ("mean GPU board power", f"{p.avg_power_per_gpu_w:.0f} W"),
            (f"energy per {step} (system)", joules(p.energy_per_step_j)),
            ("energy per token", joules(p.energy_per_token_j or 0.0))]
    if p.kind == "training" and p.energy_per_token_j:
        rows.append(("energy per 10^12 tokens", f"{p.energy_per_token_j * 1e12 / 3.6e9:,.1f} MWh"))
    rows.append(("node overhead in energy", percent(e["node_overhead_j"] / e["energy_j"])
                 + (" (upper bound)" if e["node_overhead_j"] else " (not sourced)")))
    return rows


def _a2a_split_rows(moe: dict, phases: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The all-to-all on the critical path and the part a two-micro-batch overlap hides
    (inference.py ``all_to_all_exposed_s`` / ``all_to_all_overlapped_s``), when some phase
    overlaps it; without an overlap all of it is exposed and the rows would repeat
    ``all_to_all``."""
    if not any((moe[ph].get("all_to_all_overlapped_s") or 0.0) > 0 for ph in phases):
        return []
    return [(f"all_to_all {what}", *(seconds(moe[ph].get(f"all_to_all_{what}_s") or 0.0)
                                     for ph in phases))
            for what in ("exposed", "overlapped")]


def memory_fits(p: Prediction) -> bool:
    """Whether the prediction's memory fits its GPUs: ``p.fits``, except that a named engine's
    verdict on an inference scenario (predictors.with_engine: ``fits`` = it starts, holds a
    request and runs the whole batch at once) also counts what its scheduler runs at once
    (llama.cpp's n_parallel slots, max_num_seqs), which is not memory: there the memory
    verdict is whether the engine starts (engine_fit.fails_to_start: its memory plan, weights
    and reserves and KV pool, fits the device), and ``p.runnable`` says the rest."""
    e = p.engine or {}
    if p.fits or p.kind != "inference" or "starts" not in e:
        return bool(p.fits)
    return bool(e["starts"])


def _fits(p: Prediction) -> str:
    """yes / NO about memory (``memory_fits``) on the point estimate, and a warning where the
    memory's 80 % band reaches past the device (as plan-training and search flag such rows,
    ``search.may_not_fit``); whether it runs as specified is the "runnable" row."""
    from .search import may_not_fit

    if not memory_fits(p):
        return "NO"
    if may_not_fit(p.ranges, p.memory_capacity_bytes):
        hi = p.ranges["memory_per_gpu_bytes"][1]
        return (f"yes at the point estimate; MAY NOT FIT: the 80 % range reaches {gib(hi)}, "
                f"past {gib(p.memory_capacity_bytes)}")
    return "yes"


def _runnable_rows(p: Prediction) -> list[tuple[str, str]]:
    """A "runnable as specified: NO" row when the prediction does not run as specified for a
    reason other than memory (the NOT RUNNABLE line above the table says why), so that the
    "fits" row stays about memory."""
    if p.runnable is not False or not memory_fits(p):
        return []
    return [("runnable as specified", "NO (memory fits; see NOT RUNNABLE above)")]


def _budget_rows(p: Prediction) -> list[tuple[str, str]]:
    """A named engine's own budget, when it is not the whole device (vLLM's
    gpu_memory_utilization x the memory CUDA reports; engine_memory.budget_bytes)."""
    e = p.engine or {}
    if e.get("budget_bytes") is None or e["budget_bytes"] >= p.memory_capacity_bytes:
        return []
    return [(f"{e['engine']} budget per GPU",
             f"{gib(e['budget_bytes'])} ({e['fraction_name']} {e['fraction']:g})")]


def _kv_sequence_rows(p: Prediction, scenario=None) -> list[tuple[str, str]]:
    """Max concurrent sequences and one sequence's KV on one GPU (its TP rank's heads, its
    pipeline stage's layers, not the sequence's whole KV cache), both at the same stated
    context. Inference: prompt_len + output_len (the batch's requests; KV cache per sequence
    and the count of them beside the weights, inference._memory / engine_fit). Serving: the
    mean prompt + output of the simulated requests, the context max_concurrent_sequences
    divides the last (decode) instance's pool by (serving.predict: KV tokens // mean
    context); the sequence's KV is that context x the pool's bytes per token on one GPU
    (breakdown.memory kv_cache over the tokens of one attention-DP group's pool), so that
    pool / KV per sequence x attention_dp = the count beside it (to the floor)."""
    s = p.serving or {}
    wl, inst = s.get("workload") or {}, ((s.get("deployment") or {}).get("instances") or [{}])
    pool = (p.breakdown.get("memory") or {}).get("kv_cache")
    first, last = inst[0], inst[-1]
    same = all(first.get(k) == last.get(k) for k in ("tp", "pp", "attention_dp", "kv_tokens"))
    if s and wl.get("prompt_len_mean") is not None and last.get("kv_tokens") and pool and same:
        ctx = wl["prompt_len_mean"] + wl["output_len_mean"]
        per_gpu_tokens = last["kv_tokens"] / last.get("attention_dp", 1)
        at = f"{ctx:,.0f} tokens: mean prompt + output"
        return [("max concurrent sequences", f"{p.max_concurrent_sequences:,.0f} (at {at})"),
                ("KV cache per sequence (per GPU)",
                 f"{gib(pool / per_gpu_tokens * ctx)} (at {at})")]
    at = "mean prompt + output" if s else "prompt_len + output_len"
    if not s and scenario is not None:  # the inference scenario's own lengths
        from .resolve import as_scenario

        inf = as_scenario(scenario).inference_or_default()
        at = f"{inf.prompt_len + inf.output_len:,} tokens: prompt_len + output_len"
    return [("max concurrent sequences", f"{p.max_concurrent_sequences:,.0f} (at {at})"),
            ("KV cache per sequence (per GPU)",
             f"{gib(p.kv_cache_bytes_per_sequence)} (at {at})")]


KV_ROW = "KV cache (engine, tokens per instance)"
KV_RANK_ROW = "KV cache (engine, tokens per DP rank)"


def _kv_capacity_rows(p: Prediction) -> list[tuple]:
    """An engine's KV pool in tokens with its band, where its memory is its budget and the
    band moved there (uncertainty.fills_budget: ``ranges.kv_cache_tokens``). The engine's
    figure is one attention-DP rank's (each rank has its own pool and logs it, SGLang's
    max_total_num_tokens; engine_report.with_dp_ranks): with attention DP the row says so and
    the instance's total (x attention_dp) follows, its band the rank's band x attention_dp."""
    band = (p.ranges or {}).get("kv_cache_tokens")
    e = p.engine or {}
    tokens = e.get("kv_cache_tokens")
    if not band or tokens is None:
        return []
    adp = e.get("attention_dp") or 1
    if adp <= 1:
        return [(KV_ROW, f"{tokens:,.0f}")]
    total = e.get("kv_cache_tokens_per_instance", tokens * adp)
    return [(KV_RANK_ROW, f"{tokens:,.0f}"),
            (KV_ROW, f"{total:,.0f} ({adp} DP ranks x {tokens:,.0f})",
             f"(80 % range {band[0] * adp:,.0f} - {band[1] * adp:,.0f})")]


def _memory_note(p: Prediction) -> str:
    """A note when memory per GPU is an engine's budget and so has no band."""
    from .uncertainty import fills_budget

    return "; the engine's budget, no band" if fills_budget(p) else ""


def render_prediction(p: Prediction, show_ops: bool = False, scenario=None) -> str:
    """The prediction as text. ``scenario`` (a Scenario or its path, optional): the inference
    scenario it came from, whose prompt_len + output_len the KV rows state as their context
    (an inference prediction does not carry its request lengths)."""
    title = f"{p.kind}: {p.model} on {p.num_gpus} x {p.device}"
    if p.name:
        title = f"{p.name} -- {title}"
    out = [title, f"calibration: {p.calibration['label']} ({p.calibration['id']})", ""]
    proxy = p.calibration.get("proxy")
    if proxy:  # a profile borrowed by the device's calibration_proxy (same silicon)
        out[-1:-1] = [f"  borrowed from {proxy['device']}: {proxy['basis']}",
                      f"  differs: {proxy['differs']}"]
    if p.kind == "training":
        head = [
            ("step time", seconds(p.step_time_s)),
            ("tokens/s (system)", f"{p.tokens_per_s:,.0f}"),
            ("model TFLOP/s per GPU (no recompute)", f"{p.tflops_per_gpu:.1f}"),
            ("hardware TFLOP/s per GPU (incl. recompute)", _hardware_tflops(p)),
            ("MFU (Megatron FLOPs)", percent(p.mfu)),
            ("MFU (6ND)", percent(p.mfu_6nd)),
            ("HFU (incl. recompute)", percent(p.hfu)),
            ("micro-batches per step", f"{p.num_microbatches:g}"),
        ]
    else:
        ttft, tpot, e2e = SERVING_HEAD if p.kind == "serving" else INFERENCE_HEAD
        head = [
            (ttft, seconds(p.ttft_s)),
            (tpot, seconds(p.tpot_s)),
            (e2e, seconds(p.e2e_latency_s)),
            ("generated tokens/s (system)", f"{p.tokens_per_s:,.1f}"),
            *_decode_rate_rows(p),
            *_kv_sequence_rows(p, scenario),
            *_kv_capacity_rows(p),
        ]
    basis = f" ({p.memory_capacity_basis})" if p.memory_capacity_basis else ""
    head += [("memory per GPU", f"{gib(p.memory_per_gpu_bytes)} of "
                                 f"{gib(p.memory_capacity_bytes)}{basis}{_memory_note(p)}"),
             *_budget_rows(p), ("fits", _fits(p)), *_runnable_rows(p), *_energy_rows(p)]
    if p.runnable is False:  # the figures stay, marked: what it would take if it ran
        out += [f"NOT RUNNABLE as specified: {p.not_runnable_reason or 'it does not fit'}",
                "(the times and rates below are what it would take if it ran)", ""]
    own = {r[0] for r in head if len(r) > 2}  # rows that carry their own band cell
    banded = {k: v for k, v in _BANDED.items() if k not in own}
    out.append(table(with_bands(head, p.ranges, banded)))  # docs/uncertainty.md
    out.append("")
    if p.engine:  # SGLang's per-rank figures are in it already (predictors.with_engine)
        from .engine_report import render_engine

        out += [render_engine(p.engine), ""]
    if p.kind == "training":
        parts = p.breakdown["time"]
        total = p.step_time_s
        out.append(table([(k, seconds(v), f"{100 * v / total:.1f}%") for k, v in parts.items()
                          if v > 1e-9 * total], header=("time", "seconds", "share")))
        out.append("")
        comm = p.breakdown["communication"]
        if any(v["total_s"] > 0 for v in comm.values()):
            out.append(table([(k, seconds(v["total_s"]), seconds(v["exposed_s"]))
                              for k, v in comm.items() if v["total_s"] > 0],
                             header=("communication", "total", "exposed")))
    else:
        if p.kind == "serving":
            from .serving.report import render_serving

            out.append(render_serving(p))
            out.append("")
        if p.kind == "serving" and (line := _zero_load_caption(p)):
            out.append(line)
        for phase in ("prefill", "decode_step"):
            part = p.breakdown[phase]
            out.append(table([(k, seconds(v)) for k, v in part.items() if v > 0],
                             header=(phase, "seconds")))
            if phase == "decode_step" and (line := _decode_step_line(p)):
                out.append(line)
            out.append("")
        if "moe" in p.breakdown:  # routed-expert bytes and the all-to-all (moe_parallel.py)
            moe = p.breakdown["moe"]
            phases = ("prefill", "decode_step")
            rows = [("routed-expert weights read per GPU", *(
                        gib(moe[ph]["routed_expert_weight_bytes_per_gpu"]) for ph in phases)),
                    *[(k.replace("_s", ""), *(seconds(moe[ph][k]) for ph in phases))
                      for k in ("all_to_all_s", "dispatch_s", "combine_s")],
                    *_a2a_split_rows(moe, phases),
                    ("all-to-all kernels", *(moe[ph]["a2a_mode"] or "-" for ph in phases))]
            out.append(table(rows, header=("MoE layers", "prefill", "decode step")))
            # the grouped-GEMM table each phase read (profile.moe_table): a sentence each, as
            # a proxy's reason is longer than a column
            tables = {ph: moe[ph].get("grouped_gemm_table") or "-" for ph in phases}
            if tables["prefill"] == tables["decode_step"]:
                out.append(f"grouped-GEMM table: {tables['prefill']}")
            else:
                out += [f"grouped-GEMM table, {ph.replace('_', ' ')}: {t}"
                        for ph, t in tables.items()]
            out.append("")
    if not p.engine:  # with an engine its table above is the memory table (its categories)
        out.append("")
        out.append(table([(k, gib(v)) for k, v in p.breakdown["memory"].items() if v > 0],
                         header=("memory", "per GPU")))
    out.append("")
    out.append(_bound_line(p))
    if show_ops:
        out.append("")
        out.append(table([(o.name, o.cls, o.phase, f"{o.calls:g}", f"{o.intensity:.1f}",
                           o.bound, seconds(o.time_s), seconds(o.total_s)) for o in p.ops],
                         header=("operator", "class", "phase", "calls", "FLOP/B", "bound",
                                 "per call", "total")))
    for a in p.assumptions or ():  # what was assumed (prediction.training_assumptions)
        out.append(f"assumed: {a}")
    for w in p.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out)


def _decode_rate_rows(p: Prediction) -> list[tuple[str, str]]:
    """The decode steps' own rate (Prediction.decode_tokens_per_s: batch x replicas / TPOT,
    no prefill), system and per GPU: what a decode instance's published tok/s compares with
    (the generated tokens/s row above includes the batch's prefill)."""
    if p.decode_tokens_per_s is None or p.decode_tokens_per_s_per_gpu is None:
        return []
    return [("decode tokens/s (system)",
             f"{p.decode_tokens_per_s:,.1f} ({p.decode_tokens_per_s_per_gpu:,.1f} per GPU; "
             "decode steps only, batch / TPOT)")]


def _zero_load_caption(p: Prediction) -> str:
    """What a serving prediction's prefill / decode_step tables are: one pass of the
    instance's smallest batch at zero load, the inference model's costs the simulation's
    iterations are built on (serving.predict ``_baseline``): one request of the median prompt
    and output alone, or with attention DP one on each DP group (batch attention_dp); not the
    simulated load, whose steps are the latency table's time between tokens."""
    zero = p.breakdown.get("zero_load_single_request") or {}
    if not zero:
        return ""
    inst = ((p.serving or {}).get("deployment") or {}).get("instances") or [{}]
    adp = int(inst[0].get("attention_dp") or 1)
    req = f"{zero['prompt_len']:,} prompt / {zero['output_len']:,} output tokens (the median)"
    who = (f"one request of {req} on each of the {adp} attention-DP groups (batch {adp})"
           if adp > 1 else f"one request of {req} alone")
    return (f"one pass at zero load, {who}: the per-pass costs the simulation is built on; "
            "under the load above, a decode step is the time between tokens")


def _decode_step_line(p: Prediction) -> str:
    """At which contexts the decode-step table is taken (the mean over the contexts TPOT
    averages, inference._context_mean), and why TPOT differs from its total when it does."""
    ctx = p.decode_context_tokens
    if not ctx:
        return ""
    line = (f"decode step: mean over the contexts TPOT averages ({ctx[0]:,.0f}-{ctx[1]:,.0f} "
            f"tokens, mean {ctx[2]:,.1f})")
    total = p.breakdown["decode_step"]["total_s"]
    if p.tpot_s and abs(p.tpot_s - total) > 1e-9 * max(total, 1e-30):
        line += (f"; TPOT {seconds(p.tpot_s)} is not its total: speculative decoding's tokens "
                 "per verification step or an uneven pipeline's pacing")
    return line


def _bound_line(p: Prediction) -> str:
    """Compute- vs memory-bound share of operator time (Prediction.bound_summary): the step's,
    or each phase of a request on its own."""
    def share(split: dict[str, float]) -> str:
        total = sum(split.values()) or 1.0
        return (f"{100 * split['compute'] / total:.0f}% compute-bound, "
                f"{100 * split['memory'] / total:.0f}% memory-bound")
    bounds = p.bound_summary
    if p.kind == "training":
        return f"operator time: {share(bounds.get('step', {'compute': 0.0, 'memory': 0.0}))}"
    names = {"prefill": "prefill", "decode": "each decode step"}
    return "operator time: " + "; ".join(f"{name} {share(bounds[phase])}"
                                         for phase, name in names.items() if phase in bounds)
