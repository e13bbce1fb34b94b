"""Numeric formats: names used everywhere, and bytes per element.

int4 is half a byte; group-wise quantisation scales are added by ``quantized_weight_bytes``.
"""

from __future__ import annotations

from typing import Literal

DType = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4"]
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")

BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32; tf32 is a tensor-core compute mode
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}


def nbytes(dtype: str) -> float:
    """Bytes per element of ``dtype``."""
    return BYTES[dtype]


def quantized_weight_bytes(dtype: str, group_size: int = 128, scale_bytes: float = 2.0) -> float:
    """Bytes per weight including per-group scales for integer/fp8 weight formats.

    Group-wise quantisation (GPTQ, AWQ: one fp16 scale per ``group_size`` weights, Frantar et al.
    2022 arXiv 2210.17323 Sec. 4; Lin et al. 2023 arXiv 2306.00978) stores ``scale_bytes`` per
    group; int4 with g=128 thus costs 0.5 + 2/128 = 0.5156 B per weight. Zero points, when used,
    are packed at 4 bits per group and are ignored here (< 0.4 % of the weights). fp8 uses one
    per-tensor scale (negligible); 16- and 32-bit formats have none.
    """
    base = BYTES[dtype]
    if dtype in ("int8", "int4"):
        return base + scale_bytes / group_size
    return base
