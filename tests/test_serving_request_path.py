"""A request's host time before the engine core sees it (issue 9): engines/<id>.yaml
overheads.tokenizer (vLLM 0.11 - 0.13: AsyncMicrobatchTokenizer's batch_wait_timeout_s, 2 ms,
for a lone prompt) plus tokenising the text prompt (engines/tokenizers.yaml, measured points
read piecewise-linearly).
The simulator delays that request's arrival at the engine, not the batch; its TTFT, counted from
the client's send, includes the delay. Checked against hand numbers."""

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import yaml

from perfmodel.engines import TokenizerFamily
from perfmodel.paths import data_dir
from perfmodel.resolve import resolve
from perfmodel.serving.engine import RequestPath
from perfmodel.serving.predict import deployment_for, serving_inputs


def _raw_overheads(engine: str) -> dict:
    """The engine file's overheads section, read straight from the YAML, with the o200k
    tokenizer's table (engines/tokenizers.yaml) as ``tokenize_s``."""
    with open(data_dir("engines") / f"{engine}.yaml") as f:
        oh = yaml.safe_load(f)["overheads"]
    with open(data_dir("engines") / "tokenizers.yaml") as f:
        return oh | {"tokenize_s": yaml.safe_load(f)["families"]["o200k"]["tokenize_s"]}


def test_request_delay_by_hand():
    h = RequestPath(0.002, ((1000, 0.002), (2000, 0.006)))
    assert h.delay(500) == pytest.approx(0.002 + 0.001)  # (0, 0) -> (1000, 2 ms)
    assert h.delay(1000) == pytest.approx(0.004)
    assert h.delay(1500) == pytest.approx(0.002 + 0.004)  # halfway 2 -> 6 ms
    # past the last point at its mean rate, 6 ms / 2000 tokens = 3 us/token: 2 ms + 9 ms
    assert h.delay(3000) == pytest.approx(0.011)
    assert RequestPath().delay(8000) == 0.0
    assert RequestPath(0.003).delay(8000) == pytest.approx(0.003)


def test_tokenize_points_must_increase():
    for pts in ([(2000, 0.004), (1000, 0.006)], [(1000, 0.006), (2000, 0.004)]):
        with pytest.raises(ValueError, match="tokenize_s"):
            TokenizerFamily(name="t", tokenize_s=pts, sources=["s"])


def _deployment(engine: str | dict, prompt: int, conc: int = 1, n: int = 2):
    sc = {"kind": "serving", "name": "request-path", "model": "gpt-oss-20b", "engine": engine,
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": prompt, "output_len": 8},
          "serving": {"arrival": {"process": "closed", "concurrency": conc},
                      "num_requests": n}}
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    return deployment_for(rs.scenario, rs.system, rs.profile, inf, wl), wl


def _hand_delay(raw: dict, prompt: int) -> float:
    """The micro-batch wait of a lone prompt + the tokenize points read linearly (prompt
    inside the measured range)."""
    pts = [(0, 0.0)] + [(int(a), float(b)) for a, b in raw["tokenize_s"]]
    for (x0, y0), (x1, y1) in pairwise(pts):
        if x0 <= prompt <= x1:
            return (float(raw["tokenizer"]["batch_wait_s"])
                    + y0 + (y1 - y0) * (prompt - x0) / (x1 - x0))
    raise AssertionError("prompt outside the measured points")


def test_vllm_file_values_reach_the_simulated_instance():
    raw = _raw_overheads("vllm")
    dep, _ = _deployment("vllm", 3000)
    path = dep.instances[0].path
    assert path.batch_wait_s == pytest.approx(float(raw["tokenizer"]["batch_wait_s"]))
    assert path.fixed_s == 0.0
    assert path.delay(3000) == pytest.approx(_hand_delay(raw, 3000))


@pytest.mark.parametrize("prompt", [1024, 3000])
def test_an_idle_instance_sees_the_request_after_the_delay(prompt):
    """Concurrency 1: every request reaches an idle instance; with the request path its first
    token comes exactly the hand-computed delay later, its decode steps are unchanged (the
    delay is the request's, not the batch's), and its finish moves by the same amount."""
    raw = _raw_overheads("vllm")
    dep, wl = _deployment("vllm", prompt)
    inst = dep.instances[0]
    with_path = dep.simulate(wl).reqs
    bare = replace(dep, instances=[replace(inst, path=None)])
    without = bare.simulate(wl).reqs
    d = _hand_delay(raw, prompt)
    ttft_with = with_path.first - with_path.arrival
    ttft_without = without.first - without.arrival
    np.testing.assert_allclose(ttft_with - ttft_without, d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(with_path.finish - with_path.first,
                               without.finish - without.first, rtol=1e-9)
    # the second request is sent when the first ends: later by the first one's delay
    assert with_path.arrival[1] - without.arrival[1] == pytest.approx(d)


def test_generic_engine_has_no_request_path():
    dep, _ = _deployment("generic", 1024)
    assert dep.instances[0].path is None and dep.instances[0].host is None
