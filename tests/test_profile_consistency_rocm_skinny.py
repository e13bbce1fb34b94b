"""vLLM's ROCm few-token GEMM (wvSplitK) on MI325X: the same gfx942 kernel as on MI300X, so a
batch-1 decode on MI325X (same compute die, 6.0 vs 5.3 TB/s HBM) is not slower than on MI300X
(QA 1205c D2: the fractions were keyed to mi300x only and MI325X fell to the hipBLASLt curve)."""

import pytest

from perfmodel import api
from perfmodel.engines import get_engine

MI300X_TBPS, MI325X_TBPS = 5.3, 6.0  # datasheet HBM bandwidth (hardware_specs/devices)


@pytest.mark.parametrize("version", [None, "0.14.0"])
def test_mi325x_fractions_are_mi300x_achieved_bandwidth(version):
    fr = get_engine("vllm", version).gemm.skinny.hbm_fraction
    for a, b in zip(fr["mi300x"], fr["mi325x"], strict=True):
        if a is None:
            assert b is None
        else:  # the same absolute TB/s as measured on MI300X, to the yaml's 3 digits
            assert b * MI325X_TBPS == pytest.approx(a * MI300X_TBPS, abs=0.003)


@pytest.mark.parametrize("version", [None, "0.14.0"])
def test_mi325x_decodes_no_slower_than_mi300x(version):
    def tpot(device):
        engine = "vllm" if version is None else {"name": "vllm", "version": version}
        return api.predict({"kind": "inference", "model": "llama-3.1-70b", "engine": engine,
                            "system": {"device": device, "num_gpus": 1},
                            "inference": {"batch": 1, "prompt_len": 1024,
                                          "output_len": 256}}).tpot_s
    assert tpot("mi325x") <= tpot("mi300x") * 1.0001
