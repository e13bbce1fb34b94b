"""FSDP1 (Composer / llm-foundry) casts the flat gradient to the reduce dtype only when they
differ (torch 2.1 fsdp/_runtime_utils.py _post_backward_hook): mixed precision DEFAULT (fp32
reduction) pays read 2 B + write 4 B per parameter and block, PURE (bf16 reduction) nothing."""

import pytest

from perfmodel.api import predict
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.frameworks_costs import fsdp_copies


def test_fsdp1_reduce_copy_is_the_cast_only():
    fsdp = resolve_framework(FrameworkConfig(name="fsdp"))
    block = 12 * 4096**2 + 2 * 4096  # one MPT-7B block: 12 d^2 weights, two bias-free LayerNorms
    (cast,) = fsdp_copies(fsdp, 3, block, backward=True, grad_cast=True)
    assert cast.bytes == pytest.approx(block * 6.0)  # bf16 read 2 B + fp32 write 4 B
    assert fsdp_copies(fsdp, 3, block, backward=True, grad_cast=False) == []
    assert fsdp_copies(fsdp, 3, block, backward=False) == []  # FSDP1 gathers in place


def test_fsdp2_copies_stay_whatever_the_reduce_dtype():
    """torchtitan's FSDP2 copies every gradient into the reduce-scatter input (chunk_cat)."""
    tt = resolve_framework(FrameworkConfig(name="torchtitan"))
    with_cast = fsdp_copies(tt, 3, 1e8, backward=True, grad_cast=True)
    without = fsdp_copies(tt, 3, 1e8, backward=True, grad_cast=False)
    assert [op.bytes for op in with_cast] == [op.bytes for op in without]


def _mpt(grad_dtype: str) -> dict:
    return {"kind": "training", "model": "mpt-7b",
            "system": {"device": "a100-sxm4-40gb", "num_gpus": 8},
            "parallelism": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3,
                            "overlap_param_gather": True},
            "training": {"seq_len": 2048, "global_batch": 96, "micro_batch": 4,
                         "precision": "bf16", "recompute": "full", "flash_attention": True,
                         "dropout": False, "grad_reduce_dtype": grad_dtype,
                         "framework": "fsdp"}}


def test_pure_mixed_precision_runs_no_fsdp_copy():
    default = predict(_mpt("fp32")).breakdown["time"]
    pure = predict(_mpt("bf16")).breakdown["time"]
    assert default.get("fsdp_copies", 0.0) > 0.0
    assert pure.get("fsdp_copies", 0.0) == 0.0
