"""The MI300X rows (cu_num 304) of aiter's GLM-5 fp8 block-scale fused-MoE table are copies of
its MI355X rows (cu_num 256), not MI300X timings (docs/calibration.md, "AMD Instinct reference
profiles"; issue 13). Checked on the stored source file itself, against a hand bound: the time at
32 tokens implies more bandwidth than an MI300X has."""

import csv
from pathlib import Path

from perfmodel.specs.registry import get_device

GLM5 = (Path(__file__).resolve().parents[1] / "calibration" / "sources" / "measured" / "aiter"
        / "b86bc7a9e329" / "aiter" / "configs" / "model_configs"
        / "a8w8_blockscale_tuned_fmoe_glm5.csv")
SHAPE = ("6144", "256", "257", "9")  # hidden, inter per GPU, experts (shared one fused), top-k


def _times(cu_num: str) -> dict[int, float]:
    with GLM5.open() as f:
        return {int(r["token"]): float(r["us"]) for r in csv.DictReader(f)
                if r["cu_num"] == cu_num
                and (r["model_dim"], r["inter_dim"], r["expert"], r["topk"]) == SHAPE
                and float(r["us"]) > 0}


def test_cu304_rows_repeat_the_cu256_times():
    mi300x, mi355x = _times("304"), _times("256")
    assert sorted(mi300x) == [32, 64, 128, 1024, 2048, 4096, 8192, 16384, 32768]
    for tokens, us in mi300x.items():
        assert us == mi355x[tokens], tokens  # to the last digit: one run, copied


def test_32_tokens_would_need_more_than_mi300x_bandwidth():
    # 32 tokens x top-8 of 256 routed experts, uniform routing, plus the fused shared expert:
    # 1 + 256 (1 - (1 - 8/256)^32) = 164.3 experts; each reads its fp8 gate+up (2 x 256 x 6144 B)
    # and down (6144 x 256 B) weights: 4.72 MB
    experts = 1 + 256 * (1 - (1 - 8 / 256) ** 32)
    weight_bytes = experts * 3 * 256 * 6144
    assert abs(weight_bytes / 1e6 - 775) < 2
    implied = weight_bytes / (_times("304")[32] * 1e-6)  # 5.5 TB/s
    assert implied > get_device("mi300x").memory_bandwidth  # 5.3 TB/s peak (spec sheet)
