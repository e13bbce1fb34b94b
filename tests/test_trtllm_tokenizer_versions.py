"""trtllm-serve's tokenising by release (engines/trtllm.yaml overheads.tokenizer and
engines/versions/trtllm-1.1.0rc0.yaml). PR #7515 (merged 2025-09-05) moved the input processor
into ``asyncio.to_thread`` (asyncio's default executor: 32 threads on a large host); before it,
``openai_completion`` called ``generate_async``, which tokenised the text prompt on the event
loop, "a single cpu thread ... for every request" (the PR's description). The pre-releases
uploaded before the merge, 1.1.0rc0 - rc3, keep that path; 1.1.0rc4 on and the 1.0.x releases
read the current file; 1.0.0rc0 - rc6 have no facts. Hand numbers (o200k, engines/tokenizers.yaml:
1.904 ms at 1024 tokens): under 1.1.0rc2, C prompts sent together reach the engine core at
k x 1.904 ms, k = 1..C; under 1.1.0rc4, 40 prompts: the first 32 at 1.904 ms, the other 8 at
2 x 1.904 ms."""

import numpy as np
import pytest

from perfmodel.engines import get_engine
from perfmodel.errors import SpecError
from perfmodel.resolve import resolve
from perfmodel.serving.predict import simulate_serving

TOK_1024 = 0.001904  # engines/tokenizers.yaml o200k, 1024 tokens


def _path(version: str, conc: int) -> np.ndarray:
    """Each request's time from its send to its engine core, in request order."""
    sc = {"kind": "serving", "name": "trtllm-tokenizer-versions", "model": "gpt-oss-20b",
          "engine": {"name": "trtllm", "version": version},
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 1024, "output_len": 4},
          "serving": {"arrival": {"process": "closed", "concurrency": conc},
                      "num_requests": conc}}
    _, reqs = simulate_serving(resolve(sc))
    return reqs.ready - reqs.arrival


@pytest.mark.parametrize("version", ["1.1.0rc0", "1.1.0rc2", "1.1.0rc3"])
def test_prereleases_before_pr7515_tokenise_on_the_event_loop(version):
    tok = get_engine("trtllm", version).overheads.tokenizer
    assert (tok.workers, tok.batch_wait_s, tok.max_batch) == (1, 0.0, 1)


@pytest.mark.parametrize("version", ["1.0.0", "1.0.1", "1.1.0rc4", "1.1.0", "1.2.0rc2"])
def test_later_releases_keep_the_thread_pool(version):
    spec = get_engine("trtllm", version)
    assert spec.version == "1.0"
    assert spec.overheads.tokenizer.workers == 32


@pytest.mark.parametrize("version", ["1.0.0rc0", "1.0.0rc6"])
def test_1_0_prereleases_have_no_facts(version):
    with pytest.raises(SpecError, match=r"1\.1\.0rc0: 1\.1\.0rc0\.\.1\.1\.0rc4"):
        get_engine("trtllm", version)


def test_the_family_changes_only_the_tokenizer():
    """Every other fact is the current file's (same memory, scheduler and eager-host facts);
    a token-id prompt still skips the input processor (generate_async's prompt_token_ids
    branch)."""
    old, cur = get_engine("trtllm", "1.1.0rc2"), get_engine("trtllm", "1.2.0rc2")
    assert old.overheads.token_ids_request_s == 0.0
    assert old.model_dump(exclude={"overheads", "version", "ranges", "field_sources",
                                   "sources", "notes"}) == \
        cur.model_dump(exclude={"overheads", "version", "ranges", "field_sources",
                                "sources", "notes"})
    assert old.overheads.model_dump(exclude={"tokenizer"}) == \
        cur.overheads.model_dump(exclude={"tokenizer"})


def test_one_prompt_at_a_time_under_1_1_0rc2_by_hand():
    np.testing.assert_allclose(_path("1.1.0rc2", 4), TOK_1024 * np.arange(1, 5), rtol=1e-9)


def test_32_prompts_side_by_side_under_1_1_0rc4_by_hand():
    path = _path("1.1.0rc4", 40)
    np.testing.assert_allclose(path[:32], TOK_1024, rtol=1e-9)
    np.testing.assert_allclose(path[32:], 2 * TOK_1024, rtol=1e-9)
