"""A weight-only GEMM's band follows the curve that decided its time (uncertainty
``_floor_shares``): the roofline times fp8 weights with 16-bit activations on the bf16 curve but
never below the measured fp8 kernel on the same operator (``roofline.weight_only_floor``, ``t =
max(t, floor)``). Where the floor is the larger the time is the fp8 kernel's, so its error is
``gemm.fp8``'s residuals, not ``gemm.bf16``'s. Which one decided is the roofline's record
(``OpTimes.decided``, the prediction's ``OpReport.timed_by``), checked here against the floor
computed apart (``weight_only_floor`` on the core's own operators).

The case: Llama-3.1-8B, fp8 weights, bf16 activations asked for, the generic engine (it keeps
the W8A16 asked for), one GPU, batch 1. Decode GEMMs read the weights once per token (m = 1);
prefill's are 1,024-token GEMMs on the bf16 curve."""

from __future__ import annotations

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import uncertainty as U
from perfmodel.inference import as_engine_runs, inference
from perfmodel.moe_parallel import all_to_all
from perfmodel.resolve import inference_inputs, resolve
from perfmodel.roofline import Roofline, moe_routing, weight_only_floor


def _resolved(device: str):
    return resolve({"kind": "inference", "model": "llama-3.1-8b", "engine": {"name": "generic"},
                    "system": {"device": device, "num_gpus": 1},
                    "inference": {"batch": 1, "prompt_len": 1024, "output_len": 64,
                                  "weight_dtype": "fp8", "activation_dtype": "bf16"}})


def _dense_gemms(rs, phase: str):
    """(op, time, floor or None) of the pass's dense GEMMs, timed by the core."""
    inp = inference_inputs(rs.scenario, rs.system, rs.profile)
    r = inference(rs.scenario.model, rs.system, inp.plan, rs.profile, keep_ops=True)
    plan = as_engine_runs(inp.plan, rs.system.device)
    roof = Roofline.for_system(rs.system, rs.profile, plan.tp_all_reduce, plan.engine_version,
                               plan.engine_variant,
                               moe_a2a=all_to_all(plan.tp, plan.attention_dp, plan.ep),
                               moe_ep=plan.ep, moe_routing=moe_routing(rs.scenario.model))
    times = r.prefill.op_times if phase == "prefill" else r.decode.op_times
    out = []
    for op, t in zip(times.ops, times.time, strict=True):
        if op.cls != "gemm":
            continue
        wo = bool(op.weight_format) and op.weight_format != op.dtype
        floor = weight_only_floor([op], roof, op.weight_format, ()) if wo else None
        out.append((op, float(t), None if floor is None else float(floor[0])))
    return out


def test_decode_floor_decides_and_its_share_is_the_weight_only_gemms_time():
    rs = _resolved("h100-sxm5-80gb")
    ops = _dense_gemms(rs, "decode")
    names = {op.name for op, _, _ in ops}
    assert names == {"attn.qkv", "attn.out", "mlp.up", "mlp.down", "head.lm"}
    # the four weight-only projections: their time is their floor (t = max(t, floor)); the LM
    # head keeps bf16 weights (no weight format), no floor
    for op, t, floor in ops:
        if op.name == "head.lm":
            assert floor is None
        else:
            assert op.weight_format == "fp8" and floor == pytest.approx(t, rel=1e-12)
    # by hand: share = sum(count x time of the four) / sum(count x time of all five)
    floored = sum(op.count * t for op, t, _ in ops if op.name != "head.lm")
    share = floored / sum(op.count * t for op, t, _ in ops)
    tables = U.table_residuals(rs.profile)
    pred = pm.predict(rs.scenario)
    # the roofline's record on the prediction's operators says the same
    decided = {op.name: op.timed_by for op in pred.ops if op.phase == "decode"
               and op.cls == "gemm"}
    assert decided == {"attn.qkv": ("gemm.fp8", "floor"), "attn.out": ("gemm.fp8", "floor"),
                       "mlp.up": ("gemm.fp8", "floor"), "mlp.down": ("gemm.fp8", "floor"),
                       "head.lm": ("gemm.bf16", "curve")}
    shares = U._floor_shares(tables, pred.ops, ("decode",))
    assert shares == {"gemm.fp8": pytest.approx(share, rel=1e-12)}
    # prefill: the bf16 curve is the larger (below)
    assert U._floor_shares(tables, pred.ops, ("prefill",)) == {}
    assert 0.8 < share < 0.95  # the LM head (bf16, 1 of 129 calls) is the rest


def test_prefill_keeps_the_bf16_curve():
    rs = _resolved("h100-sxm5-80gb")
    floors = [(t, floor) for _op, t, floor in _dense_gemms(rs, "prefill") if floor is not None]
    assert len(floors) == 4  # the four weight-only projections
    for t, floor in floors:  # 1,024-token GEMMs: the bf16 curve is slower than the floor
        assert floor < t


def test_band_draws_the_floor_share_from_the_fp8_residuals():
    """Hand-made residuals: gemm.fp8 says every measurement was 2x the prediction (log 2 at
    every level), gemm.bf16 says exact (0). The decode GEMM's true / predicted is then
    (1 - s) x 1 + s x 2 = 1 + s for every draw, s the floor's share; prefill's is 1."""
    rs = _resolved("h100-sxm5-80gb")
    real = U.table_residuals(rs.profile)
    levels = len(real["gemm.bf16"][0])
    tables = {"gemm.bf16": (np.zeros(levels), 10), "gemm.fp8": (np.full(levels, np.log(2)), 10)}
    ops = pm.predict(rs.scenario).ops
    shares = {phase: U._floor_shares(real, ops, (phase,)) for phase in ("decode", "prefill")}
    dense = U._dense_gemm_tables(tables, rs.profile, rs.scenario)
    assert dense == ("gemm.bf16",)  # the 16-bit GEMM's table where the floor does not decide
    s = shares["decode"]["gemm.fp8"]
    for phase, expect in (("decode", 1 + s), ("prefill", 1.0)):
        terms = U._class_terms(phase, {"gemm": 1e-3}, [], tables, "bf16", (phase,), phase, {},
                               dense, (), shares[phase])
        draws = U._draws(terms, tables, np.random.default_rng(0))
        ratio = U._ratio_samples(terms, draws)
        np.testing.assert_allclose(ratio, expect, rtol=1e-12)


def test_no_floor_without_fp8_tensor_cores():
    """A100 has no fp8 tensor cores (formats.native_formats): fp8 weights run W8A16 with no
    measured kernel to floor them, so every dense GEMM keeps the 16-bit table."""
    rs = _resolved("a100-sxm4-80gb")
    ops = pm.predict(rs.scenario).ops
    assert not any(op.timed_by[1] == "floor" for op in ops)
    for phase in ("prefill", "decode"):
        assert U._floor_shares(U.table_residuals(rs.profile), ops, (phase,)) == {}
