"""Block-scaled training (training.precision mxfp8 / nvfp4, Transformer Engine's
MXFP8BlockScaling / NVFP4BlockScaling; frameworks/_common.yaml block_scaled_recipes), checked
against hand calculations and datasheet numbers:

* the quantise kernel of one GEMM's operands: MXFP8 reads bf16 (2 B) and writes a rowwise and
  a columnwise copy, each 1 B per element + one e8m0 scale byte per 32 elements, in one pass;
  NVFP4 runs an amax pass (2 B), reads again (2 B) and writes both copies at 0.5 B per element
  + one e4m3 scale byte per 16, plus one fp32 scale per tensor and copy;
* the GEMMs of an mxfp8 run on the fp8 peak, of an nvfp4 run on the fp4 peak (B200 datasheet);
* the weights in memory: GEMM weights at both quantised copies, the rest bf16;
* no MXFP8 on H100 (no block-scaled tensor cores), in one line naming the field;
* on B200, an MXFP8 GEMM with its quantise kernels is never slower than the bf16 GEMM once
  every dimension is large.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.errors import SpecError
from perfmodel.frameworks import resolve_framework
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs.registry import get_device, profile_for
from tests.training_ops import step_with_ops

# one GEMM: tokens x hidden -> ffn (Llama-3-8B's up projection at 8192 tokens)
M, N, K = 8192, 14336, 4096
FWD_ELEMS = M * K + K * N  # input (m x k) and weight (k x n): 33,554,432 + 58,720,256
GRAD_ELEMS = M * N  # output gradient (m x n): 117,440,512


def _gemm_and_casts(precision: str, framework=None) -> list[O.Op]:
    prec = O.Precision.training(precision)
    gemm = O.gemm("mlp.up", M, N, K, prec)
    cast = O.fp8_cast(gemm)
    ops = [gemm, cast, *O.backward(gemm, prec), *O.backward(cast, prec)]
    return FC.fp8_recipe_costs(resolve_framework(framework), ops, "Blackwell", 1.0, precision)


def _cast_bytes(ops: list[O.Op]) -> tuple[float, float]:
    fwd = next(op for op in ops if op.fp8_cast and op.phase == "fwd")
    bwd = next(op for op in ops if op.fp8_cast and op.phase == "bwd")
    return float(fwd.bytes), float(bwd.bytes)


def test_mxfp8_quantise_bytes_by_hand():
    # per element: read 2 B; write rowwise 1 + 1/32 and columnwise 1 + 1/32: 4.0625 B; no amax
    # pass, no per-tensor scale. Forward: 92,274,688 x 4.0625 = 374,865,920 B;
    # backward (output gradient): 117,440,512 x 4.0625 = 477,102,080 B
    fwd, bwd = _cast_bytes(_gemm_and_casts("mxfp8"))
    assert fwd == pytest.approx(374_865_920.0, rel=1e-12)
    assert bwd == pytest.approx(477_102_080.0, rel=1e-12)


def test_nvfp4_quantise_bytes_by_hand():
    # per element: amax pass 2 B + read 2 B + rowwise 0.5 + 1/16 + columnwise 0.5 + 1/16:
    # 5.125 B; per tensor 2 x 4 B fp32 scales. Forward (input and weight: 2 tensors):
    # 92,274,688 x 5.125 + 16 = 472,907,792 B; backward (1 tensor):
    # 117,440,512 x 5.125 + 8 = 601,882,632 B
    fwd, bwd = _cast_bytes(_gemm_and_casts("nvfp4"))
    assert fwd == pytest.approx(472_907_792.0, rel=1e-12)
    assert bwd == pytest.approx(601_882_632.0, rel=1e-12)


def test_torchao_mxfp8_casts_each_orientation_apart():
    # torchtitan (torchao mx_mm): dim0 and dim1 casts in kernels of their own, each read 2 B +
    # write 1 + 1/32 B: 2 x 3.03125 = 6.0625 B per element. Forward 92,274,688 x 6.0625 =
    # 559,415,296 B in 4 kernels (input and weight, both orientations); backward 117,440,512 x
    # 6.0625 = 711,983,104 B in 2
    from perfmodel.frameworks_config import FrameworkConfig

    ops = _gemm_and_casts("mxfp8", FrameworkConfig(name="torchtitan"))
    fwd, bwd = _cast_bytes(ops)
    assert fwd == pytest.approx(559_415_296.0, rel=1e-12)
    assert bwd == pytest.approx(711_983_104.0, rel=1e-12)
    casts = {op.phase: float(op.launches) for op in ops if op.fp8_cast}
    assert casts == {"fwd": 4.0, "bwd": 2.0}


def _scenario(precision: str, device: str = "b200") -> dict:
    return {"kind": "training", "model": "llama-3-8b",
            "system": {"device": device, "num_gpus": 8},
            "parallelism": {"tp": 1, "pp": 1, "dp": 8},
            "training": {"seq_len": 8192, "global_batch": 64, "micro_batch": 1,
                         "precision": precision}}


# NVIDIA B200 datasheet, dense: FP8 4.5 PFLOPS, FP4 9 PFLOPS, BF16 2.25 PFLOPS
B200_PEAK = {"fp8": 4.5e15, "nvfp4": 9.0e15, "bf16": 2.25e15}


@pytest.mark.parametrize("precision, gemm_dtype", [("mxfp8", "fp8"), ("nvfp4", "nvfp4")])
def test_gemms_run_at_the_recipe_peak_on_b200(precision, gemm_dtype):
    step = step_with_ops(_scenario(precision))
    roof = Roofline.for_system(step_system(), profile_for("b200"))
    dtypes = {op.name: op.dtype for op in step.op_times.ops if op.cls == O.GEMM}
    for name in ("attn.qkv", "attn.out", "mlp.up", "mlp.down", "mlp.up.dgrad", "mlp.up.wgrad"):
        assert dtypes[name] == gemm_dtype
        assert roof.peak(dtypes[name]) == pytest.approx(B200_PEAK[gemm_dtype], rel=1e-9)
    # the LM head (Megatron's ColumnParallelLinear) and the attention core stay bf16
    assert dtypes["head.lm"] == dtypes["head.lm.wgrad"] == "bf16"
    assert {op.dtype for op in step.op_times.ops if op.cls == O.ATTENTION} == {"bf16"}


def step_system():
    from perfmodel.resolve import resolve

    return resolve(_scenario("bf16")).system


# Llama-3-8B: 32 layers, hidden 4096, GQA 32 / 8 heads of 128, MLP 14336, vocab 128256, untied.
# GEMM weights per layer: q, o 4096^2 each + k, v 4096 x 1024 each (41,943,040) + gate, up, down
# 3 x 4096 x 14336 (176,160,768) = 218,103,808; x 32 = 6,979,321,856. bf16: embedding and LM
# head 2 x 525,336,576 = 1,050,673,152 + norms 32 x 2 x 4096 + 4096 = 266,240: 1,050,939,392
# (8,030,261,248 parameters in all)
LINEAR = 6_979_321_856
OTHER = 1_050_939_392


@pytest.mark.parametrize("precision, per_param", [("mxfp8", 2 * (1 + 1 / 32)),
                                                  ("nvfp4", 2 * (0.5 + 1 / 16))])
def test_weights_at_their_formats(precision, per_param):
    # mxfp8: 2 x 1,050,939,392 + 2.0625 x 6,979,321,856 = 16,496,730,112 B
    # nvfp4: 2 x 1,050,939,392 + 1.125 x 6,979,321,856 = 9,953,615,872 B
    step = step_with_ops(_scenario(precision))
    assert OTHER + LINEAR == 8_030_261_248
    assert float(step.memory["weights"]) == pytest.approx(2 * OTHER + per_param * LINEAR,
                                                          rel=1e-12)
    bf16 = step_with_ops(_scenario("bf16"))
    # gradients (fp32) and optimizer states (fp32 master + Adam) as bf16 training's
    for kind in ("gradients", "optimizer"):
        assert float(step.memory[kind]) == float(bf16.memory[kind])


def test_mxfp8_refused_on_h100_in_one_line():
    from perfmodel.resolve import resolve, training_plan

    with pytest.raises(SpecError) as err:
        rs = resolve(_scenario("mxfp8", "h100-sxm5-80gb"))
        training_plan(rs.scenario, rs.system)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("training.precision: mxfp8 on h100-sxm5-80gb")
    assert "use bf16 or fp16 or fp8 on h100-sxm5-80gb" in msg
    assert "b200" in msg


def _gemm_step_time(precision: str, m: int, n: int, k: int, roof: Roofline) -> float:
    prec = O.Precision.training(precision)
    gemm = O.gemm("mlp.up", m, n, k, prec)
    ops = [gemm, *O.backward(gemm, prec)]
    if prec.cast_inputs:
        cast = O.fp8_cast(gemm)
        ops += [cast, *O.backward(cast, prec)]
    ops = FC.fp8_recipe_costs(resolve_framework(None), ops, roof.device.architecture, 1.0,
                              precision)
    times = op_times(ops, roof)
    return float(sum(float(w) for w in times.weighted()))


_B200 = None


def _b200_roofline() -> Roofline:
    global _B200
    if _B200 is None:
        from perfmodel.resolve import resolve

        _B200 = Roofline.for_system(resolve(_scenario("bf16")).system, profile_for("b200"))
    return _B200


@settings(max_examples=60, deadline=None)
@given(m=st.integers(4096, 65536), n=st.integers(4096, 65536), k=st.integers(4096, 32768))
def test_mxfp8_never_slower_than_bf16_for_large_gemms_on_b200(m, n, k):
    roof = _b200_roofline()
    assert get_device("b200").compute_capability == "10.0"
    assert _gemm_step_time("mxfp8", m, n, k, roof) <= _gemm_step_time("bf16", m, n, k, roof)
