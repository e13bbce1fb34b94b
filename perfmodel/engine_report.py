"""Text of an engine's start-up memory plan, worded as the engine logs it (vLLM: "GPU KV cache
size: N tokens", "Maximum concurrency for X tokens per request: Yx"; SGLang:
"max_total_num_tokens=N"), then the memory by the engine's categories."""

from __future__ import annotations

from .textfmt import gib, table


def render_engine(e: dict) -> str:
    """Lines for ``Prediction.engine`` (engine_memory.report)."""
    head = f"engine: {e['engine']} {e['version']}"
    if e.get("fraction_name"):
        basis = {"cuda": "as CUDA reports it", "nvidia-smi": "as nvidia-smi reports it"}.get(
            e["device_memory_source"], "nominal; the driver's figure is not sourced")
        head += (f" ({e['fraction_name']} {e['fraction']:g} of "
                 f"{gib(e['device_memory_bytes'])}, {basis})")
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
    elif e["engine"] == "llamacpp":
        lines.append(f"KV cache: n_ctx {e['kv_cache_tokens']:,} tokens allocated up front "
                     f"({gib(e['kv_cache_bytes'])}), {e['max_num_seqs']} slot(s)")
    else:
        lines.append(f"Available KV cache memory: {gib(e['kv_cache_bytes'])}")
        lines.append(f"GPU KV cache size: {e['kv_cache_tokens']:,} tokens "
                     f"({e['kv_cache_blocks']:,} blocks of {e['kv_block_size']})")
    if e["engine"] != "sglang":  # vLLM's kv_cache_utils line; SGLang logs no such line
        lines.append(f"Maximum concurrency for {e['max_model_len']:,} tokens per request: "
                     f"{e['max_concurrency']:.2f}x")
    sched = [f"{k} {e[k]}" for k in ("max_num_seqs", "max_num_batched_tokens") if e.get(k)]
    if sched and e["engine"] != "sglang":
        lines.append("scheduler: " + ", ".join(sched))
    lines.append("")
    lines.append(table([(k, gib(v)) for k, v in e["breakdown"].items()],
                       header=(f"{e['engine']} memory", "per GPU")))
    return "\n".join(lines)
