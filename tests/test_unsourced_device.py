"""A device whose file leaves every peak null on purpose (A10G: NVIDIA publishes no datasheet,
hardware_specs/devices/a10g.yaml) is listed as not usable and refused in one line saying why,
not with an error about some dtype the user never asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from perfmodel.api import predict
from perfmodel.errors import SpecError

WHY = "device 'a10g' has no sourced peak FLOP/s"


def test_predict_says_the_peaks_are_unsourced():
    sc = {"kind": "inference", "model": "llama-2-7b", "system": {"device": "a10g", "num_gpus": 1},
          "inference": {"batch": 1, "prompt_len": 128, "output_len": 8}}
    with pytest.raises(SpecError, match=WHY):
        predict(sc)
    train = {"kind": "training", "model": "llama-3-8b",
             "system": {"device": "a10g", "num_gpus": 8}, "parallelism": {"dp": 8},
             "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1}}
    with pytest.raises(SpecError, match=WHY):
        predict(train)


def test_hardware_list_marks_it():
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "hardware", "list"],
                         capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("a10g "))
    assert row.endswith("(no sourced peaks: not usable)")
    assert "not usable" not in next(line for line in out.splitlines()
                                    if line.startswith("a10 "))
