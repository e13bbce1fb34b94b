"""The longest request a named engine serves when its KV pool is shorter than max_model_len.

Where an engine's file says it starts with a KV pool below one request of max_model_len
(engines/<id>.yaml ``memory.short_pool: cap``), it limits every request to the pool instead
of refusing to start (vLLM refuses: ``short_pool: refuse``, no such limit). The pool is the
one fact the memory code resolves (``engine_memory.EngineMemory.kv_cache_tokens``, the figure
its start-up warning quotes, ``engine_memory.short_pool_problem``); the trigger is the memory
code's own (``max_concurrency`` < 1: less than one max_model_len request). What the engine
then does with a request beyond the capped length, from its source:

* **SGLang** (PyPI wheel sglang-0.5.6-py3-none-any.whl, sha256 c32b6a5b...9712bf66b, paths
  under python/sglang/srt/): managers/tp_worker.py L303-307 ``max_req_len = min(context_len
  - 1, max_total_num_tokens - 1)``, ``max_req_input_len = max_req_len - 5``; a prompt of
  ``>= max_req_input_len`` tokens is aborted (managers/utils.py ``validate_input_length``
  L102-117, "Input length (N tokens) exceeds the maximum allowed length", unless
  --allow-auto-truncate; scheduler.py L1378-1386 ``req.set_finish_with_abort``,
  schedule_batch.py L1040-1049 ``FINISH_ABORT(error_msg, HTTPStatus.BAD_REQUEST)``, which
  tokenizer_manager.py L1090-1101 raises as a ValueError (HTTP 400) or, streaming, sends as
  the request's last chunk); any other request's output is cut short:
  scheduler.py ``init_req_max_new_tokens`` L1192-1200 ``max_new_tokens = min(max_new_tokens,
  max_req_len - len(origin_input_ids) - 1)`` (it finishes with reason "length"). The same in
  the 0.5.14 wheel (sha256 4fe16056...cc99): tp_worker.py ``get_worker_info`` L447-458
  (max_req_len with max_token_pool_size, max_req_len - 5), utils.py L155-170, scheduler.py
  ``init_req_max_new_tokens`` L1852-1871 (also capped at max_total_num_tokens - ceil_page(
  prompt) - page_size - 1: the same bound at page_size 1). Served: prompt + output <=
  max_req_len - 1; refused: prompt >= max_req_len - 5.
* **TensorRT-LLM** (PyTorch backend): the KV cache manager lowers max_seq_len to the pool's
  whole blocks (engines/trtllm.yaml source trtshortpool) and the worker takes the lowered
  value (tensorrt_llm/executor/base_worker.py ``setup_engine._create_py_executor`` at
  7b437aaa73bf5a44b1102aee5c631074da763b8f: "max_seq_len might be updated by model engine":
  ``self.max_seq_len = _executor.max_seq_len``); ``_enqueue_request._deduce_max_tokens``
  (same file and commit) sets ``default_max_tokens = max_seq_len - prompt_len`` and a
  larger ``max_tokens`` is replaced by it ("User-specified `max_tokens` (N) is greater than
  deduced `default_max_tokens` (M), using default_max_tokens instead"): the output is cut
  short. A prompt of max_seq_len tokens or more leaves ``default_max_tokens <= 0``: a later
  revision of the same function (code index copy of base_worker.py, 2026) raises "`default_max_tokens`
  (N) must be greater than 0" (a RequestError: the request fails); at 7b437aaa it logs a
  warning and submits max_tokens <= 0. Served: prompt + output <= max_seq_len; refused:
  prompt >= max_seq_len.
* any other engine with ``short_pool: cap`` and no rule here: prompt + output <= the pool,
  a prompt of the pool or more refused (the pool's own bound), said so in the note.

(These margins belong beside ``memory.short_pool`` in the engine files; they are here
because the serving package is where they are used.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .workload import Workload


@dataclass(frozen=True)
class CapRule:
    """How an engine caps a request to a short pool (module docstring): its capped length L
    is min(max_model_len - ``context_minus``, pool - ``pool_minus``); it serves prompt +
    output <= L - ``total_minus`` (a longer output is cut) and refuses a prompt >=
    L - ``prompt_minus``."""

    context_minus: int
    pool_minus: int
    total_minus: int
    prompt_minus: int
    name: str  # the engine's own name of L
    refusal: str  # what a refused request gets
    source: str


CAP_RULES = {
    "sglang": CapRule(1, 1, 1, 5, "max_req_len",
                      "aborted, HTTP 400 'Input length ... exceeds the maximum allowed length'",
                      "sglang 0.5.6 tp_worker.py L303-307, utils.py L102-117, scheduler.py "
                      "L1192-1200 (perfmodel/serving/limits.py)"),
    "trtllm": CapRule(0, 0, 0, 0, "max_seq_len",
                      "an error ('default_max_tokens' must be greater than 0)",
                      "TensorRT-LLM executor/base_worker.py _deduce_max_tokens at 7b437aaa; "
                      "engines/trtllm.yaml source trtshortpool (perfmodel/serving/limits.py)"),
}
GENERIC_CAP = CapRule(0, 0, 0, 0, "the pool", "refused",
                      "no rule of this engine's: the pool's own bound (perfmodel/serving/"
                      "limits.py)")


@dataclass(frozen=True)
class RequestLimit:
    """The engine's capped request length on one instance type (module docstring)."""

    engine: str  # engines/<id>.yaml id
    engine_name: str
    pool_tokens: int  # KV pool of one GPU (one attention-DP rank), EngineMemory.kv_cache_tokens
    max_model_len: int
    capped_len: int  # the engine's own limit (SGLang max_req_len, TensorRT-LLM max_seq_len)
    max_request_tokens: int  # prompt + output it serves; a longer output is cut to this
    max_prompt_tokens: int  # the longest prompt it accepts
    rule: CapRule

    def served(self, wl: Workload) -> Workload:
        """``wl`` as the engine serves it: prompts above max_prompt_tokens refused (a client's
        failed requests, not simulated: ``Workload.without``), the other requests' outputs
        cut to max_request_tokens - prompt. Unchanged when every request fits."""
        refused = wl.prompt > self.max_prompt_tokens
        cut = ~refused & (wl.prompt + wl.output > self.max_request_tokens)
        if not refused.any() and not cut.any():
            return wl
        if refused.all():
            from ..errors import SpecError

            raise SpecError(
                f"serving: every prompt is longer than the {self.max_prompt_tokens:,} tokens "
                f"{self.engine_name} accepts: its KV pool ({self.pool_tokens:,} tokens per GPU) "
                f"is below max_model_len {self.max_model_len:,}, so it caps a request at "
                f"{self.rule.name} = {self.capped_len:,} and refuses longer prompts "
                f"({self.rule.refusal}); add GPUs, a smaller weight or KV dtype, or shorter "
                "prompts")
        measured = np.arange(len(wl)) >= wl.warmup
        output = np.where(cut, self.max_request_tokens - wl.prompt, wl.output)
        out = Workload(wl.arrival, wl.prompt, output.astype(np.int64), wl.concurrency,
                       wl.warmup, wl.failed, wl.context_limit, wl.warmup_phase,
                       pool_refused=wl.pool_refused, truncated=wl.truncated
                       + int((cut & measured).sum()))
        if refused.any():
            out = out.without(refused, wl.context_limit, pool=True)
        return out

    def summary(self) -> dict:
        return {"engine": self.engine, "kv_pool_tokens": self.pool_tokens,
                "max_model_len": self.max_model_len, "limit_name": self.rule.name,
                "capped_len": self.capped_len,
                "max_request_tokens": self.max_request_tokens,
                "max_prompt_tokens": self.max_prompt_tokens,
                "longer_prompt": self.rule.refusal,
                "longer_request": "output cut to max_request_tokens - prompt",
                "source": self.rule.source}

    def note(self, wl: Workload) -> str:
        """The warning that says what the engine does with this workload's long requests."""
        head = (f"{self.engine_name}: the KV pool ({self.pool_tokens:,} tokens per GPU) is below "
                f"max_model_len {self.max_model_len:,}, so it caps a request at "
                f"{self.rule.name} = {self.capped_len:,} (engines/{self.engine}.yaml "
                f"memory.short_pool: cap): a prompt of more than {self.max_prompt_tokens:,} "
                f"tokens is refused ({self.rule.refusal}), a longer request's output is cut "
                f"so that prompt + output <= {self.max_request_tokens:,}")
        parts = []
        if wl.pool_refused:
            parts.append(f"{wl.pool_refused:,} request(s) refused (counted as failed, not "
                         "simulated)")
        if wl.truncated:
            parts.append(f"{wl.truncated:,} request(s) cut short (simulated with the shorter "
                         "output)")
        return head + ("; " + "; ".join(parts) if parts else "") + f" [{self.rule.source}]"


def pool_request_limit(mem, spec) -> RequestLimit | None:
    """The request limit of an engine that caps requests to a short pool (module docstring),
    from its start-up memory plan ``mem`` (an ``EngineMemory``) and facts ``spec``; None when
    the engine does not cap (its file's rule is not ``cap``) or the pool holds one
    max_model_len request."""
    if spec.memory.short_pool != "cap" or mem.kv_cache_tokens <= 0 or mem.max_concurrency >= 1:
        return None
    rule = CAP_RULES.get(spec.id, GENERIC_CAP)
    capped = min(int(mem.max_model_len) - rule.context_minus,
                 int(mem.kv_cache_tokens) - rule.pool_minus)
    return RequestLimit(spec.id, spec.name, int(mem.kv_cache_tokens), int(mem.max_model_len),
                        capped, capped - rule.total_minus, capped - rule.prompt_minus - 1, rule)


def tightest(limits) -> RequestLimit | None:
    """The limit a request meets first among instance types (a disaggregated deployment's
    prefill and decode pools): the smallest max_request_tokens; None without any."""
    found = [x for x in limits if x is not None]
    return min(found, key=lambda x: (x.max_request_tokens, x.max_prompt_tokens)) if found else None
