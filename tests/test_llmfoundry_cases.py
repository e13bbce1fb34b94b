"""validation/training/llmfoundry_mpt.yaml against the published table, transcribed here by hand
from mosaicml/llm-foundry scripts/train/benchmarking/README.md at commit b2a43a1 (2023-10-19; the
rows are unchanged at the Jan-2024 commit 5e85bd62 the case file cites): every case states the
row's micro-batch, global batch, activation checkpointing, precision and FSDP mixed-precision mode
(DEFAULT reduces in fp32, PURE in bf16: Composer v0.16.4 mosaic_fsdp_utils.get_mixed_precision),
and its measured value is the row's Throughput (T/s) / # GPUs."""

import pytest

from perfmodel.validate.cases import load_cases

# id suffix: (T/s, # GPUs, MicroBatchSize, GradAccum, GlobalBatchSize, Activation Checkpointing,
#             Precision, MP Mode), as printed
README_B2A43A1 = {
    "h100_80gb_amp_bf16_mpt70b_seq2048_64gpu": (66523, 64, 8, 4, 2048, True, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_bf16_mpt30b_seq2048_32gpu": (73860, 32, 14, 3, 1344, True, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_bf16_mpt13b_seq2048_64gpu": (307209, 64, 2, 1, 128, False, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_bf16_mpt13b_seq32768_8gpu": (15812, 8, 1, 3, 24, True, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_bf16_mpt7b_seq2048_8gpu": (85144, 8, 6, 1, 48, False, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_bf16_mpt7b_seq8192_8gpu": (55481, 8, 8, 2, 128, True, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_bf16_mpt1b_seq2048_64gpu": (2841754, 64, 20, 1, 1280, False, "amp_bf16", "DEFAULT"),
    "h100_80gb_amp_fp8_mpt3b_seq2048_8gpu": (244692, 8, 10, 6, 480, False, "amp_fp8", "DEFAULT"),
    "h100_80gb_amp_fp8_mpt3b_seq8192_8gpu": (153174, 8, 3, 6, 144, False, "amp_fp8", "DEFAULT"),
    "a100_80gb_bf16_mpt70b_seq2048_64gpu": (26274, 64, 8, 4, 2048, True, "bf16", "PURE"),
    "a100_80gb_amp_bf16_mpt30b_seq2048_8gpu": (7330, 8, 3, 21, 504, True, "amp_bf16", "DEFAULT"),
    "a100_80gb_amp_bf16_mpt13b_seq2048_8gpu": (18097, 8, 2, 3, 48, False, "amp_bf16", "DEFAULT"),
    "a100_80gb_amp_bf16_mpt7b_seq2048_8gpu": (37130, 8, 6, 2, 96, False, "amp_bf16", "DEFAULT"),
    "a100_80gb_amp_bf16_mpt7b_seq8192_8gpu": (25655, 8, 8, 2, 128, True, "amp_bf16", "DEFAULT"),
    "a100_80gb_amp_bf16_mpt1b_seq2048_8gpu": (164109, 8, 14, 4, 448, False, "amp_bf16", "DEFAULT"),
    "a100_40gb_bf16_mpt70b_seq2048_128gpu": (48194, 128, 4, 1, 512, True, "bf16", "PURE"),
    "a100_40gb_bf16_mpt13b_seq2048_32gpu": (63946, 32, 14, 1, 448, True, "bf16", "PURE"),
    "a100_40gb_bf16_mpt7b_seq2048_64gpu": (234614, 64, 18, 1, 1152, True, "bf16", "PURE"),
    "a100_40gb_bf16_mpt3b_seq2048_64gpu": (623167, 64, 6, 1, 384, False, "bf16", "PURE"),
    "a100_40gb_bf16_mpt1b_seq2048_8gpu": (154171, 8, 8, 8, 512, False, "bf16", "PURE"),
}


def _cases():
    return {lc.case.id.removeprefix("llmfoundry_"): lc for lc in load_cases(match="llmfoundry_")}


def test_every_case_is_a_transcribed_row():
    assert set(_cases()) == set(README_B2A43A1)


@pytest.mark.parametrize("suffix", sorted(README_B2A43A1))
def test_case_matches_the_published_row(suffix):
    tps, gpus, mb, ga, gb, ac, precision, mp = README_B2A43A1[suffix]
    lc = _cases()[suffix]
    sc = lc.case.scenario
    t = sc["training"]
    assert sc["system"]["num_gpus"] == gpus
    assert t["micro_batch"] == mb
    assert t["global_batch"] == gb == mb * ga * gpus
    assert (t["recompute"] == "full") is ac
    assert (t["recompute"] == "none") is not ac
    assert (t["precision"] == "fp8") is (precision == "amp_fp8")
    # DEFAULT: fp32 reduce dtype; PURE: the precision's (bf16)
    assert t["grad_reduce_dtype"] == ("fp32" if mp == "DEFAULT" else "bf16")
    assert sc["parallelism"]["zero_stage"] == 3  # FULL_SHARD on every row
    # Throughput (T/s/GPU) as printed is the integer part of T/s / # GPUs
    assert lc.case.measured.value == tps // gpus
