"""Whether a named engine runs an inference scenario, and how many of its requests it holds.

With ``engine: generic`` an inference prediction's ``fits`` is perfmodel's own memory rule and
its max concurrency the sequences whose KV fits beside the weights (inference._memory). A
named engine decides both itself, from the KV pool it sizes at start-up (engine_memory):

* it **starts** when its memory fraction is positive (SGLang derives mem_fraction_static from a
  reserve that can exceed the GPU: server_args.py ``_handle_gpu_memory_settings``), its KV
  pool is not empty, and, where its file says it refuses a pool below one request of
  max_model_len (``memory.short_pool: refuse``: vLLM v1/core/kv_cache_utils.py
  ``check_enough_kv_cache_memory``), it holds one (SGLang and TensorRT-LLM start and cap a
  request at the pool, ``cap``); llama.cpp starts when its
  weights and n_ctx cells of KV fit the device (the cells are allocated up front);
* it **holds a request** of c = prompt_len + output_len tokens when the c - 1 tokens whose KV
  it stores (the last generated token is not fed back; the scenario's own context rule) are
  within max_model_len and its pool holds one such request; for llama.cpp within n_ctx /
  n_parallel, each slot's share (tools/server/server.cpp ``init``: n_ctx_slot = n_ctx /
  params_base.n_parallel);
* its **max concurrency** at that context (c tokens, as the prediction's KV cache per sequence
  counts them) is, per attention-DP group (each group has its own
  pool: engine_memory gives one group's GPU), floor(blocks / ceil(c / block)) requests (a
  request holds whole blocks: vLLM KVCacheManager, SGLang page_size), or, for a hybrid model,
  the pool over one request's bytes (engine_memory.hybrid_request_bytes); capped by the
  engine's running-request limit: vLLM max_num_seqs per engine core (one per DP rank),
  SGLang max_running_requests // dp_size per rank (model_runner.py; unset: its default rule,
  MaxRunningRule.requests), TensorRT-LLM max_batch_size, llama.cpp n_parallel slots.
  The instance (one model copy, as the engine logs it and as the generic figure counts)
  holds that times attention_dp;
* it **fits** the scenario when it starts, holds a request and its max concurrency covers
  the scenario's batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .engine_memory import FRACTION_OF, EngineMemory, EngineShape, hybrid_request_bytes
from .engines import EngineSpec
from .specs.model import ModelSpec


@dataclass(frozen=True)
class EngineFit:
    """The named engine's verdict on a scenario (module docstring)."""

    starts: bool
    holds_request: bool
    max_concurrent_sequences: int  # one instance: per group x attention_dp
    fits: bool
    reasons: list[str] = field(default_factory=list)  # why not, each naming what to change
    start_reasons: list[str] = field(default_factory=list)  # the first of reasons: no start


def weights_exceed_device(mem: EngineMemory) -> str:
    """"" unless one GPU's weights alone exceed the device's memory; then why no memory
    fraction can help and what does (more GPUs per instance, a smaller weight format)."""
    if mem.weights_bytes < mem.device_memory_bytes:
        return ""
    return (f"the weights alone need {mem.weights_bytes / 2**30:.2f} GiB per GPU, more than the "
            f"device's {mem.device_memory_bytes / 2**30:.2f} GiB, so no memory fraction can "
            "fit them; spread them over more GPUs per instance (a higher tp, pp or, for a MoE "
            "model, ep) or use a smaller weight_dtype")


def fraction_hint(mem: EngineMemory) -> str:
    """"engine.<fraction> (<what it is a fraction of>)" for a message, "" without one."""
    if not mem.fraction_name:
        return ""
    meaning = FRACTION_OF.get(mem.budget)
    return f"engine.{mem.fraction_name}" + (f" (a share of {meaning})" if meaning else "")


def fails_to_start(mem: EngineMemory, spec: EngineSpec) -> list[str]:
    """Why the engine would not start with this memory plan (empty: it starts)."""
    out = []
    too_big = weights_exceed_device(mem)
    if too_big:
        out.append(f"{too_big}; the engine fails to load them")
    elif mem.fraction is not None and mem.fraction <= 0:
        out.append(f"its {mem.fraction_name} comes out at {mem.fraction:.3f} (no memory left "
                   f"for the KV cache), so the engine fails to start; set "
                   f"engine.{mem.fraction_name}")
    elif spec.memory.budget == "context_upfront":  # llama.cpp: weights + n_ctx cells up front
        need = mem.weights_bytes + mem.kv_cache_bytes + mem.non_torch_bytes
        if need > mem.device_memory_bytes:
            out.append(f"weights + KV for n_ctx = {mem.max_model_len:,} tokens need "
                       f"{need / 2**30:.2f} GiB of the device's "
                       f"{mem.device_memory_bytes / 2**30:.2f} GiB, so it fails to load; lower "
                       "engine.max_model_len (n_ctx) or add GPUs")
    elif mem.kv_cache_tokens <= 0:
        out.append("no memory is left for its KV cache, so the engine fails to start; "
                   + (f"raise {fraction_hint(mem)}, " if mem.fraction_name else "")
                   + "use a smaller weight_dtype or add GPUs")
    elif spec.memory.short_pool == "refuse" and mem.max_concurrency < 1:
        # the engine refuses a pool below one request of max_model_len (engines/<id>.yaml
        # memory.short_pool; vLLM v1/core/kv_cache_utils.py check_enough_kv_cache_memory, by
        # bytes: a hybrid model's layer groups summed); "cap" engines start (SGLang,
        # TensorRT-LLM) and engine_fit's pool check decides whether a request is held
        out.append(f"its KV cache ({mem.kv_cache_tokens:,} tokens) holds less than one request "
                   f"of max_model_len {mem.max_model_len:,}, so the engine fails to start; "
                   "lower engine.max_model_len or add GPUs")
    return out


def running_cap(mem: EngineMemory, spec: EngineSpec, attention_dp: int,
                seqs_given: int | None) -> int | None:
    """Requests one attention-DP group's scheduler runs at once (None: no cap): SGLang's
    max_running_requests is the instance's and is divided among the DP ranks
    (``memory.attention_dp_in_tp_group``; unset, its rule from the rank's pool at its
    context length); other engines run one scheduler per DP rank with its own max_num_seqs."""
    in_group = bool(spec.memory.attention_dp_in_tp_group)
    if seqs_given is not None:  # SGLang: max_running_requests // dp_size (may be 0: none run)
        return seqs_given // attention_dp if in_group else seqs_given
    rule = spec.scheduler.max_running
    if rule is not None:
        return rule.requests(mem.kv_cache_tokens, mem.max_model_len)
    return mem.max_num_seqs


def engine_fit(mem: EngineMemory, spec: EngineSpec, model: ModelSpec, shape: EngineShape,
               batch: int, context: int, seqs_given: int | None = None,
               length_checked: bool = True) -> EngineFit:
    """The engine's verdict on ``batch`` requests of ``context`` tokens (module docstring);
    ``seqs_given``: the scenario's engine.max_num_seqs (None: the engine's default);
    ``length_checked`` false: the request is not held to max_model_len (a scenario that models
    a run beyond the model's context without naming the engine's own limit)."""
    adp = max(int(shape.attention_dp), 1)
    start_reasons = fails_to_start(mem, spec)
    reasons = list(start_reasons)
    starts = not reasons
    upfront = spec.memory.budget == "context_upfront"
    slots = mem.max_num_seqs or 1
    if upfront:
        limit = mem.max_model_len // slots  # n_ctx_slot
        holds = context - 1 <= limit
        if not holds:
            reasons.append(f"a request of {context - 1:,} tokens exceeds a slot's context of "
                           f"{limit:,} (n_ctx {mem.max_model_len:,} / {slots} slot(s)); raise "
                           "engine.max_model_len (n_ctx)")
        per_group = slots if holds else 0
    else:
        # the tokens whose KV it stores: the last generated token is never fed back (the
        # scenario's own context rule, Scenario: prompt_len + output_len - 1)
        holds = context - 1 <= mem.max_model_len or not length_checked
        if not holds:
            reasons.append(f"a request of {context - 1:,} tokens exceeds max_model_len "
                           f"{mem.max_model_len:,}; raise engine.max_model_len")
        if model.layer_types:
            per_req = hybrid_request_bytes(model, shape.kv_dtype, shape.tp, shape.pp, context,
                                           mem.max_num_batched_tokens, mem.kv_block_size)
            per_group = int(mem.kv_cache_bytes // per_req) if per_req > 0 else 0
        else:
            need = math.ceil(context / mem.kv_block_size)
            per_group = mem.kv_cache_blocks // need if need else 0
        if starts and holds and per_group < 1:
            holds = False
            reasons.append(f"a request of {context:,} tokens needs more KV cache than the "
                           f"engine's pool of {mem.kv_cache_tokens:,} tokens per GPU; raise "
                           f"engine.{mem.fraction_name} or add GPUs")
        cap = running_cap(mem, spec, adp, seqs_given)
        if cap is not None:
            per_group = min(per_group, cap)
        if not (starts and holds):
            per_group = 0
    total = per_group * adp
    fits = starts and holds and per_group * adp >= batch
    if starts and holds and not fits:
        reasons.append(f"it holds {per_group * adp:,} request(s) of {context:,} tokens at once per "
                       f"instance, fewer than the batch of {batch:,}; lower inference.batch"
                       + ("" if upfront else ", raise the engine's memory fraction")
                       + " or raise engine.max_num_seqs" + (" (n_parallel)" if upfront else ""))
    return EngineFit(starts=starts, holds_request=holds, max_concurrent_sequences=total,
                     fits=fits, reasons=reasons, start_reasons=start_reasons)


def engine_cause(model: ModelSpec, system, parallelism, inference, tp: int, engine,
                 profile) -> str:
    """Why the named engine's KV pool is too small, as its memory plan says it (its problems:
    a negative derived fraction, no memory left), for a refusal to quote; "" when it names
    none."""
    from dataclasses import replace

    from .engine_memory import engine_memory, shape_for
    from .engines import engine_for

    shape = replace(shape_for(parallelism, inference, system), tp=tp)
    mem = engine_memory(model, system.device, shape, engine_for(engine), engine,
                        profile.memory_overheads.cuda_context_gib)
    if not mem.problems:
        return ""
    too_big = weights_exceed_device(mem)
    if too_big:  # no fraction helps: say so rather than quote the fraction's advice
        return f"{mem.engine}: {too_big}"
    field_name = mem.fraction_name
    hint = (f"; set {fraction_hint(mem)}"
            if field_name and f"engine.{field_name}" not in " ".join(mem.problems) else "")
    return f"{mem.engine}: " + "; ".join(mem.problems) + hint
