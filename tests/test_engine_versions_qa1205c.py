"""QA 1205c D7: one version rule for every engine (engines.get_engine).

- A version newer than every family's range is refused in one line that names the field, the
  newest family and the release its range stops before, and the remedy (pin a covered version or
  omit engine.version). vLLM's facts were read up to 0.24.0 (engines/versions/vllm-0.22.yaml), so
  its newest family ends at 0.25.0; SGLang's facts
  were read up to 0.5.23 (engines/versions/sglang-0.5.20.yaml), so its range ends at 0.5.24.
- No version: the newest family (vLLM: 0.22, whose async scheduling is on by default as from
  0.14.0, vLLM v0.14.0 release notes), and default_version_note says so.
"""

from pathlib import Path

import pytest

from perfmodel.engines import default_version_note, families, get_engine
from perfmodel.errors import PerfModelError, SpecError

PREDICT = """kind: inference
model: llama-3.1-8b
system: {device: h100-sxm5-80gb, num_gpus: 1}
parallelism: {tp: 1}
inference: {batch: 8, prompt_len: 1024, output_len: 128}
engine: ENGINE
"""


@pytest.mark.parametrize("engine, version, newest, until", [
    ("vllm", "0.25.0", "0.22", "0.25.0"), ("vllm", "0.27.1", "0.22", "0.25.0"),
    ("vllm", "0.34.0", "0.22", "0.25.0"), ("sglang", "0.6.0", "0.5.20", "0.5.24"),
    ("trtllm", "1.4.0rc1", "1.0", "1.3.0rc23"),
])
def test_a_version_newer_than_the_facts_is_refused_with_the_remedy(engine, version, newest,
                                                                     until):
    with pytest.raises(SpecError) as err:
        get_engine(engine, version)
    msg = str(err.value)
    assert msg.startswith(f"engine.version: {engine} has no facts for version '{version}'")
    assert "\n" not in msg and "known families" not in msg
    assert f"newest version family {newest}" in msg
    assert f"pin a version before {until}" in msg and "omit engine.version" in msg


def test_the_last_covered_release_still_resolves():
    assert get_engine("vllm", "0.19.1").version == "0.14"
    assert get_engine("vllm", "0.21.0").version == "0.20"
    assert get_engine("vllm", "0.24.1").version == "0.22"
    assert get_engine("sglang", "0.5.23").version == "0.5.20"


def test_no_version_is_the_newest_family_and_is_said():
    spec = get_engine("vllm")
    assert spec.version == "0.22"
    assert spec.scheduler.async_scheduling is True  # v0.14.0 release notes: on by default
    note = default_version_note("vllm", None)
    assert note.startswith("engine.version not given: vllm ")
    assert "version family 0.22" in note and "0.25.0" in note and "\n" not in note
    assert default_version_note("vllm", "0.10.2") is None
    assert get_engine("sglang").version == "0.5.20"
    assert get_engine("vllm", None, "v0").version == "0.7-v0"  # V0's newest: until 0.11.0


def test_every_range_ends():
    for engine in ("vllm", "sglang", "trtllm", "llamacpp"):
        assert all(r.until for f in families(engine) for r in f.ranges), engine


def test_a_scenario_file_naming_vllm_0_25_is_refused_in_one_line(tmp_path: Path):
    from perfmodel.api import predict

    path = tmp_path / "v.yaml"
    path.write_text(PREDICT.replace("ENGINE", "{name: vllm, version: 0.25.0}"))
    with pytest.raises(PerfModelError) as err:
        predict(path)
    assert "engine.version" in str(err.value) and "0.25.0" in str(err.value)
    path.write_text(PREDICT.replace("ENGINE", "vllm"))
    # no version: the newest family; llama on it runs Model Runner V2 (vllm-0.22-mrv2.yaml
    # default_for: llama from 0.23.0)
    assert predict(path).engine["version"] == "0.22-mrv2"
