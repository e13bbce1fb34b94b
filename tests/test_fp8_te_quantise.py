"""Issues 13 / 14: fp8 current scaling costs what Transformer Engine's quantiser runs
(frameworks/nemo.yaml ``fp8_quantise.tensorwise``, read at TE v2.9 70f53666 and v2.14 f031cf87):

* Float8CurrentScalingQuantizer::quantize_impl: zero_amax_kernel, the amax kernel,
  compute_scale_from_amax_kernel and the cast: 4 kernels per tensor;
* LayerNormLinear (attn.qkv, dense mlp.up): the norm computes the amax (FUSED_NORM_AMAX_FP8),
  then amax.zero_(), scale, cast: 3 kernels and no 2 B/element amax read;
* GroupedLinear: split_quantize calls each expert's quantiser in turn (per expert);
* Hopper (not Blackwell): the cast also writes the fp8 transpose, 1 B per element;
* sequence parallelism: one amax all-reduce per column-parallel input (forward) and per
  row-parallel output gradient (backward).

Every expected number below is counted by hand from those facts and the shapes, and the one
timing test reads the H100 reference profile's own JSON (rate, kernel overhead, memory curve).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry


def _nemo(recipe: str = "tensorwise"):
    return resolve_framework(FrameworkConfig(name="nemo", float8_recipe=recipe))


def _fp8():
    return O.Precision(compute="fp8", act=2.0, weight=1.0, cast_inputs=True)


# Qwen3-30B-A3B expert up-projection on one EP-8 rank: 16 local experts, 4096 rows each,
# n = 1536 (gate + up), k = 2048; 32 micro-batches (the 25.11 H100 preset)
G, M, N, K, MB = 16.0, 4096.0, 1536.0, 2048.0, 32.0


def _grouped_layer():
    g = O.grouped_gemm("moe.expert.up", G * M, N, K, G, _fp8())
    fwd = FC.fp8_weight_casts(_nemo(), [g, O.fp8_cast(g)], MB)
    bwd = [b for op in fwd for b in O.backward(op, _fp8())]
    return fwd + bwd


def test_grouped_forward_cast_by_hand_hopper():
    """Forward cast: inputs 16 x 4096 x 2048 = 134,217,728 elements, weights 16 x 2048 x 1536
    = 50,331,648 of which a micro-batch pays 1/32 (1,572,864): 135,790,592 elements.
    Bytes 5 (amax 2 + cast 3) + 1 (transpose) = 6 per element: 814,743,552 B. Rate-charged
    elements x 6/5: 162,948,710.4. Launches: 16 experts x (4 input kernels + 4 x 1/32 weight
    kernels) = 66."""
    ops = FC.fp8_recipe_costs(_nemo(), _grouped_layer(), "Hopper")
    cast = next(op for op in ops if op.name == "moe.expert.up.fp8cast")
    elems = 134_217_728 + 1_572_864
    assert elems == 135_790_592
    assert float(cast.bytes) == pytest.approx(6.0 * elems)
    assert float(cast.shape[0]) == pytest.approx(1.2 * elems)
    assert float(cast.launches) == pytest.approx(66.0)


def test_grouped_backward_cast_by_hand_blackwell():
    """Output gradient 16 x 4096 x 1536 = 100,663,296 elements at 5 B (no transpose on
    Blackwell), 16 experts x 4 kernels = 64 launches."""
    ops = FC.fp8_recipe_costs(_nemo(), _grouped_layer(), "Blackwell")
    cast = next(op for op in ops if op.name == "moe.expert.up.fp8cast.bwd")
    assert float(cast.bytes) == pytest.approx(5.0 * 100_663_296)
    assert float(cast.shape[0]) == pytest.approx(100_663_296)
    assert float(cast.launches) == pytest.approx(64.0)


def test_norm_fused_input_by_hand():
    """Dense attn.qkv (LayerNormLinear), m = 8192, n = 6144, k = 4096, 8 micro-batches, on
    Blackwell: input 33,554,432 elements without the amax pass (3 B), weight 25,165,824 / 8 =
    3,145,728 elements at 5 B: 100,663,296 + 15,728,640 = 116,391,936 B; only the weight's
    elements are charged at the two-pass rate; launches 3 + 4 / 8 = 3.5."""
    g = O.gemm("attn.qkv", 8192.0, 6144.0, 4096.0, _fp8(), matmuls=(O.Matmul(1.0, 6144, True),))
    fwd = FC.fp8_weight_casts(_nemo(), [g, O.fp8_cast(g)], 8.0)
    cast = FC.fp8_recipe_costs(_nemo(), fwd, "Blackwell")[1]
    assert float(cast.bytes) == pytest.approx(116_391_936)
    assert float(cast.shape[0]) == pytest.approx(3_145_728)
    assert float(cast.launches) == pytest.approx(3.5)


def test_recomputed_cast_is_charged_like_the_forward():
    g = O.gemm("attn.out", 8192.0, 4096.0, 4096.0, _fp8(), matmuls=(O.Matmul(1.0, 4096, False),))
    fwd = [g, O.fp8_cast(g)]
    rec = [replace(op, name=op.name + ".recompute", phase="recompute") for op in fwd]
    out = FC.fp8_recipe_costs(_nemo(), fwd + rec, "Hopper")
    assert float(out[3].bytes) == pytest.approx(float(out[1].bytes))
    assert float(out[3].launches) == pytest.approx(8.0)  # input 4 + weight 4 (every micro-batch)


def test_frameworks_without_facts_and_the_baseline_are_unchanged():
    ops = _grouped_layer()
    for fw in (resolve_framework(FrameworkConfig(name="megatron-core",
                                                 float8_recipe="tensorwise")),
               resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="tensorwise"))):
        out = FC.fp8_recipe_costs(fw, ops, "Hopper")
        assert [float(o.bytes) for o in out] == [float(o.bytes) for o in ops]
        assert [float(o.launches) for o in out] == [1.0] * len(ops)


def test_delayed_recipe_has_no_quantiser_facts_in_nemo():
    """Delayed scaling's grouped operands go through one fused multi_cast_transpose (TE
    cast.cpp): nemo states no per-expert facts for it."""
    assert _nemo("delayed").fp8_quantise is None


def test_grouped_cast_time_by_hand_h100():
    """H100 reference profile: time = max(bytes / (3.35 TB/s x curve(bytes)), rate-charged
    elements / cast rate) + kernel overhead x launches (apply_backend adds launches - 1)."""
    device = "h100-sxm5-80gb"
    raw = json.loads((Path(__file__).resolve().parents[1] / "calibration"
                      / f"{device}.reference.json").read_text())
    rate, overhead = raw["elementwise_rate"]["cast"], raw["kernel_overhead_s"]
    grid, values = np.asarray(raw["memory"]["log2_grid"][0]), np.asarray(raw["memory"]["values"])
    fw = _nemo()
    ops = FC.fp8_recipe_costs(fw, _grouped_layer(), "Hopper")
    i = next(j for j, op in enumerate(ops) if op.name == "moe.expert.up.fp8cast")
    roof = Roofline(registry.get_device(device), registry.profile_for(device))
    t = float(FC.apply_backend(fw, op_times(ops, roof), roof).time[i])
    elems = 135_790_592
    nbytes = 6.0 * elems
    by_bytes = nbytes / (3.35e12 * float(np.interp(np.log2(nbytes), grid, values)))
    hand = max(by_bytes, 1.2 * elems / rate) + 66.0 * overhead
    assert t == pytest.approx(hand, rel=1e-3)


def _dense_layer():
    prec = _fp8()
    col = (O.Matmul(1.0, 1.0, True),)
    row = (O.Matmul(1.0, 1.0, False),)
    gemms = [O.gemm("attn.qkv", 1024.0, 768.0, 512.0, prec, matmuls=col),
             O.gemm("attn.out", 1024.0, 512.0, 512.0, prec, matmuls=row),
             O.gemm("mlp.up", 1024.0, 2048.0, 512.0, prec, matmuls=col),
             O.gemm("mlp.down", 1024.0, 512.0, 1024.0, prec, matmuls=row)]
    return [x for g in gemms for x in (g, O.fp8_cast(g))]


def test_amax_reductions_by_hand():
    """Dense layer under SP: qkv and up (column-parallel) reduce in forward, out and down
    (row-parallel) in backward; full recompute re-runs the forward's two in backward."""
    fw = _nemo()
    assert FC.fp8_amax_reductions(fw, _dense_layer(), True, False) == (2.0, 2.0)
    assert FC.fp8_amax_reductions(fw, _dense_layer(), True, True) == (2.0, 4.0)
    assert FC.fp8_amax_reductions(fw, _dense_layer(), False, False) == (0.0, 0.0)
    titan = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="tensorwise"))
    assert FC.fp8_amax_reductions(titan, _dense_layer(), True, False) == (0.0, 0.0)


def test_amax_reductions_skip_router_and_experts():
    prec = _fp8()
    router = O.gemm("moe.router", 1024.0, 128.0, 512.0, prec, matmuls=(O.Matmul(1.0, 1.0, False),))
    up = O.grouped_gemm("moe.expert.up", 4096.0, 768.0, 512.0, 8.0, prec,
                        matmuls=(O.Matmul(1.0, 1.0, True),))
    ops = [router, O.fp8_cast(router), up, O.fp8_cast(up)]
    assert FC.fp8_amax_reductions(_nemo(), ops, True, False) == (0.0, 0.0)


def test_sp_column_input_quantised_before_the_gather_by_hand():
    """TP 8 with SP, Hopper: attn.qkv (LayerNormLinear, norm-fused) m = 8192 gathered rows,
    n = 6144, k = 4096, 8 micro-batches. Forward: input E = 33,554,432 cast on E / 8 rows at
    3 B with no transpose (12,582,912 B), weight 3,145,728 elements at 5 + 1 B (18,874,368 B):
    31,457,280 B; rate-charged: the weight's 3,145,728 x 6/5; launches 3 + 4/8 = 3.5.
    Backward: the output gradient 8192 x 6144 = 50,331,648 elements at 5 + 1 B (301,989,888 B)
    plus the re-gathered fp8 input's transpose, 2 B x E (67,108,864 B): 369,098,752 B;
    launches 4 + 1."""
    g = O.gemm("attn.qkv", 8192.0, 6144.0, 4096.0, _fp8(), matmuls=(O.Matmul(1.0, 6144, True),))
    fwd = FC.fp8_weight_casts(_nemo(), [g, O.fp8_cast(g)], 8.0)
    ops = fwd + [b for op in fwd for b in O.backward(op, _fp8())]
    out = {op.name: op for op in FC.fp8_recipe_costs(_nemo(), ops, "Hopper", 8.0)}
    cast, back = out["attn.qkv.fp8cast"], out["attn.qkv.fp8cast.bwd"]
    assert float(cast.bytes) == pytest.approx(31_457_280)
    assert float(cast.shape[0]) == pytest.approx(1.2 * 3_145_728)
    assert float(cast.launches) == pytest.approx(3.5)
    assert float(back.bytes) == pytest.approx(369_098_752)
    assert float(back.shape[0]) == pytest.approx(1.2 * 50_331_648)
    assert float(back.launches) == pytest.approx(5.0)


@pytest.mark.parametrize("arch,nbytes,launches", [("Hopper", 88_080_384, 5.0),
                                                  ("Blackwell", 20_971_520, 4.0)])
def test_sp_row_output_gradient_quantised_before_the_gather_by_hand(arch, nbytes, launches):
    """attn.out (row-parallel) output gradient 8192 x 4096 = 33,554,432 elements, TP 8 with SP:
    cast on 1/8 of the rows at 5 B (20,971,520 B, 4,194,304 elements at the two-pass rate);
    Hopper adds the transpose of the gathered fp8 gradient (67,108,864 B, one more kernel)."""
    g = O.gemm("attn.out", 8192.0, 4096.0, 512.0, _fp8(), matmuls=(O.Matmul(1.0, 4096, False),))
    ops = [g, O.fp8_cast(g)]
    ops = ops + [b for op in ops for b in O.backward(op, _fp8())]
    cast = next(op for op in FC.fp8_recipe_costs(_nemo(), ops, arch, 8.0)
                if op.name == "attn.out.fp8cast.bwd")
    assert float(cast.bytes) == pytest.approx(nbytes)
    assert float(cast.shape[0]) == pytest.approx(4_194_304)
    assert float(cast.launches) == pytest.approx(launches)


def test_sp_degree_one_is_the_unsplit_charge():
    g = O.gemm("attn.out", 8192.0, 4096.0, 512.0, _fp8(), matmuls=(O.Matmul(1.0, 4096, False),))
    ops = [g, O.fp8_cast(g)]
    ops = ops + [b for op in ops for b in O.backward(op, _fp8())]
    one = FC.fp8_recipe_costs(_nemo(), ops, "Hopper", 1.0)
    plain = FC.fp8_recipe_costs(_nemo(), ops, "Hopper")
    assert [float(o.bytes) for o in one] == [float(o.bytes) for o in plain]
    assert float(one[-1].bytes) == pytest.approx(6.0 * 33_554_432)  # 5 B + transpose
