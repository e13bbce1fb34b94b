"""Text of an engine's start-up memory plan, worded as the engine logs it (vLLM: "GPU KV cache
size: N tokens", "Maximum concurrency for X tokens per request: Yx"; SGLang:
"max_total_num_tokens=N"; TensorRT-LLM 1.x: "[MemUsageChange] Allocated X GiB for max tokens in
paged KV cache (N)."; facts an engine does not log under neutral labels), then the memory by
the engine's categories."""

from __future__ import annotations

from .engine_memory import FRACTION_OF
from .textfmt import gib, table


def with_dp_ranks(e: dict | None, attention_dp: int) -> dict | None:
    """``e`` (``Prediction.engine``) with the instance's attention-DP ranks and its KV pool
    summed over them. The engine's own figures (``kv_cache_tokens``, blocks, bytes) are one
    rank's, as each rank logs them: with attention DP every rank holds a pool of its own for
    its own requests (SGLang ``--enable-dp-attention``: one scheduler and one
    ``max_total_num_tokens`` per DP rank, python/sglang/srt/managers/scheduler.py; vLLM: one
    engine core per DP rank, docs serving/data_parallel_deployment), so the instance (one
    model copy over tp x attention_dp x pp GPUs) holds ``kv_cache_tokens_per_instance`` =
    kv_cache_tokens x attention_dp. ``kv_cache_tokens`` keeps its meaning (the engine's
    logged figure, the one validation compares: validate/conventions.engine_metric)."""
    if not e or e.get("kv_cache_tokens") is None:
        return e
    adp = max(int(attention_dp), 1)
    return {**e, "attention_dp": adp,
            "kv_cache_tokens_per_instance": int(e["kv_cache_tokens"]) * adp}


def sglang_startup(e: dict, attention_dp: int, chunk: int | None = None,
                   max_running: int | None = None, fraction_given: bool = False) -> dict:
    """SGLang's scheduler figures of one scheduler (one attention-DP rank), the one rule both
    scenario kinds print: ``chunked_prefill_size`` = the scenario's chunk (serving
    ``serving.scheduler.token_budget``, inference ``inference.prefill_chunk_tokens``, else
    ``engine.max_num_batched_tokens``), else the engine's default by GPU memory (``e``'s
    ``max_num_batched_tokens``, engines/sglang.yaml reserve buckets), then // dp_size;
    ``max_running_requests`` = the instance's (``engine.max_num_seqs`` or the serving batch
    cap) // dp_size. SGLang divides both whether the launch set them or not (sglang v0.5.14
    python/sglang/srt/server_args.py ``_handle_data_parallelism``: ``chunked_prefill_size =
    chunked_prefill_size // dp_size`` when enable_dp_attention, "The chunked prefill size is
    adjusted to ..."; model_executor/model_runner.py ``max_running_requests // dp_size``).
    ``reserve_chunk``: the undivided chunk the derived mem_fraction_static was computed with
    (``_handle_gpu_memory_settings`` runs before the division), when it is not the scenario's
    chunk (``fraction_given``: the scenario set mem_fraction_static, no rule ran)."""
    if e.get("engine") != "sglang":
        return e
    adp = max(int(attention_dp), 1)
    out = dict(e)
    reserve = e.get("max_num_batched_tokens")
    chunk = chunk or reserve
    if chunk:
        out["chunked_prefill_size"] = int(chunk) // adp
        if reserve and int(chunk) != int(reserve) and not fraction_given:
            out["reserve_chunk"] = int(reserve)
    if max_running:
        out["max_running_requests"] = int(max_running) // adp
    return out


def sglang_startup_for(e: dict, sc) -> dict:
    """``sglang_startup`` for an inference scenario ``sc``: its attention_dp, its chunk
    (inference.prefill_chunk_tokens, else engine.max_num_batched_tokens) and the instance's
    max_running_requests (engine.max_num_seqs, else the engine's rule per rank from that
    rank's pool, engines.MaxRunningRule, times dp_size), as serving's deployment takes them.
    Every engine's entry also gets its attention-DP ranks and the instance's KV tokens
    (``with_dp_ranks``)."""
    if e and sc is not None:  # every engine: the pool of one DP rank and of the instance
        e = with_dp_ranks(e, int(sc.parallelism.attention_dp))
    if not e or e.get("engine") != "sglang" or sc is None or sc.kind != "inference":
        return e
    from .engines import engine_for

    adp = int(sc.parallelism.attention_dp)
    inf = sc.inference_or_default()
    running = sc.engine.max_num_seqs
    rule = engine_for(sc.engine).scheduler.max_running
    if running is None and rule is not None:
        running = adp * rule.requests(int(e["kv_cache_tokens"]), int(e["max_model_len"]))
    return sglang_startup(e, adp, inf.prefill_chunk_tokens or sc.engine.max_num_batched_tokens,
                          running, fraction_given=sc.engine.mem_fraction_static is not None)


def _dp_rank_lines(e: dict) -> list[str]:
    """With attention DP the start-up figures above are one DP rank's (each rank logs its
    own, ``with_dp_ranks``): a line saying so, with the instance's KV tokens."""
    adp = e.get("attention_dp") or 1
    if adp <= 1 or e.get("kv_cache_tokens_per_instance") is None:
        return []
    return [f"(per DP rank, as each of the {adp} attention-DP ranks logs it; the instance "
            f"holds {e['kv_cache_tokens_per_instance']:,} KV tokens = {adp} x "
            f"{e['kv_cache_tokens']:,})"]


#: the first TensorRT-LLM release whose start-up KV-cache lines were read from source (below)
TRTLLM_KV_LOG_SINCE = "1.0.0"


def _trtllm_logs_kv_pool(family: str) -> bool:
    """Whether the TensorRT-LLM version family ``family`` (engines/trtllm.yaml or
    engines/versions/trtllm-*.yaml) covers only releases from TRTLLM_KV_LOG_SINCE, whose
    start-up lines ``trtllm_kv_lines`` prints; before 1.0 (the 0.5 - 0.6 family) the batch
    manager that logs them shipped as a binary, so their wording is not read."""
    from .engines import families, version_key

    spec = next((f for f in families("trtllm") if f.version == family), None)
    return spec is not None and bool(spec.ranges) and all(
        version_key(r.since) >= version_key(TRTLLM_KV_LOG_SINCE) for r in spec.ranges)


def trtllm_kv_lines(e: dict) -> list[str]:
    """TensorRT-LLM's start-up lines for its KV cache, as the C++ KVCacheManager logs them once
    the pool is allocated (both backends: the PyTorch backend's KvCacheCreator builds the
    final KVCacheManager with the estimated max_tokens, tensorrt_llm/_torch/pyexecutor/_util.py
    and resource_manager.py; the TensorRT engine's executor the same manager).
    NVIDIA/TensorRT-LLM cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp at b35ac1b (v1.2.0rc2),
    KVCacheManager::allocatePools:
    ``TLLM_LOG_INFO("Number of tokens per block: %d.", ...)`` and
    ``TLLM_LOG_INFO("[MemUsageChange] Allocated %0.2f GiB for max tokens in paged KV cache
    (%d).", cacheSizeBytes / (1 << 30), maxNumTokens)`` with maxNumTokens = primary blocks x
    tokens per block and cacheSizeBytes the primary pools' bytes (the same two calls in every
    earlier copy of the file read, back to allocatePools(dtype, useUvm)). Printed without the
    ``[TensorRT-LLM][INFO]`` prefix, as ``%d`` prints the count (no separators); the pool is
    the blocks' bytes, blocks x tokens per block x KV bytes per token."""
    pool = e["kv_cache_tokens"] * e.get("kv_bytes_per_token", 0.0) or e["kv_cache_bytes"]
    return [f"Number of tokens per block: {e['kv_block_size']}.",
            f"[MemUsageChange] Allocated {pool / 2**30:.2f} GiB for max tokens in paged KV cache "
            f"({e['kv_cache_tokens']})."]


def render_engine(e: dict) -> str:
    """Lines for ``Prediction.engine`` (engine_memory.report; SGLang's scheduler figures per
    attention-DP rank when ``sglang_startup`` added them)."""
    asked = e.get("asked_version")
    family = asked and asked != e["version"]  # the release named, answered by its family
    head = f"engine: {e['engine']} {asked if family else e['version']}"
    if e.get("fraction_name"):
        basis = {"cuda": "as CUDA reports it", "nvidia-smi": "as nvidia-smi reports it"}.get(
            e["device_memory_source"], "nominal; the driver's figure is not sourced")
        # a share of the whole device prints the device's figure as its base
        part = None if e["budget"] == "total_fraction" else FRACTION_OF.get(e["budget"])
        head += (f" ({e['fraction_name']} {e['fraction']:g} of "
                 + (f"{part}; device {gib(e['device_memory_bytes'])}, {basis})" if part
                    else f"{gib(e['device_memory_bytes'])}, {basis})"))
    if family:
        head += f"; the facts of its version family {e['version']}"
    lines = [head]
    if e["engine"] == "sglang":  # scheduler.py's start-up line (no thousands separators)
        words = [f"max_total_num_tokens={e['kv_cache_tokens']}"]
        prefill = e.get("chunked_prefill_size") or e.get("max_num_batched_tokens")
        if prefill:
            words.append(f"chunked_prefill_size={prefill}")
        if e.get("max_running_requests"):
            words.append(f"max_running_requests={e['max_running_requests']}")
        words.append(f"context_len={e['max_model_len']}")
        lines.append(", ".join(words))
        lines.append(f"KV cache: {gib(e['kv_cache_bytes'])}")
        lines += _dp_rank_lines(e)
        if e.get("reserve_chunk"):  # the scenario's chunk is not the one the reserve counted
            lines.append(f"note: {e['fraction_name']} {e['fraction']:g} is SGLang's rule at "
                         f"chunked_prefill_size {e['reserve_chunk']} (the engine's); the "
                         f"scheduler chunk of the scenario is not in that reserve: set "
                         f"engine.max_num_batched_tokens to size the reserve for it")
    elif e["engine"] == "llamacpp":
        lines.append(f"KV cache: n_ctx {e['kv_cache_tokens']:,} tokens allocated up front "
                     f"({gib(e['kv_cache_bytes'])}), {e['max_num_seqs']} slot(s)")
    elif e["engine"] == "trtllm" and _trtllm_logs_kv_pool(e["version"]):
        lines += trtllm_kv_lines(e)
        lines += _dp_rank_lines(e)
    elif e["engine"] == "vllm":
        lines.append(f"Available KV cache memory: {gib(e['kv_cache_bytes'])}")
        lines.append(f"GPU KV cache size: {e['kv_cache_tokens']:,} tokens "
                     f"({e['kv_cache_blocks']:,} blocks of {e['kv_block_size']})")
        lines += _dp_rank_lines(e)
    else:  # an engine whose start-up wording was not read: the facts under neutral labels
        lines.append(f"KV cache: {gib(e['kv_cache_bytes'])}, {e['kv_cache_tokens']:,} tokens "
                     f"({e['kv_cache_blocks']:,} blocks of {e['kv_block_size']})")
        lines += _dp_rank_lines(e)
    if e["engine"] == "vllm":  # vLLM's kv_cache_utils line
        lines.append(f"Maximum concurrency for {e['max_model_len']:,} tokens per request: "
                     f"{e['max_concurrency']:.2f}x")
    elif e["engine"] != "sglang":  # the same fact, which these engines do not log
        lines.append(f"max concurrency (KV tokens / max_model_len {e['max_model_len']:,}): "
                     f"{e['max_concurrency']:.2f}x")
    sched = [f"{k} {e[k]}" for k in ("max_num_seqs", "max_num_batched_tokens") if e.get(k)]
    if sched and e["engine"] != "sglang":
        lines.append("scheduler: " + ", ".join(sched))
    lines.append("")
    lines.append(table([(k, gib(v)) for k, v in e["breakdown"].items()],
                       header=(f"{e['engine']} memory", "per GPU")))
    return "\n".join(lines)
