"""80 % bands on a prediction, from two measured error sources (docs/uncertainty.md).

(a) Calibration residuals. Each fitted table of the profile records the held-out residuals of
    the core's kernel / collective times, log(measured / predicted), at ``RESIDUAL_LEVELS``
    (``FitError.log_ratio_quantiles``; a table with only a stated band ``uncertainty[table]``
    = p90 |log ratio| gets a normal distribution with that p90). The prediction's time
    breakdown by operator class (GEMM, grouped GEMM, attention per phase, elementwise,
    optimizer, each communication kind) is scaled by one draw of its class's residual per
    Monte-Carlo sample: **fully correlated within a class** (a model's operators of one class
    share shapes, and the held-out residuals are mostly systematic curve error over shape
    regions, so they do not average out over layers), **independent across classes** (separate
    kernels, separate tables, separate fits). Monte Carlo rather than quadrature because the
    residuals are skewed (decode attention, grouped GEMMs) and the shares differ per scenario.
    The pipeline bubble scales with the stage time, so it follows the other terms; memory has
    no calibration residual. A share of a class's time takes the residuals of the table that
    decided it, as the roofline recorded it when it timed the operator (``OpTimes.decided``,
    a prediction's ``OpReport.timed_by``: an fp8 prefill core's ``attention.prefill_fp8``
    curve, a weight-only GEMM's floor ``gemm.fp8``); the band times nothing again.

(b) Validation error of comparable cases, ``validation/error_bands.json`` (written by
    ``perfmodel validate --write-bands``, ``perfmodel.validate.bands``): split-conformal
    bounds (Vovk, Gammerman & Shafer 2005; Lei et al. 2018, JASA 113(523), sec. 2.2) of the
    signed log error of the quantity (step time, TTFT, TPOT, end-to-end latency, memory), one
    per tail (``conformal_interval``: the two one-sided bounds at LO_P / HI_P, so a
    one-sided model error gives a one-sided band), from the first group with at least
    ``MIN_GROUP_CASES`` cases from ``MIN_GROUP_SOURCES`` sources of: kind+quantity+stack+device
    class, kind+quantity+device class, kind+quantity, kind+dimension, and for times any kind.
    A prediction made with the default (uncalibrated) profile reads first the same chain of
    the default profile's groups (``default/...``: every published case re-predicted with
    calibration/default.json, ``DEFAULT_PROFILE``), whose errors are the flat documented
    efficiencies', not a calibrated profile's (docs/uncertainty.md, "Uncalibrated
    predictions").

Memory per GPU follows what is uncertain in it. An engine that fills a budget (vLLM
``gpu_memory_utilization`` x the memory CUDA reports, SGLang's ``mem_fraction_static``)
allocates its KV cache to the rest of it, so once it starts its memory per GPU is the budget,
fixed by the launch option and the device: no band (``range_basis`` says why); the error of
the weights and activations the model may make moves into the KV capacity, and the memory
group's band is applied to the engine's KV tokens instead (``kv_cache_tokens``; the
validation cases measure a pool in tokens as a memory quantity, ``METRIC_QUANTITY``), its
upper end at most what the budget leaves beside the weights. Elsewhere memory per GPU keeps
its band, whose lower end never goes below the weights a GPU holds (their bytes follow
from the parameter counts and formats; ``memory_band``).

Combined: per side the wider of (a) and (b) (a superset of a valid conformal set is valid;
kernel error is already inside the validation errors, so adding the two would count it twice),
and never excluding the point estimate. A quantity with neither (a memory group without
enough cases and sources) gets no band, not a zero one.
``ranges`` is a plain dict metric -> [lo, hi] (the dashboard reads it); a serving prediction's
percentiles and throughputs are in ``serving_ranges`` (``serving_ranges()``), banded by the
same ratio as the p50 of their quantity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .comm import EP_ALL_TO_ALL
from .profile import RESIDUAL_LEVELS, CalibrationProfile, fallback_key

LEVEL = 0.8  # central probability of every band
LO_P, HI_P = (1 - LEVEL) / 2, (1 + LEVEL) / 2
# split conformal, one tail at a time: the upper bound of n errors is the
# ceil((n + 1) * HI_P)-th smallest, finite only for n >= HI_P / LO_P (= 9 at LEVEL 0.8); a
# smaller group falls back to its parent (conformal_interval, docs/uncertainty.md)
MIN_GROUP_CASES = 9
# the exchangeable unit of a new prediction is a new setup (a new source), so a group must
# have seen at least one source-to-source difference (docs/uncertainty.md: the check is
# leave-one-source-out)
MIN_GROUP_SOURCES = 2
MC_SAMPLES = 2000
MC_SEED = 20261202  # fixed: a prediction's band is reproducible
Z90 = 1.6448536269514722  # standard normal 0.95 quantile: p90 |x| of a centred normal

# quantity a validation metric measures, and the power it depends on it with (metric ~ q^d)
METRIC_QUANTITY: dict[str, tuple[str, int]] = {
    "step_time_s": ("step_time_s", 1), "tokens_per_s": ("step_time_s", -1),
    "tokens_per_s_per_gpu": ("step_time_s", -1), "tflops_per_gpu": ("step_time_s", -1),
    "mfu": ("step_time_s", -1), "peak_memory_gib": ("memory_per_gpu_bytes", 1),
    "ttft_s": ("ttft_s", 1), "prefill_tokens_per_s": ("ttft_s", -1),
    "tpot_s": ("tpot_s", 1), "decode_tokens_per_s": ("tpot_s", -1),
    "e2e_latency_s": ("e2e_latency_s", 1), "output_tokens_per_s": ("e2e_latency_s", -1),
    "output_tokens_per_s_per_gpu": ("e2e_latency_s", -1),
    # a closed-loop serving benchmark's means and medians (validate.cases.SERVING_METRICS):
    # the TTFT and TPOT of a serving prediction, whose percentiles these bands scale
    # (SERVING_RANGE_KEYS); grouped by engine and device class like the others. The mean
    # TTFT is a quantity of its own (``DERIVED_QUANTITY``): a run's mean is pulled by its
    # first wave and any one-off stall (one 70 s stall among 640 requests adds 0.11 s to the
    # mean and nothing to the median: the SGLang 0.5.6 B200 runs of validation/inference/
    # inferencemax_dsr1.yaml, docs/engines.md), so its errors band the predicted mean TTFT,
    # not the percentiles a planner's SLO reads
    "mean_ttft_s": ("mean_ttft_s", 1), "median_ttft_s": ("ttft_s", 1),
    "mean_tpot_s": ("tpot_s", 1), "median_tpot_s": ("tpot_s", 1),
    # an engine's start-up memory (validation/inference/engine_startup.yaml): the weights it
    # loads and its KV pool, in GiB or in tokens (tokens = pool bytes / the KV bytes per token,
    # which the model's shapes fix exactly, so a token count's log error is the pool's byte
    # error). Parts of memory per GPU: the comparable cases of an inference / serving
    # prediction's memory, grouped by engine and device class like the others
    "weights_gib": ("memory_per_gpu_bytes", 1), "kv_cache_gib": ("memory_per_gpu_bytes", 1),
    "kv_cache_tokens": ("memory_per_gpu_bytes", 1),
}
# a quantity measured only as a statistic of another: derived -> base. Its calibration
# residuals are the base's (the same kernels), and where none of its own groups qualifies it
# reads the base's chain (``group_keys``)
DERIVED_QUANTITY: dict[str, str] = {"mean_ttft_s": "ttft_s"}
# Prediction field -> (quantity, power), per kind: the keys of ``ranges``
RANGE_KEYS: dict[str, dict[str, tuple[str, int]]] = {
    "training": {"step_time_s": ("step_time_s", 1), "tokens_per_s": ("step_time_s", -1),
                 "tflops_per_gpu": ("step_time_s", -1), "mfu": ("step_time_s", -1),
                 "memory_per_gpu_bytes": ("memory_per_gpu_bytes", 1)},
    "inference": {"ttft_s": ("ttft_s", 1), "tpot_s": ("tpot_s", 1),
                  "e2e_latency_s": ("e2e_latency_s", 1), "tokens_per_s": ("e2e_latency_s", -1),
                  "memory_per_gpu_bytes": ("memory_per_gpu_bytes", 1)},
    # serving: the simulated p50s carry the per-pass model error (queueing is not
    # re-simulated); tokens/s the inverse of the end-to-end latency's, its upper end capped at
    # the offered load in an open loop (``serving_ranges``)
    "serving": {"ttft_s": ("ttft_s", 1), "tpot_s": ("tpot_s", 1),
                "e2e_latency_s": ("e2e_latency_s", 1), "tokens_per_s": ("e2e_latency_s", -1),
                "memory_per_gpu_bytes": ("memory_per_gpu_bytes", 1)},
}
# the serving section's figures with a band (``Prediction.serving_ranges``): key ->
# (section of ``Prediction.serving``, its entry, quantity, power). Each latency percentile of
# the simulated requests (TTFT, TPOT, inter-token latency = the summary's time between
# tokens, a decode step, and end-to-end) is scaled by its quantity's ratio band, as the p50s
# are; the throughputs are the inverse of the end-to-end latency's (a closed loop of C clients
# serves C / E2E requests per second, Little's law)
SERVING_RANGE_KEYS: dict[str, tuple[str, str, str, int]] = {
    **{f"{name}_p{q}_s": (section, f"p{q}", quantity, 1)
       for name, section, quantity in (("ttft", "ttft_s", "ttft_s"),
                                       ("tpot", "tpot_s", "tpot_s"),
                                       ("itl", "tbt_s", "tpot_s"),
                                       ("e2e", "e2e_s", "e2e_latency_s"))
       for q in (50, 90, 99)},
    "ttft_mean_s": ("ttft_s", "mean", "mean_ttft_s", 1),
    **{k: ("throughput", k, "e2e_latency_s", -1)
       for k in ("output_tokens_per_s", "total_tokens_per_s", "requests_per_s")},
}


def dimension(quantity: str) -> str:
    return "memory" if quantity == "memory_per_gpu_bytes" else "time"


# ---- (a) calibration residuals ------------------------------------------------------------

def _normal_quantiles(p90_abs: float) -> np.ndarray:
    """Quantiles at RESIDUAL_LEVELS of a centred normal whose p90 |x| is ``p90_abs``
    (the standard library's inverse normal CDF: scipy.stats costs ~0.9 s to import)."""
    from statistics import NormalDist

    z = NormalDist()
    return p90_abs / Z90 * np.array([z.inv_cdf(float(q)) for q in RESIDUAL_LEVELS])


def table_residuals(profile: CalibrationProfile) -> dict[str, tuple[np.ndarray, int]]:
    """table -> (quantiles of log(measured / predicted) at RESIDUAL_LEVELS, weight): recorded
    held-out quantiles, else a normal from the stated p90 |log ratio| (weight 1)."""
    out: dict[str, tuple[np.ndarray, int]] = {}
    for fe in profile.fit_errors:
        if fe.log_ratio_quantiles is not None:
            out[fe.table] = (np.asarray(fe.log_ratio_quantiles, float), max(fe.n_test, 1))
    for table, u in profile.uncertainty.items():
        if table not in out:
            n = next((fe.n_test for fe in profile.fit_errors if fe.table == table), 1)
            out[table] = (_normal_quantiles(u), max(n, 1))
    return out


_COLLECTIVES = {"tp": ("all_reduce", "all_gather", "reduce_scatter"),
                "cp": ("send_recv", "all_gather"), "ep": ("all_to_all",),
                "pp": ("send_recv",), "dp": ("all_reduce", "reduce_scatter", "all_gather")}


def _pick(tables: dict, names: list[str]) -> tuple[str, ...]:
    return tuple(n for n in names if n in tables)


def _gemm_tables(tables: dict, prefix: str, dtype: str | None) -> tuple[str, ...]:
    """The GEMM (or grouped-GEMM) tables of ``dtype`` (or the fallback the roofline reads,
    ``profile.fallback_key``), else all of them."""
    named = {t[len(prefix) + 1:]: t for t in tables if t.startswith(prefix + ".")}
    key = fallback_key(dtype or "", named)
    return (named[key],) if key else tuple(named.values())


def _dense_gemm_tables(tables: dict, profile: CalibrationProfile, scenario) -> tuple[str, ...]:
    """The dense GEMM band's table: the one the roofline reads for the scenario's GEMMs,
    ``CalibrationProfile.gemm_table`` of their compute dtype with the engine's kernels of that
    format (engines/<id>.yaml ``gemm.kernels``, as ``Roofline.gemm_kernels``): TensorRT-LLM's
    nvfp4 GEMMs read ``gemm.nvfp4@trtllm_torch_flow`` and take its residuals, vLLM / SGLang /
    generic ``gemm.nvfp4``. Without a scenario or such a table: every GEMM table. The share of
    a weight-only GEMM's time its format's own kernel decided reads that kernel's table
    instead (``_floor_shares``)."""
    dtype, kernels = _dense_gemm(scenario)
    if dtype:
        key, _ = profile.gemm_table(dtype, kernels)
        if key and f"gemm.{key}" in tables:
            return (f"gemm.{key}",)
    return tuple(t for t in tables if t.startswith("gemm."))


def _dense_gemm(scenario) -> tuple[str, tuple[str, ...]]:
    """(compute dtype of the scenario's dense GEMMs, the engine's kernels for it): training its
    precision; inference / serving ``ops.Precision.inference`` of the weights and activations
    on the device's tensor cores (``InferPlan.precision_on``: nvfp4 weights run the fp4 GEMM
    on Blackwell, W4A16 in bf16 on Hopper) with the activations the engine runs the checkpoint
    with there (``formats.engine_activation``, as ``inference.as_engine_runs``)."""
    if scenario is None:
        return "", ()
    if getattr(scenario, "training", None) is not None and scenario.kind == "training":
        return str(scenario.training.precision), ()
    inf = getattr(scenario, "inference", None)
    if inf is None:
        return "", ()
    from .engines import gemm_kernels
    from .formats import asks_weight_only, engine_activation, native_formats, wide_activation
    from .ops import Precision
    from .specs.registry import get_device

    device = get_device(scenario.system.device)
    engine = getattr(scenario, "engine", None)
    name, version, variant = ((engine.name, engine.version, engine.variant) if engine is not None
                              else ("generic", None, None))
    weight_only = asks_weight_only(inf)
    # the activations the engine runs the checkpoint with there (inference.as_engine_runs)
    run = engine_activation(device, name, version, variant, inf.weight_dtype,
                            tuple(sorted(inf.weight_formats.items())), inf.activation_dtype,
                            weight_only)
    dtype = Precision.inference(
        inf.weight_dtype, run.activation_dtype, inf.kv_dtype, inf.quant_group_size,
        native=native_formats(device), weight_only=run.weight_only,
        wide=wide_activation(device)).compute
    if name == "generic":
        return dtype, ()
    return dtype, gemm_kernels(name, dtype, version, variant)


def _floor_shares(tables: dict, ops: list, phases: tuple[str, ...]) -> dict[str, float]:
    """The share of the dense GEMMs' time (operators of ``phases``) a weight-only floor
    decided, per residual table of the kernel that set it: {``gemm.<key>``: share}.

    A weight-only GEMM (``wfmt`` weights in a 16-bit GEMM) is timed on the 16-bit curve, but
    never below the measured ``wfmt`` kernel on the same operator (``roofline.op_times``: ``t
    = max(t, weight_only_floor)``). Where the floor is the larger, the time is that kernel's
    and so is its error: the band reads the ``wfmt`` table's residuals (``gemm.fp8`` on H100
    for fp8 weights with 16-bit activations), not the 16-bit table's. Which one decided is the
    roofline's record of the operator (``OpTimes.decided``, a prediction's
    ``OpReport.timed_by``: (``gemm.<key>``, "floor")), so no pass is timed again here. A
    floor's table without residuals leaves its share with the dense GEMMs' tables."""
    total, floored = 0.0, {}
    for op in ops:
        if op.cls != "gemm" or op.phase not in phases or op.name.startswith("moe.expert"):
            continue  # dense GEMMs only: grouped ones are the experts' band
        total += op.total_s
        table, how = op.timed_by
        if how == "floor" and table in tables and op.total_s > 0:
            floored[table] = floored.get(table, 0.0) + op.total_s
    if total <= 0:
        return {}
    return {k: v / total for k, v in floored.items()}


def _grouped_gemm_tables(tables: dict, profile: CalibrationProfile, scenario
                         ) -> tuple[str, ...] | None:
    """The grouped-GEMM band's tables: the ones the roofline reads for the scenario's experts
    (``Roofline.moe_tables``, the same lookup: the engine's MoE kernels of the experts' format
    under the plan's all-to-all backend, ``moe_parallel.all_to_all``, then
    ``CalibrationProfile.moe_table``): vLLM's bf16 experts on H100 read
    ``moe.bf16@vllm_triton`` and take its residuals, SGLang's ``moe.bf16@sglang_triton``,
    generic ``moe.bf16``. () where the roofline times them on the dense curve; None without a
    scenario of a MoE model (the caller keeps the dtype rule)."""
    if scenario is None or getattr(getattr(scenario, "model", None), "moe", None) is None:
        return None
    from .ops import Precision
    from .roofline import Roofline
    from .specs.registry import get_device

    device = get_device(scenario.system.device)
    if scenario.kind == "training" or getattr(scenario, "inference", None) is None:
        if getattr(scenario, "training", None) is None:
            return None
        prec = Precision.training(str(scenario.training.precision))
        roof = Roofline(device, profile)  # training: the profile's tables as measured
    else:  # the plan the core runs (resolve.inference_inputs), formats as the engine runs them
        from .inference import as_engine_runs
        from .moe_parallel import all_to_all
        from .pipeline import engine_split
        from .resolve import inference_plan

        eng = scenario.engine
        named = eng if eng.name != "generic" else None  # the split the core runs (deploy)
        plan = as_engine_runs(inference_plan(
            scenario.model, engine_split(scenario.model, scenario.parallelism, named),
            scenario.inference, scenario.system.num_gpus,
            request=False, engine=eng.name, engine_version=eng.version,
            engine_variant=eng.variant), device)
        prec = plan.precision_on(device)
        roof = Roofline(device, profile, engine=eng.name, engine_version=eng.version,
                        engine_variant=eng.variant,
                        moe_a2a=all_to_all(plan.tp, plan.attention_dp, plan.ep),
                        moe_ep=plan.ep, moe_race=True)
    expert = prec.for_op("moe.expert.up")
    # the table read and, for the generic engine, every table raced against it
    # (roofline._fastest_moe_kernel): the time may come from any of them
    keys = {k for _, key, _, alt in roof.moe_picks(expert.compute, expert.weight_format)
            for k in (key, *alt)}
    return tuple(f"moe.{k}" for k in sorted(keys) if k and f"moe.{k}" in tables)


def _collective_tables(tables: dict, kind: str, scope: str | None,
                       inference: bool = False) -> tuple[str, ...]:
    """The collective tables of a communication kind at ``scope`` (None: either); inference
    EP runs the MoE dispatch / combine kernels where the profile fits them (comm.EP_ALL_TO_ALL,
    else all-to-all, as comm does)."""
    colls = _COLLECTIVES.get(kind, ())
    if inference and kind == "ep":
        colls = EP_ALL_TO_ALL if any(t.split(".")[1] in EP_ALL_TO_ALL for t in tables
                                     if t.startswith("collective.")) else colls
    return tuple(t for t in tables if t.startswith("collective.")
                 and t.split(".")[1] in colls and scope in (None, t.split(".")[2]))


def _elementwise_tables(tables: dict) -> tuple[str, ...]:
    """The core's elementwise time (measured rate or memory curve) tested per kernel kind;
    ``elementwise.check`` (memory curve alone) is not how the core times them."""
    per_kind = tuple(t for t in tables if t.startswith("elementwise.") and t != "elementwise.check")
    return per_kind or _pick(tables, ["memory"])


@dataclass(frozen=True)
class Term:
    """A share of a quantity's time and the residual tables of its class (key: one draw)."""

    key: str
    seconds: float
    tables: tuple[str, ...]


def _op_share(ops: list, cls: str, phases: tuple[str, ...], pred) -> float:
    """Share of the class's op time (in ``phases``) for which ``pred(op)`` holds."""
    mine = [op for op in ops if op.cls == cls and op.phase in phases]
    total = sum(op.total_s for op in mine)
    if total <= 0:
        return 0.0
    return sum(op.total_s for op in mine if pred(op)) / total


def _class_terms(section: str, parts: dict[str, float], ops: list, tables: dict,
                 gemm_dtype: str | None, phases: tuple[str, ...], attention_phase: str,
                 scopes: dict[str, str], dense: tuple[str, ...] = (),
                 grouped: tuple[str, ...] | None = None,
                 floors: dict[str, float] | None = None) -> list[Term]:
    """Split one breakdown section's times into terms with their residual tables (``dense``:
    the dense GEMMs' tables, ``_dense_gemm_tables``; () = by ``gemm_dtype``; ``grouped``: the
    experts' tables, ``_grouped_gemm_tables``; None = by ``gemm_dtype``; ``floors``: the
    shares of the dense GEMMs' time a weight-only floor decided, per the table of the kernel
    that set it, ``_floor_shares``: those shares take that table's residuals)."""
    terms: list[Term] = []
    for name, t in parts.items():
        t = float(t)
        if name in ("total_s", "pipeline_bubble") or t <= 0:
            continue  # the bubble follows the stage time: left out of the weighted ratio
        if name == "gemm":
            if grouped is None:
                grouped = _gemm_tables(tables, "moe", gemm_dtype)
            share = _op_share(ops, "gemm", phases, lambda op: op.name.startswith("moe.expert"))
            if not grouped:
                share = 0.0  # grouped GEMMs run on the dense GEMM curve
            rest = 1.0
            for table, part in (floors or {}).items():  # its own kernel's time, its error
                terms.append(Term(f"{section}.{table}", t * (1 - share) * part, (table,)))
                rest -= part
            terms.append(Term(f"{section}.gemm", t * (1 - share) * max(rest, 0.0),
                              dense or _gemm_tables(tables, "gemm", gemm_dtype)))
            if share > 0:
                terms.append(Term(f"{section}.moe", t * share, grouped))
        elif name == "attention":
            terms += _attention_terms(section, t, ops, tables, phases, attention_phase)
        elif name == "elementwise":
            terms.append(Term(f"{section}.elementwise", t, _elementwise_tables(tables)))
        elif name == "optimizer":
            terms.append(Term(f"{section}.optimizer", t, _pick(tables, ["memory"])))
        elif name.endswith("_comm"):
            kind = name[:-5]
            inference = attention_phase != "training"  # no group placement in its breakdown
            scope = None if inference else scopes.get(kind, "intra")
            terms.append(Term(f"{section}.{name}", t,
                              _collective_tables(tables, kind, scope, inference)))
        else:  # a term no table describes: counted, with no calibration spread
            terms.append(Term(f"{section}.{name}", t, ()))
    return terms


def _attention_terms(section: str, t: float, ops: list, tables: dict,
                     phases: tuple[str, ...], attention_phase: str) -> list[Term]:
    """The attention time ``t`` of a breakdown section as terms, each share of it with the
    residuals of the curve that timed it: the roofline's record of each attention operator
    (``OpTimes.decided``, ``OpReport.timed_by``: ``attention.<curve>``, the curve
    ``roofline._attention_curve`` picked for its group and the profile has,
    ``CalibrationProfile.attention_curve_key``), so an fp8 prefill core on the profile's
    ``prefill_fp8`` curve (``roofline.FP8_PREFILL_CURVE``) takes ``attention.prefill_fp8``'s
    residuals and a curve the roofline adds later (an attention kind's own prefill curve) its
    own, with no table here. Training splits the forward (and recompute) calls from the
    backward ones, inference has one phase per section; each draws apart (one term per
    curve within them: separate fits). An operator with no recorded curve (none kept, or a
    default efficiency) counts under its phase's own table (``attention.prefill`` forward,
    ``attention.backward`` backward, ``attention.<phase>`` in inference); a curve whose
    table has no residuals reads the forward (prefill) curve's, as the roofline reads the
    prefill curve for a backward call without its own (decode has no such fallback)."""
    if attention_phase == "training":
        bwd = _op_share(ops, "attention", phases, lambda op: op.phase == "bwd")
        buckets = (("fwd", "attention.prefill", 1 - bwd, lambda op: op.phase != "bwd"),
                   ("bwd", "attention.backward", bwd, lambda op: op.phase == "bwd"))
    else:
        buckets = (("", f"attention.{attention_phase}", 1.0, lambda op: True),)
    terms: list[Term] = []
    for bucket, own, share, mine in buckets:
        seconds: dict[str, float] = {}  # curve table -> the bucket's time on it
        for op in ops:
            if op.cls == "attention" and op.phase in phases and mine(op):
                table = op.timed_by[0] or own
                seconds[table] = seconds.get(table, 0.0) + op.total_s
        total = sum(seconds.values())
        if total <= 0:
            seconds, total = {own: 1.0}, 1.0
        key = f"{section}.attention" + (f".{bucket}" if bucket else "")
        for table, s in seconds.items():
            residuals = (_pick(tables, [table]) or (
                _pick(tables, ["attention.prefill"]) if table != "attention.decode" else ()))
            terms.append(Term(key if table == own else f"{key}.{table}",
                              t * share * (s / total), residuals))
    return terms


def _draws(terms: list[Term], tables: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One residual per Monte-Carlo sample per term key: a table drawn in proportion to its
    test points, then its quantile function at a uniform draw (clamped at the outer levels)."""
    levels = np.asarray(RESIDUAL_LEVELS)
    out: dict[str, np.ndarray] = {}
    for term in terms:
        if term.key in out or not term.tables:
            continue
        qs = np.stack([tables[t][0] for t in term.tables])
        w = np.asarray([tables[t][1] for t in term.tables], float)
        rows = qs[rng.choice(len(qs), size=MC_SAMPLES, p=w / w.sum())]
        u = rng.uniform(size=MC_SAMPLES)
        i = np.clip(np.searchsorted(levels, u) - 1, 0, len(levels) - 2)
        frac = np.clip((u - levels[i]) / (levels[i + 1] - levels[i]), 0.0, 1.0)
        n = np.arange(MC_SAMPLES)
        out[term.key] = rows[n, i] * (1.0 - frac) + rows[n, i + 1] * frac
    return out


# Per profile (held by identity, so an id is never reused while cached): its residual tables
# and, per ordered list of drawn terms, the fixed-seed draws. The draws depend only on the
# tables and on which (key, tables) are drawn in which order, not on the terms' seconds, so a
# plan search's row predictions (same profile, same terms) draw once.
_TABLES_CACHE: dict[int, tuple[CalibrationProfile, dict]] = {}
_DRAWS_CACHE: dict[tuple, tuple[CalibrationProfile, dict[str, np.ndarray]]] = {}
_CACHE_LIMIT = 64


def _profile_tables(profile: CalibrationProfile) -> dict[str, tuple[np.ndarray, int]]:
    """``table_residuals(profile)``, computed once per profile object."""
    hit = _TABLES_CACHE.get(id(profile))
    if hit is None or hit[0] is not profile:
        if len(_TABLES_CACHE) >= _CACHE_LIMIT:
            _TABLES_CACHE.clear()
        hit = _TABLES_CACHE[id(profile)] = (profile, table_residuals(profile))
    return hit[1]


def _seeded_draws(profile: CalibrationProfile, terms: list[Term], tables: dict
                  ) -> dict[str, np.ndarray]:
    """``_draws(terms, tables, default_rng(MC_SEED))``, cached per profile and per ordered
    list of the (key, tables) it draws (read-only arrays; identical numbers)."""
    seen: set[str] = set()
    drawn = []
    for t in terms:
        if t.key not in seen and t.tables:
            seen.add(t.key)
            drawn.append((t.key, t.tables))
    key = (id(profile), tuple(drawn))
    hit = _DRAWS_CACHE.get(key)
    if hit is None or hit[0] is not profile:
        draws = _stored_draws(terms, tables, drawn)
        for a in draws.values():
            a.flags.writeable = False
        if len(_DRAWS_CACHE) >= _CACHE_LIMIT:
            _DRAWS_CACHE.clear()
        hit = _DRAWS_CACHE[key] = (profile, draws)
    return hit[1]


def _stored_draws(terms: list[Term], tables: dict, drawn: list[tuple[str, tuple[str, ...]]]
                  ) -> dict[str, np.ndarray]:
    """``_draws(terms, tables, default_rng(MC_SEED))`` (``drawn``: the (key, tables) it draws,
    in its order). Inside ``registry.parse_cache()`` (the CLI's plan-training) the draws are
    kept as bytes under a key of every input they depend on besides code (numpy's version,
    the seed, the sample count, the residual levels, each drawn key's tables and their
    quantiles and weights; ``registry.cached_bytes`` adds the package's code), so a later
    fresh process loads the same numbers without importing numpy.random (~8-17 ms of it on
    this machine, 2026-12-03)."""
    from .specs.registry import cached_bytes

    def make() -> bytes:
        draws = _draws(terms, tables, np.random.default_rng(MC_SEED))
        return b"".join(np.ascontiguousarray(draws[k], "<f8").tobytes() for k, _ in drawn)

    parts = [f"{np.__version__}\0{MC_SEED}\0{MC_SAMPLES}\0".encode(),
             np.asarray(RESIDUAL_LEVELS, "<f8").tobytes()]
    for k, names in drawn:
        parts.append(f"\0{k}\0{len(names)}\0".encode())
        for name in names:
            q, w = tables[name]
            parts.append(f"\0{name}\0{w}\0{np.shape(q)}\0".encode())
            parts.append(np.ascontiguousarray(q, "<f8").tobytes())
    flat = np.frombuffer(cached_bytes("mc-draws", b"".join(parts), make), "<f8")
    if flat.size != len(drawn) * MC_SAMPLES:  # not what make() writes: draw them here
        return _draws(terms, tables, np.random.default_rng(MC_SEED))
    rows = flat.reshape(len(drawn), MC_SAMPLES).copy()  # aligned, of its own
    return {k: rows[i] for i, (k, _) in enumerate(drawn)}


def _ratio_samples(terms: list[Term], draws: dict[str, np.ndarray]) -> np.ndarray:
    """Samples of (true time / predicted time) of the sum of ``terms``."""
    total = sum(t.seconds for t in terms)
    if total <= 0:
        return np.ones(MC_SAMPLES)
    acc = np.zeros(MC_SAMPLES)
    for t in terms:
        acc = acc + t.seconds * (np.exp(draws[t.key]) if t.key in draws else 1.0)
    return acc / total


def _quantile(samples: np.ndarray, p: float) -> float:
    """``float(np.quantile(samples, p))`` for a 1-D float sample, computed as numpy's default
    method does it (Hyndman & Fan 1996 type 7: index (n - 1) p, then numpy's two-sided lerp,
    numpy/lib/_function_base_impl.py ``_quantile``, ``_get_indexes``, ``_lerp``), so the
    numbers are identical; without np.quantile's np.unique, whose masked-array check imports
    numpy.ma (~7 ms of a fresh process)."""
    a = np.sort(samples)
    n = a.size
    if np.isnan(a[-1]):  # NaNs sort last; numpy returns NaN
        return float(a[-1])
    v = (n - 1) * p
    lo = math.floor(v)
    if v >= n - 1:
        lo = hi = n - 1
    elif v < 0:
        lo = hi = 0
    else:
        hi = lo + 1
    t = v - lo
    x, y = float(a[lo]), float(a[hi])
    d = y - x
    return y - d * (1 - t) if t >= 0.5 else x + d * t


def calibration_ratios(pred, profile: CalibrationProfile, scenario=None
                       ) -> dict[str, tuple[float, float]]:
    """(a): quantity -> (lo, hi) of true / predicted at LEVEL, from the profile's residuals
    propagated through the prediction's time breakdown. (1, 1) where nothing is calibrated."""
    tables = _profile_tables(profile)
    dtype = _gemm_dtype(scenario)  # the tables' dtype where no scenario says more
    dense = _dense_gemm_tables(tables, profile, scenario)
    grouped = _grouped_gemm_tables(tables, profile, scenario)
    bd = pred.breakdown
    if pred.kind == "training":
        scopes = {k: ("inter" if g.get("nodes", 1) > 1 else "intra")
                  for k, g in (bd.get("groups") or {}).items()}
        phases = ("fwd", "bwd", "recompute")
        quantity_terms = {"step_time_s": _class_terms(
            "step", bd.get("time", {}), pred.ops, tables, dtype, phases,
            "training", scopes, dense, grouped)}
    else:
        pre = _class_terms("prefill", bd.get("prefill", {}), pred.ops, tables, dtype,
                           ("prefill",), "prefill", {}, dense, grouped,
                           _floor_shares(tables, pred.ops, ("prefill",)))
        dec = _class_terms("decode", bd.get("decode_step", {}), pred.ops, tables, dtype,
                           ("decode",), "decode", {}, dense, grouped,
                           _floor_shares(tables, pred.ops, ("decode",)))
        quantity_terms = {"ttft_s": pre, "tpot_s": dec}
    draws = _seeded_draws(profile, [t for ts in quantity_terms.values() for t in ts], tables)
    samples = {q: _ratio_samples(ts, draws) for q, ts in quantity_terms.items()}
    if pred.kind != "training" and pred.ttft_s is not None and pred.e2e_latency_s:
        ttft, e2e = float(pred.ttft_s), float(pred.e2e_latency_s)
        samples["e2e_latency_s"] = (ttft * samples["ttft_s"]
                                    + max(e2e - ttft, 0.0) * samples["tpot_s"]) / e2e
    out = {q: (_quantile(s, LO_P), _quantile(s, HI_P)) for q, s in samples.items()}
    out["memory_per_gpu_bytes"] = (1.0, 1.0)
    return out


def _gemm_dtype(scenario) -> str | None:
    if scenario is None:
        return None
    if getattr(scenario, "training", None) is not None and scenario.kind == "training":
        return str(scenario.training.precision)
    inf = getattr(scenario, "inference", None)
    wd = str(getattr(inf, "weight_dtype", "") or "")
    return "fp8" if wd.startswith("fp8") else "bf16"


# ---- (b) validation error of comparable cases ---------------------------------------------

def device_class(device_id: str | None) -> str | None:
    """The device's architecture family (hardware_specs ``architecture``, first word,
    lower case, e.g. ampere, hopper, ada, blackwell, cdna)."""
    if not device_id:
        return None
    from .specs.registry import get_device

    try:
        arch = get_device(device_id).architecture
    except Exception:  # a device file that does not load has no class
        return None
    return arch.split()[0].lower() if arch else None


def stack_of(scenario) -> str | None:
    """The scenario's training framework (training) or inference engine (inference, serving)
    when it names one (a ``framework`` / ``engine`` field at the top level or in the kind's
    section; an object's ``name``), else None."""
    if scenario is None:
        return None
    field = "framework" if scenario.kind == "training" else "engine"
    for obj in (scenario, getattr(scenario, scenario.kind, None)):
        v = getattr(obj, field, None) if obj is not None else None
        v = getattr(v, "name", None) or getattr(v, "id", None) or v
        if isinstance(v, str) and v:
            return v.lower()
    return None


#: the profile kind (``CalibrationProfile.kind``) whose predictions read groups of their own:
#: the documented default efficiencies (calibration/default.json), whose error is not the
#: calibrated profiles' (docs/uncertainty.md, "Uncalibrated predictions")
DEFAULT_PROFILE = "default"
#: prefix of those groups' keys (``default/kind/quantity/stack/class``)
DEFAULT_PREFIX = DEFAULT_PROFILE + "/"


def group_keys(kind: str, quantity: str, stack: str | None, dev_class: str | None,
               profile: str | None = None) -> list[str]:
    """Validation groups from the most to the least specific (``kind/quantity/stack/class``,
    ``*`` for any); serving reads the closed-loop benchmarks' groups (``serving/...``: their
    TTFT / TPOT hold queueing, scheduling and first-wave effects a single pass has not), then
    the inference groups, which hold no serving case (``validate.bands._own_keys``). A prediction made with the default
    (uncalibrated) profile (``profile`` "default", ``CalibrationProfile.kind``) reads first
    the same chain of the default profile's groups (``default/...``: every published case
    re-predicted with calibration/default.json), then, only where none of those qualifies
    (a bands file written before them), the calibrated chain. Times only: memory per GPU
    does not read the efficiencies the default profile replaces, and on every published
    memory case its prediction is the calibrated one's (docs/uncertainty.md), so memory keeps
    one chain for all profiles."""
    if profile == DEFAULT_PROFILE and dimension(quantity) == "time":
        own = group_keys(kind, quantity, stack, dev_class)
        return [DEFAULT_PREFIX + k for k in own] + own
    if kind == "serving":  # the closed-loop benchmarks' own groups, then the inference chain
        own = [f"serving/{quantity}/{stack}/{dev_class}"] if stack and dev_class else []
        own += [f"serving/{quantity}/*/{dev_class}"] if dev_class else []
        rest = (group_keys(kind, DERIVED_QUANTITY[quantity], stack, dev_class)
                if quantity in DERIVED_QUANTITY
                else group_keys("inference", quantity, stack, dev_class))
        return [*own, f"serving/{quantity}/*/*", *rest]
    dim = dimension(quantity)
    keys = []
    if stack and dev_class:
        keys.append(f"{kind}/{quantity}/{stack}/{dev_class}")
    if dev_class:
        keys.append(f"{kind}/{quantity}/*/{dev_class}")
    keys += [f"{kind}/{quantity}/*/*", f"{kind}/{dim}/*/*"]
    if dim == "time":  # a memory error of one kind says little about the other's
        keys.append(f"*/{dim}/*/*")  # (training allocator vs an engine's memory budget)
    return keys


def _order_index(n: int, p: float) -> int:
    """ceil((n + 1) p), the 1-based rank of the split-conformal bound at level p (a float
    product such as 10 x 0.9 must not round up to the next rank)."""
    return math.ceil((n + 1) * p - 1e-9)


def conformal_interval(errors, level: float = LEVEL) -> tuple[float, float] | None:
    """(lo, hi) split-conformal bounds of a new exchangeable error, one tail of (1 - level) / 2
    each: hi = the ceil((n + 1)(1 + level) / 2)-th smallest of the n errors, lo = the same
    rank from the top. Split conformal (Lei, G'Sell, Rinaldo, Tibshirani & Wasserman 2018,
    "Distribution-free predictive inference for regression", JASA 113(523), sec. 2.2;
    Angelopoulos & Bates 2021, "A gentle introduction to conformal prediction and
    distribution-free uncertainty quantification", arXiv:2107.07511, sec. 1, thm. 1) applied
    to each one-sided bound at (1 - level) / 2, the asymmetric split of Romano, Patterson &
    Candes 2019 ("Conformalized quantile regression", NeurIPS). For exchangeable errors
    P(lo <= e_new <= hi) >= level (each tail misses with probability <= (1 - level) / 2),
    and <= level + 2 / (n + 1) when there are no ties. None when n is too small for a finite
    bound (n < (1 + level) / (1 - level): 9 at 80 %)."""
    x = np.sort(np.asarray(list(errors), float))
    n = len(x)
    k = _order_index(n, (1 + level) / 2)
    if n == 0 or k > n:
        return None
    return float(x[n - k]), float(x[k - 1])


def group_qualifies(g: dict | None) -> bool:
    """A group with a finite conformal band from enough cases and sources."""
    return bool(g) and g["n"] >= MIN_GROUP_CASES and g.get("q_lo") is not None \
        and g.get("q_hi") is not None and len(g.get("sources", ())) >= MIN_GROUP_SOURCES


def validation_ratio(groups: dict[str, dict], keys: list[str]
                     ) -> tuple[tuple[float, float], str] | None:
    """(b): (lo, hi) of true / predicted from the first group that qualifies (enough cases
    from enough sources), and its key: a smaller group falls back to its parent."""
    for key in keys:
        g = groups.get(key)
        if group_qualifies(g):
            return (float(np.exp(g["q_lo"])), float(np.exp(g["q_hi"]))), key
    return None


def bands_path() -> Path:
    from .paths import data_dir

    return data_dir("validation") / "error_bands.json"


@lru_cache(maxsize=4)
def _load_groups(path: str, mtime: float) -> dict[str, dict]:
    from .specs.registry import read_json  # the project's one safe door for files

    return read_json(path, "error bands")["groups"]


def shipped_groups() -> dict[str, dict]:
    """The groups of validation/error_bands.json ({} when the file is absent)."""
    path = bands_path()
    if not path.is_file():
        return {}
    return _load_groups(str(path), path.stat().st_mtime)


# ---- combining ----------------------------------------------------------------------------

def combine(a: tuple[float, float], b: tuple[float, float] | None) -> tuple[float, float]:
    """Per side the wider of the two ratio bands, and never excluding 1 (the point).

    Not a sum in log space (nor a root-sum-square): the validation cases were predicted with
    their devices' calibrated profiles, so their errors (b) already contain kernel-level error
    (a); adding the two would count it twice. The wider side keeps (b)'s conformal guarantee
    (a superset of a valid set is valid) and lets a prediction whose own kernel residuals are
    wider than its comparable cases' (an uncalibrated table, a stated band) widen its band.
    (a) is not used to scale (b) (conformalized quantile regression, Romano et al. 2019):
    on validation/ its width does not track the end-to-end error (docs/uncertainty.md)."""
    lo, hi = a
    if b is not None:
        lo, hi = min(lo, b[0]), max(hi, b[1])
    return min(lo, 1.0), max(hi, 1.0)


def quantity_ratios(pred, profile: CalibrationProfile, scenario=None,
                    groups: dict[str, dict] | None = None
                    ) -> dict[str, tuple[tuple[float, float] | None, str]]:
    """quantity -> ((lo, hi) of true / predicted, how it was made) for each quantity the
    prediction's kind ranges; (None, why not) for a quantity with no measured error at all."""
    groups = shipped_groups() if groups is None else groups
    calib = calibration_ratios(pred, profile, scenario)
    stack, dev = stack_of(scenario), device_class(pred.device)
    kind = getattr(profile, "kind", None)  # "default": the uncalibrated profile's own groups
    # a profile borrowed by the device's calibration_proxy (same silicon): its residuals are
    # the proxied device's held-out kernel residuals, said as such; they do not measure the
    # transfer to this device (docs/calibration.md "Calibration by proxy")
    proxy = (getattr(pred, "calibration", None) or {}).get("proxy")
    borrowed = (f" (borrowed: {proxy['device']}'s tables' held-out residuals, measured on "
                f"{proxy['device']}, not on {pred.device})") if proxy else ""
    out: dict[str, tuple[tuple[float, float] | None, str]] = {}
    quantities = [q for q, _ in RANGE_KEYS[pred.kind].values()]
    if pred.kind == "serving":  # the serving section's own (the mean TTFT)
        quantities += [q for _s, _e, q, _p in SERVING_RANGE_KEYS.values()]
    for quantity in dict.fromkeys(quantities):
        a = calib.get(DERIVED_QUANTITY.get(quantity, quantity), (1.0, 1.0))
        b = validation_ratio(groups, group_keys(pred.kind, quantity, stack, dev, kind))
        if a == (1.0, 1.0) and b is None:  # no measured error at all: no band, not a zero one
            out[quantity] = (None, f"no band: no calibration residual and no validation group "
                                   f"of >= {MIN_GROUP_CASES} comparable cases from >= "
                                   f"{MIN_GROUP_SOURCES} sources")
            continue
        how = [f"calibration residuals {a[0]:.2f}-{a[1]:.2f}x{borrowed}"] if a != (1.0, 1.0) \
            else []
        if not b:  # kernel-level error only: says nothing about the model's structure
            how.append("no validation group: kernel-level error only, narrower than the "
                       "end-to-end error (docs/uncertainty.md)")
        if b:
            g = groups[b[1]]
            how.append(f"validation group {b[1]} (n={g['n']}, "
                       f"{len(g.get('sources', ()))} sources"
                       + (", every case re-predicted with the default profile"
                          if b[1].startswith(DEFAULT_PREFIX) else "") + ") "
                       f"{np.exp(g['q_lo']):.2f}-{np.exp(g['q_hi']):.2f}x")
            if kind == DEFAULT_PROFILE and dimension(quantity) == "time" \
                    and not b[1].startswith(DEFAULT_PREFIX):
                how.append("no validation group of the default profile: the calibrated "
                           "cases' error, narrower than an uncalibrated prediction's")
        out[quantity] = (combine(a, b[0] if b else None),
                         "; ".join(how) or "no calibration residuals or validation cases")
    return _e2e_at_least_ttft(pred, out)


def _e2e_at_least_ttft(pred, ratios: dict) -> dict:
    """``ratios`` with the end-to-end latency's band raised, where needed, so that neither of
    its ends lies below the TTFT band's (a request's end-to-end time includes its first token,
    so the true E2E >= the true TTFT: a bound of E2E below TTFT's would be a band no outcome
    can fall short of). The two bands come from different validation groups, which nothing else
    ties together; a mostly-prefill request (long prompt, few output tokens) shows it."""
    ttft, e2e = getattr(pred, "ttft_s", None), getattr(pred, "e2e_latency_s", None)
    t_ratio, e_ratio = ratios.get("ttft_s", (None, ""))[0], ratios.get("e2e_latency_s",
                                                                      (None, ""))[0]
    if not ttft or not e2e or t_ratio is None or e_ratio is None:
        return ratios
    floor = (ttft * t_ratio[0] / e2e, ttft * t_ratio[1] / e2e)
    raised = (max(e_ratio[0], floor[0]), max(e_ratio[1], floor[1]))
    if raised == e_ratio:
        return ratios
    how = ratios["e2e_latency_s"][1] + "; at least the TTFT band (E2E includes the first token)"
    return {**ratios, "e2e_latency_s": (raised, how)}


def apply_ratio(point: float, ratio: tuple[float, float], power: int) -> list[float] | None:
    """[lo, hi] of a figure ``point`` ~ quantity^power (power +-1) whose quantity's true /
    predicted ratio lies in ``ratio``; None when a bound is not finite."""
    lo, hi = ratio
    if power < 0:
        lo, hi = 1.0 / hi, 1.0 / lo
    band = [float(point * lo), float(point * hi)]
    return band if all(np.isfinite(band)) else None


#: how close an engine's memory per GPU must be to its budget to be that budget (relative)
BUDGET_TOL = 1e-6


def fills_budget(pred) -> bool:
    """Whether ``pred``'s engine started with a KV cache filling its budget, so memory per GPU
    is the budget itself (``engine_memory.allocated_bytes`` == ``budget_bytes``: the categories
    less the headroom sum to it) and the budget does not depend on the model's estimates: a
    fraction of the device's memory (vLLM ``total_fraction``, SGLang ``init_free_fraction``),
    not of what the weights leave free (TensorRT-LLM ``free_after_peak_fraction``, whose
    ``unallocated`` headroom moves with the weights: its memory keeps a band)."""
    e = pred.engine or {}
    budget, point = e.get("budget_bytes"), pred.memory_per_gpu_bytes
    return bool(budget and point and e.get("starts", True) and (e.get("kv_cache_bytes") or 0) > 0
                and "unallocated" not in (e.get("breakdown") or {})
                and abs(point - budget) <= BUDGET_TOL * budget)


def memory_band(pred, band: list[float]) -> list[float]:
    """A memory-per-GPU band with its lower end at least the weights one GPU holds (the
    prediction's ``breakdown.memory.weights``, or its engine's ``weights_bytes``), which the
    parameter counts and formats fix; never above the point."""
    e = pred.engine or {}
    weights = e.get("weights_bytes") or ((pred.breakdown or {}).get("memory") or {}).get(
        "weights") or 0.0
    floor = min(float(weights), float(pred.memory_per_gpu_bytes))
    return [max(band[0], floor), max(band[1], floor)]


def kv_tokens_band(pred, ratio: tuple[float, float]) -> list[float] | None:
    """The band of an engine's KV capacity in tokens (``engine.kv_cache_tokens``) when its
    memory is its budget (``fills_budget``): the memory group's ratio, the upper end at most
    the tokens the budget holds beside the weights alone."""
    e = pred.engine or {}
    tokens, per_token = e.get("kv_cache_tokens"), e.get("kv_bytes_per_token")
    band = apply_ratio(float(tokens or 0), ratio, 1) if tokens else None
    if band is None:
        return None
    if per_token:
        room = (e["budget_bytes"] - (e.get("weights_bytes") or 0.0)) / per_token
        band[1] = max(float(tokens), min(band[1], room))
    return band


def _ranges_from(pred, ratios: dict) -> tuple[dict[str, list[float]], dict[str, str]]:
    ranges: dict[str, list[float]] = {}
    basis: dict[str, str] = {}
    for field, (quantity, power) in RANGE_KEYS[pred.kind].items():
        point = getattr(pred, field, None)
        if point is None or not np.isfinite(point) or point <= 0:
            continue
        ratio, how = ratios[quantity]
        if field == "memory_per_gpu_bytes" and fills_budget(pred):
            e = pred.engine
            basis[field] = (
                f"no band: {e['engine']} allocates its KV cache to fill its budget "
                f"({e['fraction_name']} {e['fraction']:g} of the device's memory), so memory "
                "per GPU is that budget; the uncertainty is in the KV capacity "
                "(ranges.kv_cache_tokens)")
            tokens = kv_tokens_band(pred, ratio) if ratio is not None else None
            if tokens is not None:
                ranges["kv_cache_tokens"] = tokens
                basis["kv_cache_tokens"] = (f"the memory band applied to the KV pool: {how}; "
                                            "upper end at most the budget less the weights")
            continue
        band = apply_ratio(point, ratio, power) if ratio is not None else None
        if band is None:  # never a NaN in a prediction
            basis[field] = how if ratio is None else \
                "no band: the residuals gave a non-finite bound"
            continue
        if pred.kind == "serving" and power < 0:
            capped = _capped_at_offered(pred, point, band)
            if capped != band:
                how += "; upper end capped at the offered load"
            band = capped
        if field == "memory_per_gpu_bytes":
            floored = memory_band(pred, band)
            if floored != band:
                how += "; lower end at the weights per GPU"
            band = floored
        ranges[field] = band
        basis[field] = how
    return ranges, basis


def _capped_at_offered(pred, point: float, band: list[float]) -> list[float]:
    """An open loop serves at most what arrives: a throughput band's upper end is capped at
    the point scaled by offered / served requests per second (never below the point). A
    closed loop (``workload.concurrency``) has no offered rate; its throughput is C / E2E."""
    s = pred.serving or {}
    t = s.get("throughput") or {}
    offered, served = t.get("offered_requests_per_s"), t.get("requests_per_s")
    if (s.get("workload") or {}).get("concurrency") or not offered or not served:
        return band
    return [band[0], max(point, min(band[1], point * offered / served))]


def prediction_ranges(pred, profile: CalibrationProfile, scenario=None,
                      groups: dict[str, dict] | None = None
                      ) -> tuple[dict[str, list[float]], dict[str, str]]:
    """(ranges: field -> [lo, hi], basis: field -> how its band was made) for ``pred``."""
    return _ranges_from(pred, quantity_ratios(pred, profile, scenario, groups))


def serving_ranges(pred, ratios: dict) -> tuple[dict[str, list[float]], dict[str, str]]:
    """The serving section's bands (``SERVING_RANGE_KEYS``: latency percentiles and
    throughputs, key -> [lo, hi]) and their basis, from the quantities' ratio bands
    (``quantity_ratios``): the same ratio that bands the p50 in ``ranges`` bands the p90 and
    p99 (the per-pass model error; queueing is not re-simulated, so near saturation the true
    spread is wider); open-loop throughputs are capped at the offered load."""
    s = pred.serving or {}
    ranges: dict[str, list[float]] = {}
    basis: dict[str, str] = {}
    for key, (section, entry, quantity, power) in SERVING_RANGE_KEYS.items():
        point = (s.get(section) or {}).get(entry)
        ratio, how = ratios.get(quantity, (None, "no band"))
        if point is None or not np.isfinite(point) or point <= 0 or ratio is None:
            continue
        band = apply_ratio(point, ratio, power)
        if band is None:
            continue
        if section == "e2e_s" and f"ttft_{entry}_s" in ranges:  # E2E >= TTFT, per percentile
            first = ranges[f"ttft_{entry}_s"]
            raised = [max(band[0], first[0]), max(band[1], first[1])]
            if raised != band:
                how += "; at least the TTFT band (E2E includes the first token)"
            band = raised
        if power < 0:
            band = _capped_at_offered(pred, point, band)
            how += "; the inverse of the end-to-end latency's band" + (
                "" if (s.get("workload") or {}).get("concurrency")
                else ", upper end capped at the offered load")
        ranges[key] = band
        basis[key] = f"{quantity} band: {how}"
    return ranges, basis


def quantity_band(kind: str, quantity: str, device: str, stack: str | None = None,
                  calibration: tuple[float, float] = (1.0, 1.0), profile: str | None = None
                  ) -> tuple[float, float] | None:
    """(lo, hi) of true / predicted for a quantity predicted without a Prediction object (a
    plan search's step time): the validation group of (b) combined with a calibration band
    when the caller has one; None when there is neither. ``profile``: the kind of the
    calibration profile the quantity was predicted with ("default": the default profile's
    groups first, ``group_keys``)."""
    b = validation_ratio(shipped_groups(),
                         group_keys(kind, quantity, stack, device_class(device), profile))
    if calibration == (1.0, 1.0) and b is None:
        return None
    return combine(calibration, b[0] if b else None)


def with_ranges(pred, profile: CalibrationProfile, scenario=None):
    """``pred`` with its ``ranges`` (and ``range_basis``) filled in; a serving prediction also
    with ``serving_ranges`` (its percentiles and throughputs; their basis in ``range_basis``)."""
    ratios = quantity_ratios(pred, profile, scenario)
    ranges, basis = _ranges_from(pred, ratios)
    update: dict = {"ranges": ranges, "range_basis": basis}
    if pred.kind == "serving" and pred.serving:
        s_ranges, s_basis = serving_ranges(pred, ratios)
        update["serving_ranges"] = s_ranges
        update["range_basis"] = basis | s_basis
    return pred.model_copy(update=update)
