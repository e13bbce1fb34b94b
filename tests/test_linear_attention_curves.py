"""Linear-attention cores on their own measured curves (roofline.LINEAR_KINDS): a gated-delta-net
core (``attn.gdn_core``) reads ``prefill_gdn`` / ``decode_gdn``, a Mamba-2 SSD core
(``attn.ssd_core``) ``prefill_ssd``, a Kimi-delta-attention core (``attn.kda_core``)
``prefill_kda`` / ``decode_kda``, where the profile has them; a prefill core sits on its own
curve at (streams = sequences x value heads on the GPU, q_len). Without the curve the core is
timed exactly as before (the phase's curve at (q_len, q_len)).

Hand counts for Qwen3.5-27B's gated-delta-net layer (text_config: 48 value heads, 16 key heads,
head dims 128, fp32 recurrent state) at TP 2 (24 value heads per GPU), one 8,192-token prompt,
per (token, value head) with fla's chunk C = 64 (ops.gdn_core_bytes: kkt, solve_tril,
recompute_w_u, fwd_h, fwd_o each re-reading their inputs):

    elements = (128 + 64) + (64 + 128 + 128 + 64 + 128 + 128) + 2 x (256 + 128 + 256 + 128) + 2
             = 2,370 at 2 B, + the fp32 A matrix written and read (2 x 64 x 4 B)  = 5,252 B
    bytes    = 24 x 8,192 x 5,252 + the state read and written 2 x 24 x 128 x 128 x 4 B
             = 1,032,585,216 + 3,145,728                                       = 1,035,730,944
    FLOPs    = 24 x 8,192 x 2 x (64 x (3 x 128 + 2 x 128) + 64^2 / 3 + 3 x 128^2)
             = 3.5970e10: 16 us at B200's 2.25 PFLOP/s, memory-bound (~134 us at 7.7 TB/s)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from perfmodel import ops as O
from perfmodel.profile import Curve
from perfmodel.roofline import GDN, KDA, SSD, Roofline, attention_kind, op_times
from perfmodel.specs import registry
from perfmodel.zoo import load_hf_config

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
Q35 = CONFIGS / "Qwen--Qwen3.5-27B_config.json"
GDN_BYTES = 1_035_730_944
PREC = O.Precision(compute="bf16", act=2.0, weight=2.0)


def _gdn(phase: str = "prefill", q: int = 8192, b: int = 1) -> O.Op:
    ops = O.linear_attention_ops(load_hf_config(Q35), b, q, O.Shard(tp=2), PREC, phase)
    return next(op for op in ops if op.name == "attn.gdn_core")


def _mha(q: int = 8192) -> O.Op:
    (core,) = O.attention_ops(load_hf_config(Q35), 1, q, q, O.attention_pairs(q, q),
                              O.Shard(tp=2), PREC, True, "prefill")
    return core


def _time(op: O.Op, profile) -> float:
    return float(op_times([op], Roofline(registry.get_device("b200"), profile)).total())


def _profile(**curves):
    base = registry.profile_for("b200")
    return base.model_copy(update={
        "attention": {**{k: v for k, v in base.attention.items() if "gdn" not in k},
                      "prefill": Curve(values=(0.1,)), **curves},
        "attention_scale": {},
        "attention_overhead_s": {"prefill": 10e-6, "prefill_gdn": 30e-6}})


def test_gdn_core_reads_its_curve_at_streams_and_an_mha_core_does_not():
    """prefill 0.1 flat; prefill_gdn over (streams, q_len) rising from 0.02 at 1 stream to 0.12
    at 1,024 (log2-linear, flat in q_len): 24 streams give 0.02 + 0.1 x log2(24) / 10 =
    0.0658496. The core's time = bytes / (bandwidth x 0.0658496) + 30 us + kernel overhead (at
    (q_len, q_len) = (8192, 8192) it would read the clamped 0.12). Qwen3.5's full-attention core
    (attn.core, head dim 256) keeps prefill's 0.1 and its 10 us with the GDN curve present."""
    core = _gdn()
    assert float(core.bytes) == GDN_BYTES
    assert float(core.flops) == pytest.approx(24 * 8192 * 2 * (64 * 640 + 64**2 / 3 + 3 * 128**2))
    assert attention_kind(core) == GDN and attention_kind(_mha()) == ""
    rising = Curve(axes=("streams", "q_len"), log2_grid=((0.0, 10.0), (0.0, 15.0)),
                   values=(0.02, 0.02, 0.12, 0.12))
    with_curve, without = _profile(prefill_gdn=rising), _profile()
    roof = Roofline(registry.get_device("b200"), with_curve)
    k, bw = with_curve.kernel_overhead_s, roof.bandwidth
    eff = 0.02 + 0.1 * math.log2(24) / 10
    assert _time(core, with_curve) == pytest.approx(GDN_BYTES / (bw * eff) + 30e-6 + k, rel=1e-9)
    # without the curve: the prefill curve, as before
    assert _time(core, without) == pytest.approx(GDN_BYTES / (bw * 0.1) + 10e-6 + k, rel=1e-9)
    assert _time(_mha(), with_curve) == _time(_mha(), without)
    # a fused kernel beats the charged (unfused-chain) traffic: efficiency 2.5, not capped at
    # the streaming plateau (a memory-bound GQA core would be)
    fused = _profile(prefill_gdn=Curve(values=(2.5,)))
    assert _time(core, fused) == pytest.approx(GDN_BYTES / (bw * 2.5) + 30e-6 + k, rel=1e-9)


def test_decode_and_training_passes():
    """decode_gdn flat 0.3 times a decode step's core; without it the decode curve. A training
    forward pass of the same core keeps the prefill curve (the tables time inference kernels)."""
    dec = _gdn("decode", q=1, b=64)
    assert attention_kind(dec) == GDN
    prof = _profile(decode_gdn=Curve(values=(0.3,)))
    plain = prof.model_copy(update={"attention": {k: v for k, v in prof.attention.items()
                                                  if k != "decode_gdn"}})
    roof = Roofline(registry.get_device("b200"), prof)
    t_m = float(dec.bytes) / roof.bandwidth
    assert _time(dec, prof) == pytest.approx(t_m / 0.3 + prof.kernel_overhead_s, rel=1e-6)
    assert _time(dec, plain) != _time(dec, prof)
    fwd = _gdn("fwd")
    assert attention_kind(fwd) == ""
    assert _time(fwd, _profile(prefill_gdn=Curve(values=(0.5,)))) == _time(fwd, _profile())


def test_ssd_and_kda_cores_have_kinds():
    """Nemotron-3-Nano's Mamba-2 core (64 heads, 32 per GPU at TP 2) and Kimi-K3's Kimi delta
    attention core are kinds of their own, placed at sequences x heads streams."""
    nano = load_hf_config(CONFIGS / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json")
    ssd = next(op for op in O.mamba_ops(nano, 2, 2048, O.Shard(tp=2), PREC, "prefill")
               if op.name == "attn.ssd_core")
    assert attention_kind(ssd) == SSD and float(ssd.batch) == 2 * 64 / 2
    k3 = load_hf_config(CONFIGS / "moonshotai--Kimi-K3_config.json")
    kda = next(op for op in O.linear_attention_ops(k3, 1, 4096, O.Shard(tp=8), PREC, "prefill")
               if op.cls == O.ATTENTION)
    assert kda.name == "attn.kda_core" and attention_kind(kda) == KDA


# vLLM 0.24.0's gated-delta-net table on B200 (aiconfigurator-core 0.12.0, Apache-2.0), row 5685
# (0-based) read by hand; columns framework, version, device, op_name, kernel_source, phase,
# batch_size, seq_len, num_tokens, d_model, d_conv, num_k_heads, head_k_dim, num_v_heads,
# head_v_dim, model_name, latency [ms]:
#   vLLM 0.24.0 NVIDIA B200 gdn chunk_gated_delta_rule_flashinfer context 1 8192 8192 2048 4 8 128
#   16 128 Qwen/Qwen3.5-35B-A3B 0.327572
# (Qwen3.5-35B-A3B's 16 key / 32 value heads at TP 2; row 5684 is the same call's conv1d)
GDN_TABLE = "b200_sxm/linear_attention/vllm/0.24.0/gdn_perf.parquet"
MEASURED_5685 = 0.327572e-3


def _table() -> Path:
    from perfmodel.calibrate.reference import sources_dir

    for root in (sources_dir() / "aiconfigurator" / "systems" / "data",
                 Path("/work/shared/reference/measured/aiconfigurator-core-0.12.0/systems/data")):
        if (root / GDN_TABLE).is_file():
            return root / GDN_TABLE
    pytest.skip(f"{GDN_TABLE} is not copied under calibration/sources/measured/aiconfigurator/"
                "systems/data")


def test_a_fitted_prefill_gdn_curve_reproduces_a_measured_row():
    """The curve fitted in the test from the table's chunked-prefill rows times Qwen3.5-35B-A3B's
    GDN core at TP 2 (one 8,192-token prompt) within the table's held-out band (p90 |log ratio|
    of the 30 % of rows the fit did not see), and the held-out error is small."""
    from perfmodel.calibrate.converters_linear import aic_linear_attention
    from perfmodel.calibrate.fit.linear_attention import fit_linear_attention

    recs = aic_linear_attention(_table(), kernels=["chunk_gated_delta_rule_flashinfer"])
    assert any(r["params"]["batch"] == 1 and r["params"]["q_len"] == 8192
               and r["params"]["key_heads"] == 8 and r["params"]["value_heads"] == 16
               and r["time_s"] == pytest.approx(MEASURED_5685) for r in recs)
    base = registry.profile_for("b200")
    base = base.model_copy(update={"attention": {k: v for k, v in base.attention.items()
                                                 if "gdn" not in k}})
    prof, errs, unc = fit_linear_attention(recs, registry.get_device("b200"), base)
    (fe,) = errs
    assert fe.table == "attention.prefill_gdn" and fe.n_test > 1000 and fe.median_ape < 0.05
    model = load_hf_config(CONFIGS / "Qwen--Qwen3.5-35B-A3B_config.json")
    core = next(op for op in O.linear_attention_ops(model, 1, 8192, O.Shard(tp=2), PREC,
                                                    "prefill") if op.name == "attn.gdn_core")
    assert float(core.batch) == 16
    predicted = _time(core, prof)
    assert abs(math.log(predicted / MEASURED_5685)) <= unc["attention.prefill_gdn"]
    # without the curve the same core is timed as before: the softmax prefill curve, ~1.5x
    # faster than the measured kernel
    assert _time(core, base) < 0.8 * MEASURED_5685


def test_fewer_streams_than_measured_take_the_fewest_measured_ones_time():
    """A prefill_gdn curve measured from 64 streams up (flat 0.2): the 24-stream core runs at
    0.2 x 24 / 64 = 0.075, the time of 64 streams (the recurrences run in parallel below the SM
    count; the curve alone would clamp to 0.2)."""
    prof = _profile(prefill_gdn=Curve(axes=("streams", "q_len"), log2_grid=((6.0, 10.0), (13.0,)),
                                      values=(0.2, 0.2)))
    roof = Roofline(registry.get_device("b200"), prof)
    t = _time(_gdn(), prof)
    assert t == pytest.approx(GDN_BYTES / (roof.bandwidth * 0.075) + 30e-6
                              + prof.kernel_overhead_s, rel=1e-9)
