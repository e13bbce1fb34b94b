"""Naming the engine variant that is a release's default resolves to the family the release
resolves to without it (QA 12-05): vLLM 0.7.x runs the V0 engine by default (V1 opt-in with
VLLM_USE_V1=1 until 0.8.0), and perfmodel agrees, engine {name: vllm, version: '0.7.3'} is the
family '0.7-v0' (engines/versions/vllm-0.7-v0.yaml); {version: '0.7.3', variant: v0} was
refused ("vllm has no facts for version '0.7.3' variant 'v0'") although those are the facts it
uses without the variant. The families such a refusal lists are ordered by version, not text."""

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError


def _family(engine: dict) -> str:
    sc = pm.Scenario(kind="inference", model="llama-3.1-8b", engine=engine,
                     system={"device": "h100-sxm5-80gb", "num_gpus": 1},
                     inference={"batch": 1, "prompt_len": 1024, "output_len": 64})
    return pm.predict(sc).engine["version"]


def test_explicit_v0_variant_of_a_v0_default_release_is_its_default_family():
    default = _family({"name": "vllm", "version": "0.7.3"})
    assert default == "0.7-v0"
    assert _family({"name": "vllm", "version": "0.7.3", "variant": "v0"}) == default


@pytest.mark.parametrize("version, variant, family", [
    ("0.7.3", "v1", "0.7-v1"),     # the opt-in V1 engine of 0.7 keeps its own family
    ("0.9.2", None, "0.8"),        # V1 the default from 0.8.0 ...
    ("0.9.2", "v1", "0.8"),        # ... so naming it is the same family
    ("0.9.2", "v0", "0.7-v0"),     # VLLM_USE_V1=0 until 0.11
])
def test_the_other_variants_resolve_as_before(version, variant, family):
    assert get_engine("vllm", version, variant).version == family


def test_a_variant_without_facts_is_still_refused_listing_families_by_version():
    # no family names variant v0 before 0.6.6+pr12126 (vllm-0.7-v0.yaml's first v0 range);
    # a version past every range is refused by the newest-family rule instead
    # (test_engine_versions_qa1205c.py)
    with pytest.raises(SpecError) as err:
        get_engine("vllm", "0.6.0", "v0")
    msg = str(err.value)
    assert "no facts for version '0.6.0' variant 'v0'" in msg
    listed = [part.split(":")[0] for part in msg.split("known families: ")[1].split("; ")]
    # each family's earliest release, by hand: 0.1.0 < 0.2.4+pr2031 < 0.2.4+pr2151 <
    # 0.3.0+pr2863 < 0.6.3+pr9352 < 0.6.4+pr10511 < 0.6.6+pr12126 < 0.7.0 < 0.8.0 < 0.10.0 <
    # 0.10.2 (engines/vllm.yaml) < 0.12.0 < 0.14.0 < 0.20.0 < 0.22.0 (Model Runner V2 first)
    assert listed == ["0.2.0", "0.2.4+pr2031", "0.2.4+pr2151", "0.3.0+pr2863", "0.6.3+pr9352",
                      "0.6.4+pr10511", "0.7-v0", "0.7-v1", "0.8", "0.10.0", "0.10", "0.12",
                      "0.14", "0.20", "0.22-mrv2", "0.22"]


@pytest.mark.parametrize("version, default", [
    # vLLM's default engine core by hand: V0 up to 0.8.0 (V1 opt-in with VLLM_USE_V1=1),
    # V1 from 0.8.0 (the 0.8.0 release notes: V1 enabled by default); the families that
    # describe those releases each state it as a range naming that variant
    ("0.6.6+pr12126", "v0"), ("0.7.3", "v0"), ("0.8.0", "v1"), ("0.9.2", "v1"),
    ("0.10.1", "v1"), ("0.10.2", "v1"), ("0.11.0", "v1"), ("0.13.0", "v1"), ("0.20.0", "v1"),
])
def test_naming_the_default_variant_is_the_family_without_it(version, default):
    # one mechanism: a range answers exactly its own variant, so this holds only because
    # each family repeats its default-engine range with the variant named
    assert get_engine("vllm", version, default).version == get_engine("vllm", version).version


def test_a_range_answers_only_the_variant_it_names():
    fam = get_engine("vllm", "0.7.3")
    v0_ranges = [(r.since, r.until) for r in fam.ranges if r.variant == "v0"]
    assert v0_ranges == [("0.6.6+pr12126", "0.11.0")]  # the data, not a rule, answers v0 at 0.7.3
    # a family older than the V0 / V1 split names no variant: naming v0 there is refused
    with pytest.raises(SpecError, match=r"no facts for version '0\.5\.0' variant 'v0'"):
        get_engine("vllm", "0.5.0", "v0")
