"""Measured MoE curves (profile.moe_curves, roofline._moe_efficiency): where a grouped-GEMM
table measured the model's exact per-GPU expert shape, the core's routed experts (up + down
grouped GEMM calls, the fit's definition of a measured row: calibrate/fit/moe.py) take the
table's own time, log-log interpolated in tokens; the fitted grid elsewhere. A row's time holds
the top-k, the SwiGLU and the combine too (the collector calls SGLang's TopK and FusedMoE,
calibration/moe_kernels.yaml timed_regions), which the core charges as operators of its own:
the curve is the row less those (``parts_s``), so experts + parts = the row, where the row's
routing touched the experts uniform routing would (one token: top-k); elsewhere the curve is
moved to uniform routing at the row's own efficiency (fit.moe.to_uniform_routing: the balanced
rows spread T tokens over min(E, T k) experts, collector/helper.py balanced_logits).

Independent numbers: aiconfigurator-core 0.12.0's TensorRT-LLM 1.3.0rc20 H200 table (copied
under calibration/sources/measured), read here with pyarrow: DeepSeek-V3's experts (hidden 7168,
inter 2048, 256 experts top-8, plain top-k routing) at moe_tp 8, ep 1, fp8_block, balanced
routing; hand interpolation between its rows. (The SGLang 0.5.14 / vLLM 0.24.0 rows of this
shape route group-limited on tied groups and are left out of the fit: calibration/
moe_kernels.yaml routing_undetermined.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.calibrate.fit.moe import curve_errors, moe_curves
from perfmodel.calibrate.fit.table import precision_for
from perfmodel.paths import data_dir
from perfmodel.profile import CalibrationProfile, MoeCurve, moe_shape_key
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.registry import load_profile, measured_moe_curves, profile_for

H200 = "h200-sxm-141gb"
TRT_H200 = ("aiconfigurator/systems/data/h200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet")
DSV3 = {"hidden_size": 7168, "inter_size": 2048, "num_experts": 256, "topk": 8,
        "moe_tp_size": 8, "moe_ep_size": 1}
KEY = "fp8_block"  # TensorRT-LLM's (trtllm_cutlass) reference table


def measured_ms() -> dict[int, float]:
    """num_tokens -> latency (ms) of the TensorRT-LLM H200 fp8_block rows at DeepSeek-V3 TP8."""
    pq = pytest.importorskip("pyarrow.parquet")
    path = data_dir("calibration") / "sources" / "measured" / TRT_H200
    rows = pq.read_table(path).to_pylist()
    out = {r["num_tokens"]: r["latency"] for r in rows
           if r["moe_dtype"] == "fp8_block" and r["distribution"] == "balanced"
           and all(r[k] == v for k, v in DSV3.items())}
    assert out[1] == pytest.approx(0.1147, abs=1e-4)
    return out


def balanced_and_uniform(tokens: int) -> tuple[float, float]:
    """Experts of 256 (top-8) a balanced row touched (stride 32: 8 T below 32 tokens, all
    256 from 32) and those uniform routing expects, 256 (1 - (1 - 8/256)^T)."""
    return float(min(256, 8 * tokens)), 256 * (1 - (1 - 8 / 256) ** tokens)


def experts_ops(tokens: float) -> list[O.Op]:
    """The core's routed experts of DeepSeek-V3 at TP 8 (``ops.mlp_ops`` as
    ``layer_forward_ops`` calls it): tokens x 8 rows over the active experts of 256."""
    model_like = type("M", (), {"hidden_size": 7168, "gated_mlp": True,
                                "activation": "swiglu"})()
    rows = O.routed_rows(tokens, 8, 1)
    active = O.local_active_experts(256, 0, 8, tokens, 1)
    return O.mlp_ops(model_like, rows, 2048, 8, precision_for("fp8_block"), "moe.expert",
                     groups=active, fanout=8)


ROUTING = (256, 8, 2048)  # DeepSeek-V3's routed experts (roofline.moe_routing)


def parts_s(profile: CalibrationProfile, tokens: float) -> float:
    """The core's own top-k, SwiGLU and combine for DeepSeek-V3's MoE layer at TP 8 on
    ``tokens`` tokens (ops.layer_forward_ops' moe.topk, moe.expert.act, moe.combine), which
    the measured row also holds (fit.moe.net_times takes them out of it)."""
    prec = precision_for("fp8_block")
    act = next(op for op in experts_ops(tokens) if op.name == "moe.expert.act")
    ops = [O.moe_topk_op(tokens, 256, 8, prec), act,
           O.moe_combine_op(O.routed_rows(tokens, 8, 1), tokens, 7168, prec)]
    roof = Roofline(registry.get_device(H200), profile)
    return float(sum(np.asarray(t) for t in op_times(ops, roof).time))


def experts_time(profile: CalibrationProfile, tokens: float, engine: str = "trtllm",
                 routing: tuple | None = ROUTING):
    roof = Roofline(registry.get_device(H200), profile, padded=True, engine=engine,
                    moe_race=engine == "generic", moe_routing=routing)
    ot = op_times(experts_ops(tokens), roof)
    names = [op.name for op in ot.ops]
    up, down = names.index("moe.expert.up"), names.index("moe.expert.down")
    return float(ot.time[up] + ot.time[down]), ot


@pytest.fixture(scope="module")
def h200() -> CalibrationProfile:
    return load_profile(data_dir("calibration") / f"{H200}.reference.json")


def test_shipped_curve_is_the_parquet_rows(h200):
    """The H200 profile's curve of the DeepSeek-V3 TP8 shape holds, at every token count the
    table measured, the row less the core's own top-k, SwiGLU and combine (4 significant
    digits), moved to uniform routing: t' = fixed + (t - fixed) x bound(uniform) / bound(row),
    where the bound (weights x experts + activations, or compute) gives a ratio between
    uniform / balanced experts and 1 (equal at one token: 8 experts either way)."""
    ms = measured_ms()
    curve = measured_moe_curves(h200)[KEY][moe_shape_key(7168, 2048, 256, 8, 8, 1, True)]
    assert curve.tokens == tuple(sorted(ms))
    fixed = 2 * (h200.kernel_overhead_s + h200.moe_overhead_s[KEY])
    for x, t in zip(curve.tokens, curve.time_s, strict=True):
        net = ms[x] * 1e-3 - parts_s(h200, x)
        balanced, uniform = balanced_and_uniform(x)
        ratio = (t - fixed) / (net - fixed)
        assert uniform / balanced * (1 - 1e-3) <= ratio <= 1 + 1e-3, x
    assert curve.time_s[0] + parts_s(h200, 1) == pytest.approx(ms[1] * 1e-3, rel=1e-3)


@pytest.mark.parametrize("tokens", [1, 2])
def test_core_takes_the_measured_time_at_a_measured_shape(h200, tokens):
    """Up + down of the core's grouped GEMMs = the measured layer time at a measured token
    count (moved to uniform routing: one token reaches 8 experts either way; two reach 16 in
    the balanced row, 15.75 uniformly), where the table's efficiency stays below the
    profile's streaming cap (roofline._streaming, which still applies to a curve)."""
    t, ot = experts_time(h200, tokens)
    row = measured_ms()[tokens] * 1e-3
    fixed = 2 * (h200.kernel_overhead_s + h200.moe_overhead_s[KEY])
    balanced, uniform = balanced_and_uniform(tokens)
    low = fixed + (row - parts_s(h200, tokens) - fixed) * uniform / balanced
    assert (low + parts_s(h200, tokens)) * (1 - 2e-3) <= t + parts_s(h200, tokens) \
        <= row * (1 + 2e-3)
    if tokens == 1:
        assert t + parts_s(h200, tokens) == pytest.approx(row, rel=2e-3)
    assert ot.moe_curves == {"moe.expert.up": f"moe_curve.{KEY}",
                             "moe.expert.down": f"moe_curve.{KEY}"}


def test_core_interpolates_log_log_between_rows(h200):
    """1.5 tokens: between the curve's points at 1 and 2, linear in log(tokens), log(time)
    by hand."""
    curve = measured_moe_curves(h200)[KEY][moe_shape_key(7168, 2048, 256, 8, 8, 1, True)]
    net = dict(zip(curve.tokens, curve.time_s, strict=True))
    w = math.log(1.5 / 1) / math.log(2 / 1)
    hand = math.exp(math.log(net[1]) + w * (math.log(net[2]) - math.log(net[1])))
    t, _ = experts_time(h200, 1.5)
    assert t == pytest.approx(hand, rel=2e-3)


def test_streaming_cap_still_bounds_a_curve(h200):
    """A curve faster than the profile's streaming plateau allows (the shipped one x 0.3:
    at 64 tokens 222 of 256 experts active under uniform routing, 1.23 GB of fp8 weights, in
    about 0.12 ms, above the 4.8 TB/s datasheet): the core keeps the cap
    (roofline._streaming), so it charges more than the curve, never less than the weights at
    the cap's bandwidth."""
    shape = moe_shape_key(7168, 2048, 256, 8, 8, 1, True)
    curves = measured_moe_curves(h200)
    c = curves[KEY][shape]
    fast = MoeCurve(tokens=c.tokens, time_s=tuple(0.3 * x for x in c.time_s))
    prof = h200.model_copy(update={"moe_curves": {**curves, KEY: {**curves[KEY], shape: fast}},
                                   "moe_curves_file": None})
    t, ot = experts_time(prof, 64)
    assert ot.moe_curves and t > float(fast(64.0))
    weights = float(ot.memory[0]) + float(ot.memory[2])
    assert t >= weights / prof.stream_efficiency


def test_one_token_needs_the_models_routing(h200):
    """One token reaches top-k experts whatever their number: without the model's routing the
    rows and active experts fit every measured shape of hidden 7168, inter / tp 256, top-8
    (DeepSeek-V3's 256 experts, Kimi-K2's 384), so the grid times it; with it, the curve."""
    t_any, ot = experts_time(h200, 1, routing=None)
    assert ot.moe_curves == {}
    t_bare, _ = experts_time(h200.model_copy(update={"moe_curves": {}, "moe_curves_file": None}), 1)
    assert t_any == t_bare
    t, ot = experts_time(h200, 1)
    assert ot.moe_curves and t + parts_s(h200, 1) == pytest.approx(measured_ms()[1] * 1e-3,
                                                                   rel=2e-3)


def test_outside_the_measured_range_the_grid_times_it(h200):
    """Beyond the table's largest token count (16384) the fitted grid applies: no curve hit,
    and the time is the one of a profile without curves."""
    t, ot = experts_time(h200, 20000)
    bare = h200.model_copy(update={"moe_curves": {}, "moe_curves_file": None})
    t_bare, _ = experts_time(bare, 20000)
    assert ot.moe_curves == {}
    assert t == t_bare


def test_redundant_experts_do_not_match_the_measured_shape(h200):
    """A rank with redundant experts (EPLB) routes over 256 + 32 copies: its active experts
    are not those of the measured rows, so the grid times it."""
    ops = experts_ops(16)
    active = O.local_active_experts(256, 32, 8, 16, 1)
    for op in ops:
        if op.cls == O.GEMM:
            op.bytes = op.bytes / op.groups * active
            op.shape = (op.shape[0] * op.groups / active, *op.shape[1:])
            op.groups = active
    ot = op_times(ops, Roofline(registry.get_device(H200), h200, padded=True, engine="trtllm",
                                moe_routing=ROUTING))
    assert ot.moe_curves == {}


def test_generic_engine_race_reads_each_tables_curve(h200):
    """The generic engine runs the fastest production kernel for the step's grouped GEMMs
    (roofline._fastest_moe_kernel), each table read through its own curve or grid: at 1 token
    TensorRT-LLM's row (0.1147 ms, its curve) is slower than SGLang's and vLLM's Triton tables
    (grids at this shape; their rows, 0.0364 and 0.0552 ms, are left out of the fit), so the
    generic engine is no slower than either engine and faster than TensorRT-LLM's curve."""
    t, _ = experts_time(h200, 1, engine="generic")
    t_trt, _ = experts_time(h200, 1, engine="trtllm")
    others = [experts_time(h200, 1, engine=e)[0] for e in ("sglang", "vllm")]
    assert t_trt + parts_s(h200, 1) == pytest.approx(measured_ms()[1] * 1e-3, rel=2e-3)
    assert t < t_trt and t <= min(others) * (1 + 1e-12)


def test_fit_builds_curves_from_the_records_it_fits():
    """Two token counts of one shape become a curve (floored along EP: the EP 2 row slower
    than EP 1 at the same rows per GPU takes the EP 1 time, calibrate.fit.moe.ep_floor); a
    shape measured at one token count does not."""
    def rec(tokens, ep, t, inter=2048):
        p = {"dtype": "fp8_block", "tokens": tokens, "hidden": 7168, "inter": inter,
             "experts": 256, "topk": 8, "tp": 8, "ep": ep, "gated": True, "table": KEY}
        return {"bench": "moe", "params": p, "time_s": t, "status": "ok",
                "stats": {"kernel_source": "sglang_fused_moe_triton"}}

    recs = [rec(16, 1, 1e-4), rec(32, 1, 2e-4), rec(32, 2, 5e-4), rec(64, 2, 3e-4),
            rec(16, 1, 1e-4, inter=1024)]
    curves = moe_curves(recs)[KEY]
    assert curves[moe_shape_key(7168, 2048, 256, 8, 8, 1, True)].time_s == (1e-4, 2e-4)
    # EP 2 at 32 / 64 tokens has the rows per GPU of EP 1 at 16 / 32 tokens: floored to them
    assert curves[moe_shape_key(7168, 2048, 256, 8, 8, 2, True)].time_s == (1e-4, 2e-4)
    assert moe_shape_key(7168, 1024, 256, 8, 8, 1, True) not in curves


def test_curve_error_is_leave_one_out_interpolation():
    """One curve 1, 2, 4 tokens at 1, 3, 4 us: the middle point predicted from its
    neighbours is sqrt(1 x 4) = 2 us, 50 % below 3 us (APE |2 - 3| / 3)."""
    curve = MoeCurve(tokens=(1, 2, 4), time_s=(1e-6, 3e-6, 4e-6))
    fe, p90 = curve_errors("bf16", {"s": curve})
    assert fe.table == "moe_curve.bf16" and fe.n_test == 1
    assert fe.median_ape == pytest.approx(1 / 3, abs=1e-4)
    assert p90 == pytest.approx(math.log(3 / 2), abs=1e-4)


def test_profile_refuses_curves_without_their_table(h200):
    curve = MoeCurve(tokens=(1, 2), time_s=(1e-5, 2e-5))
    data = h200.model_dump()
    data["moe_curves"] = {"nvfp4@nowhere": {moe_shape_key(1, 1, 2, 1, 1, 1, True): curve}}
    # pydantic reports the model's SpecError as a ValidationError (a ValueError)
    with pytest.raises(ValueError, match="no moe table"):
        CalibrationProfile.model_validate(data)
    data["moe_curves"] = {KEY: {"hidden=1": curve}}
    with pytest.raises(ValueError, match="shape key"):
        CalibrationProfile.model_validate(data)
    with pytest.raises(ValueError, match="increasing"):
        MoeCurve(tokens=(2, 1), time_s=(1e-5, 2e-5))


def test_curve_hit_broadcasts_over_plans(h200):
    """A sweep over token counts (arrays) times each plan as its scalar prediction does."""
    tokens = np.array([1.5, 8.0, 20000.0])
    ops = experts_ops(tokens)
    roof = Roofline(registry.get_device(H200), h200, padded=True, engine="trtllm",
                    moe_routing=ROUTING)
    ot = op_times(ops, roof)
    both = np.asarray(ot.time[0]) + np.asarray(ot.time[2])
    for i, x in enumerate(tokens):
        assert both[i] == pytest.approx(experts_time(h200, float(x))[0], rel=1e-12)


def test_a_written_profile_keeps_its_curves_in_the_file_beside_it(tmp_path):
    from perfmodel.calibrate.reference import write_profile
    from perfmodel.specs.registry import load_profile

    h200 = profile_for("h200-sxm-141gb")
    inline = h200.model_copy(update={"moe_curves": measured_moe_curves(h200),
                                     "moe_curves_file": None})
    write_profile(inline, tmp_path / "x.reference.json")
    side = tmp_path / "x.reference.moe_curves.json"
    assert side.exists() and "moe_curves\"" not in (tmp_path / "x.reference.json").read_text()
    back = load_profile(tmp_path / "x.reference.json")
    assert back.moe_curves_file == side.name and not back.moe_curves
    assert measured_moe_curves(back) == inline.moe_curves


def test_a_dense_prediction_never_reads_the_curves():
    """The ~3,000 curves cost a dense model nothing: their file is read when experts are."""
    import perfmodel as pm
    from perfmodel.specs.registry import load_moe_curves

    load_moe_curves.cache_clear()
    sc = {"kind": "inference", "system": {"device": "h200-sxm-141gb", "num_gpus": 8},
          "parallelism": {"tp": 8}, "inference": {"batch": 8, "prompt_len": 512,
                                                  "output_len": 8}}
    pm.predict({**sc, "model": "llama-3-70b"})
    assert load_moe_curves.cache_info().currsize == 0
    pm.predict({**sc, "model": "deepseek-v3", "engine": "sglang",
                "inference": {**sc["inference"], "weight_dtype": "fp8_block",
                              "activation_dtype": "fp8"}})
    assert load_moe_curves.cache_info().currsize == 1


def test_a_curve_is_bounded_by_its_padded_points():
    """A curve that dips (8 -> 16 tokens faster, as measured rows do) is read at 8 tokens as
    its time at 16: the layer could run padded (roofline._padded_curve, the padding rule); at
    16 and beyond its last point it is the curve itself, and NaN outside its range stays NaN."""
    from perfmodel.roofline import _padded_curve

    curve = MoeCurve(tokens=(1, 8, 16, 32), time_s=(1e-4, 3e-4, 2.5e-4, 4e-4))
    t = _padded_curve(curve, np.array([8.0, 16.0, 32.0, 64.0, 4.0]))
    assert t[0] == pytest.approx(2.5e-4) and t[1] == pytest.approx(2.5e-4)
    assert t[2] == pytest.approx(4e-4) and math.isnan(t[3])
    # 4 tokens: min(curve(4), curve(8), curve(16), curve(32)) by log-log interpolation
    c4 = math.exp(math.log(1e-4) + (math.log(4) / math.log(8)) * math.log(3))
    assert t[4] == pytest.approx(min(c4, 2.5e-4))
