"""Speed of the 80 % bands (perfmodel.uncertainty): one inference prediction through the
public API (``pm.predict``: the core, the report and the bands) and the bands alone
(``uncertainty.with_ranges`` on the finished prediction), for

- a weight-only scenario (Llama-3.1-8B, fp8 weights with bf16 activations, H100, the generic
  engine, batch 1, 1,024 + 64 tokens), where the band splits the dense GEMMs' time between
  the 16-bit curve and the fp8 kernel's floor (``roofline.weight_only_floor``);
- a plain bf16 scenario of the same shape, for comparison.

Best of several runs (this 2-core machine is noisy); a figure, not a pass / fail test.

Run: python benchmarks/uncertainty_speed.py
"""

from __future__ import annotations

from prediction_speed import best  # the same best-of timing (run as a script from benchmarks/)

import perfmodel as pm
from perfmodel.resolve import resolve
from perfmodel.uncertainty import with_ranges

SCENARIOS = {
    "weight-only fp8 (W8A16), H100": {"weight_dtype": "fp8", "activation_dtype": "bf16"},
    "bf16, H100": {"weight_dtype": "bf16"},
}


def scenario(extra: dict) -> dict:
    return {"kind": "inference", "model": "llama-3.1-8b", "engine": {"name": "generic"},
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
            "inference": {"batch": 1, "prompt_len": 1024, "output_len": 64, **extra}}


def main() -> None:
    for label, extra in SCENARIOS.items():
        sc = pm.as_scenario(scenario(extra))
        pred = pm.predict(sc)  # warm: files read, caches filled
        rs = resolve(sc)
        t_all = best(lambda sc=sc: pm.predict(sc), repeat=7, number=5)
        t_band = best(lambda rs=rs, pred=pred: with_ranges(pred, rs.profile, rs.scenario),
                      repeat=7, number=5)
        print(f"{label}: predict {t_all * 1e3:.1f} ms, of which bands {t_band * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
