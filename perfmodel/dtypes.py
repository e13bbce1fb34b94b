"""Numeric formats: names used everywhere, and bytes per element.

int4 is half a byte; group-wise quantisation scales are added by ``quantized_weight_bytes``.
The block-scaled formats carry their scales in ``BYTES`` itself, because the block layout is
part of the format (a tensor stored in it always has them):

* ``mxfp4``: OCP Microscaling Formats (MX) Specification v1.0 (Open Compute Project, 2023,
  https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf),
  Sec. 5, Table 1: MXFP4 = blocks of k = 32 FP4 (E2M1) elements sharing one 8-bit E8M0 scale,
  i.e. (32 x 4 + 8) / 32 = 4.25 bits = 0.53125 B per element.
* ``nvfp4``: NVIDIA, "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference"
  (NVIDIA Technical Blog, 2025, https://developer.nvidia.com/blog/introducing-nvfp4-for-
  efficient-and-accurate-low-precision-inference/): FP4 (E2M1) values in blocks of 16 sharing
  one FP8 (E4M3) scale, plus one FP32 scale per tensor: 4 + 8/16 = 4.5 bits = 0.5625 B per
  element (the per-tensor scale is negligible).
* ``fp8_block``: FP8 (E4M3) with one FP32 scale per 128 x 128 weight block, DeepSeek-V3
  technical report (arXiv 2412.19437) Sec. 3.3.2 "Fine-Grained Quantization":
  1 + 4/16384 B per element. (DeepSeek scales activations per 1 x 128 tile, 1 + 4/128 B; the
  name stands for the weight layout and the difference is 3 % of an activation's bytes.)

Peaks: a device runs nvfp4 / mxfp4 on its fp4 tensor cores and fp8_block on its fp8 ones
(``specs.hardware.DeviceSpec.peak_flops``), falling back like int4 / fp8 where it has none.
"""

from __future__ import annotations

from typing import Literal

DType = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "nvfp4", "mxfp4",
                "fp8_block"]
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "nvfp4",
                           "mxfp4", "fp8_block")

# Block-scaled formats: (element bits, elements per scale block, scale bits).
BLOCK_SCALED: dict[str, tuple[int, int, int]] = {
    "mxfp4": (4, 32, 8),  # OCP MX v1.0 Table 1: E2M1 elements, E8M0 scale, k = 32
    "nvfp4": (4, 16, 8),  # NVIDIA NVFP4: E2M1 elements, E4M3 scale per 16 (+ fp32 per tensor)
    "fp8_block": (8, 128 * 128, 32),  # DeepSeek-V3 Sec. 3.3.2: fp32 scale per 128x128 block
}


def _block_bytes(bits: int, block: int, scale_bits: int) -> float:
    return (bits + scale_bits / block) / 8.0


BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32; tf32 is a tensor-core compute mode
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    **{name: _block_bytes(*layout) for name, layout in BLOCK_SCALED.items()},
}


def nbytes(dtype: str) -> float:
    """Bytes per element of ``dtype`` (block scales included for the block-scaled formats)."""
    return BYTES[dtype]


# Quantised storage formats of block-scaled training (training.precision mxfp8 / nvfp4,
# Transformer Engine's MXFP8BlockScaling / NVFP4BlockScaling recipes): (element bits, elements
# per scale block, scale bits), and the fp32 scales each quantised tensor carries per orientation
# (rowwise / columnwise) beside its block scales.
# * ``mxfp8``: OCP MX v1.0 Table 1 (MXFP8: k = 32 FP8 elements, E4M3 here, one 8-bit E8M0 scale);
#   TE ``MXFP8BlockScaling`` docstring "Each group of 32 consecutive values is scaled together ...
#   The type of the scaling factor is E8M0" (NVIDIA/TransformerEngine
#   transformer_engine/common/recipe/__init__.py:337-352 @d0067d0da6cb): 1 + 1/32 B per element,
#   no per-tensor scale.
# * ``nvfp4``: ``BLOCK_SCALED["nvfp4"]``; TE ``NVFP4BlockScaling`` "each group of 16 consecutive
#   values is scaled together ... E4M3 ... In level 2, a global per tensor FP32 scaling factor"
#   (recipe/__init__.py:489-497): 0.5 + 1/16 B per element plus 4 B per tensor and orientation.
TRAINING_BLOCK_SCALED: dict[str, tuple[int, int, int]] = {
    "mxfp8": (8, 32, 8),
    "nvfp4": BLOCK_SCALED["nvfp4"],
}
TENSOR_SCALE_BYTES: dict[str, float] = {"mxfp8": 0.0, "nvfp4": 4.0}


def training_format_bytes(fmt: str) -> float:
    """Bytes per element of one quantised copy (one orientation) of a tensor in the block-scaled
    training format ``fmt`` (``TRAINING_BLOCK_SCALED``), its block scales included."""
    return _block_bytes(*TRAINING_BLOCK_SCALED[fmt])


def quantised_tensor_bytes(fmt: str, elements, tensors=1.0, orientations: int = 1):
    """HBM bytes of ``tensors`` tensors of ``elements`` elements in all stored in ``fmt``
    (``TRAINING_BLOCK_SCALED``), ``orientations`` copies each (rowwise and / or columnwise):
    elements x (element + block scale bytes) + the per-tensor fp32 scales."""
    return orientations * (elements * training_format_bytes(fmt)
                           + tensors * TENSOR_SCALE_BYTES[fmt])


def quantized_weight_bytes(dtype: str, group_size: int = 128, scale_bytes: float = 2.0) -> float:
    """Bytes per weight including per-group scales for integer/fp8 weight formats.

    Group-wise quantisation (GPTQ, AWQ: one fp16 scale per ``group_size`` weights, Frantar et al.
    2022 arXiv 2210.17323 Sec. 4; Lin et al. 2023 arXiv 2306.00978) stores ``scale_bytes`` per
    group; int4 with g=128 thus costs 0.5 + 2/128 = 0.5156 B per weight. Zero points, when used,
    are packed at 4 bits per group and are ignored here (< 0.4 % of the weights). fp8 uses one
    per-tensor scale (negligible); 16- and 32-bit formats have none; the block-scaled formats
    (nvfp4, mxfp4, fp8_block) have their fixed block scales in ``BYTES`` already.
    """
    base = BYTES[dtype]
    if dtype in ("int8", "int4"):
        return base + scale_bytes / group_size
    return base
