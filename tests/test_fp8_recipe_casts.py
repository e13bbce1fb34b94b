"""Issue 14 item 1: an fp8 recipe's casts cost what its kernels do.

``frameworks_costs.fp8_recipe_costs`` scales a cast's bytes, elements (``shape[0]``, what the
measured cast rate is charged on), vector FLOPs and launches by ``casts_per_operand``; a recipe
whose casts run an amax pass of their own (``amax_pass``: tensorwise, rowwise) is timed at the
profile's measured dynamic quantise rate (``elementwise_rate.cast``), one without (delayed
scaling reads its scale from the amax history; blockwise reduces each block's amax inside the
cast kernel) by its bytes on the memory curve. Hand numbers below come from the H100 reference
profile's own file (its cast rate, kernel overhead and memory-curve table, read as JSON) and the
datasheet bandwidth, not from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.frameworks import common_facts, resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry

DEVICE = "h100-sxm5-80gb"
PROFILE = Path(__file__).resolve().parents[1] / "calibration" / f"{DEVICE}.reference.json"
HBM = 3.35e12  # H100 SXM5 datasheet HBM3 bandwidth, B/s
E = 8192.0 * 8192.0  # one 8192 x 8192 bf16 operand


def _profile_numbers():
    raw = json.loads(PROFILE.read_text())
    table = raw["memory"]
    grid, values = np.asarray(table["log2_grid"][0]), np.asarray(table["values"])
    return raw["elementwise_rate"]["cast"], raw["kernel_overhead_s"], \
        (lambda nbytes: float(np.interp(np.log2(nbytes), grid, values)))


def _operand_cast() -> O.Op:
    """The dynamic tensorwise cast of one operand, as ops.fp8_cast builds it (5 B/element)."""
    return O.Op(name="mlp.up.fp8cast", cls=O.ELEMENTWISE, flops=0.0,
                bytes=E * O.FP8_CAST_BYTES, dtype="fp32", vector_flops=2.0 * E, shape=(E, E),
                kernel="cast", fp8_cast=True)


def _time(recipe: str, op: O.Op) -> float:
    fw = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe=recipe))
    roof = Roofline(registry.get_device(DEVICE), registry.profile_for(DEVICE))
    return float(op_times(FC.fp8_recipe_costs(fw, [op]), roof).time[0])


# recipe -> (casts, bytes per element per cast, amax pass): frameworks/_common.yaml
RECIPES = {"tensorwise": (1, 5.0, True), "rowwise": (2, 5.0, True),
           "delayed": (1, 4.0, False), "blockwise": (2, 3.0, False)}


def test_recipe_facts_are_the_ones_hand_computed_here():
    facts = common_facts().fp8_recipes
    assert {k: (r.casts_per_operand, r.cast_bytes_per_element, r.amax_pass)
            for k, r in facts.items()} == RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_one_operand_cast_time_by_hand(recipe):
    """H100 reference, one 8192 x 8192 operand. Amax recipes: casts x E / 3.826e11 elements/s
    + 2.409 us (tensorwise 177.8 us, rowwise 353.2 us; their bytes at the memory curve, 109 /
    218 us, are shorter). One-pass recipes: casts x bytes / (3.35 TB/s x curve(bytes)) + 2.409
    us (delayed 268 MB at 0.931: 86.0 + 2.4 us; blockwise 403 MB: 129.1 + 2.4 us)."""
    rate, overhead, curve = _profile_numbers()
    casts, per_elem, amax = RECIPES[recipe]
    nbytes = casts * per_elem * E
    by_bytes = nbytes / (HBM * curve(nbytes))
    hand = (max(casts * E / rate, by_bytes) if amax else by_bytes) + overhead
    assert _time(recipe, _operand_cast()) == pytest.approx(hand, rel=1e-3)


def test_reviewers_gemm_cast_orders_the_recipes_by_their_work():
    """The 8192^3 GEMM's forward cast (input + weight, 2 x 8192^2 elements): rowwise is twice
    tensorwise (it was 1.25x when its second cast's elements went uncharged), and the one-pass
    recipes sit below the two-pass ones by their bytes (delayed 4 B < blockwise 2 x 3 B)."""
    cast = O.fp8_cast(O.gemm("mlp.up", 8192.0, 8192.0, 8192.0, O.Precision.training("fp8")))
    t = {r: _time(r, cast) for r in RECIPES}
    _, overhead, _ = _profile_numbers()
    assert t["rowwise"] - overhead == pytest.approx(2.0 * (t["tensorwise"] - overhead), rel=1e-9)
    assert t["delayed"] < t["blockwise"] < t["tensorwise"] < t["rowwise"]


def test_scaled_cast_keeps_the_backward_shape_and_counts_launches():
    cast = _operand_cast()
    fw = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="blockwise"))
    out = FC.fp8_recipe_costs(fw, [cast])[0]
    assert out.shape == (2.0 * E, E) and out.launches == 2.0
    assert out.kernel == FC.FP8_ONE_PASS_CAST and out.bytes == pytest.approx(6.0 * E)
    tw = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="tensorwise"))
    assert FC.fp8_recipe_costs(tw, [cast]) == [cast]


# -- issue 14 item 1, second finding: weight casts once per step where the framework caches ----


def _gemm_and_cast(m=8192.0, n=14336.0, k=4096.0):
    gemm = O.gemm("mlp.up", m, n, k, O.Precision.training("fp8"))
    return gemm, O.fp8_cast(gemm)


def test_weight_cast_once_per_step_where_the_framework_caches_it():
    """Megatron-Core / NeMo keep TE's fp8 weight from the first micro-batch
    (is_first_microbatch): with 4 micro-batches a forward cast charges m k + k n / 4 elements
    (8192 x 4096 + 4096 x 14336 / 4 = 48.2 M of 92.3 M), bytes and vector FLOPs alike;
    torchtitan (torchao Float8Linear re-casts every forward) keeps m k + k n."""
    gemm, cast = _gemm_and_cast()
    nemo = resolve_framework(FrameworkConfig(name="nemo"))
    out = FC.fp8_weight_casts(nemo, [gemm, cast], 4)
    want = 8192.0 * 4096.0 + 4096.0 * 14336.0 / 4.0
    assert out[0] is gemm
    assert float(out[1].shape[0]) == pytest.approx(want)
    assert float(out[1].bytes) == pytest.approx(want * O.FP8_CAST_BYTES)
    assert float(out[1].vector_flops) == pytest.approx(2.0 * want)
    assert out[1].shape[1] == cast.shape[1]  # the backward's output-gradient cast, m n
    assert FC.fp8_weight_casts(nemo, [gemm, cast], 1)[1].shape[0] == pytest.approx(cast.shape[0])
    titan = resolve_framework(FrameworkConfig(name="torchtitan"))
    assert FC.fp8_weight_casts(titan, [gemm, cast], 4) == [gemm, cast]


def test_weight_cast_share_broadcasts_over_a_sweep_of_microbatches():
    gemm, cast = _gemm_and_cast()
    mc = resolve_framework(FrameworkConfig(name="megatron-core"))
    m = np.array([1.0, 2.0, 8.0])
    out = FC.fp8_weight_casts(mc, [gemm, cast], m)[1]
    w = 4096.0 * 14336.0
    assert np.allclose(out.shape[0], 8192.0 * 4096.0 + w / m)
