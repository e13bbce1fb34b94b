"""What a named engine refuses at start-up, checked before perfmodel sizes it.

Each rule reads a fact of engines/<id>.yaml (sources there), so an engine without the fact
accepts the scenario as before:

* ``memory.no_setting``: engine.<field> overrides the engine has no setting for (llama.cpp
  has no KV block size) are refused, naming the field;
* ``memory.context_above_model: refuse``: an engine.max_model_len above the model's own
  context (max_position_embeddings, or the length its RoPE scaling gives, as vLLM derives
  it: ModelSpec.rope_scaled_context) is refused, as vLLM (VLLM_ALLOW_LONG_MAX_MODEL_LEN) and
  SGLang (SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN) refuse to start without an override;
* ``memory.kv_cache_dtype``: an inference.kv_dtype the engine has no KV-cache format for (vLLM
  and int4 / int8: its --kv-cache-dtype offers auto / bfloat16 / fp8 variants only) is refused,
  naming the engine's option and the kv_dtype values it takes (``check_kv_dtype``, called by
  ``resolve.resolve`` for every inference and serving scenario). ``generic`` takes any.
"""

from __future__ import annotations

from .errors import SpecError


def engine_max_len(spec, cfg, model) -> int:
    """The context the engine is sized for: engine.max_model_len, else the engine's default
    (llama.cpp n_ctx), else the model's max_position_embeddings."""
    return int(getattr(cfg, "max_model_len", None) or spec.memory.default_n_ctx
               or model.max_position_embeddings)


def check_engine_config(spec, cfg, model) -> None:
    """One-line SpecError for an override ``spec``'s engine refuses (module docstring)."""
    given = getattr(cfg, "model_fields_set", set())
    for field in spec.memory.no_setting:
        if field in given and getattr(cfg, field, None) is not None:
            raise SpecError(f"engine.{field}: {spec.name} has no such setting "
                            f"(engines/{spec.id}.yaml memory.no_setting); remove it")
    asked = getattr(cfg, "max_model_len", None)
    limit = getattr(model, "rope_scaled_context", None) or model.max_position_embeddings
    what = ("RoPE-scaled context" if getattr(model, "rope_scaled_context", None)
            else "context (max_position_embeddings)")
    if asked and spec.memory.context_above_model == "refuse" and limit and asked > limit:
        raise SpecError(f"engine.max_model_len: {asked:,} is above {model.id}'s {what} of "
                        f"{limit:,} tokens; {spec.name} refuses to start; use at most {limit:,}")


def check_kv_dtype(spec, kv_dtype: str) -> None:
    """One-line SpecError when ``spec``'s engine has no KV-cache format for ``kv_dtype``
    (engines/<id>.yaml ``memory.kv_cache_dtype``; an engine file without it takes any)."""
    facts = spec.memory.kv_cache_dtype
    if facts is None or kv_dtype in facts.formats:
        return
    by_value: dict[str, list[str]] = {}
    for ours, theirs in facts.formats.items():
        by_value.setdefault(theirs, []).append(ours)
    valid = "; ".join(f"{' / '.join(ours)} ({facts.flag} {theirs})"
                      for theirs, ours in by_value.items())
    raise SpecError(f"inference.kv_dtype: {kv_dtype} is not a KV-cache format {spec.name} "
                    f"{spec.version} has ({facts.flag} takes {', '.join(facts.values)}; "
                    f"engines/{spec.id}.yaml memory.kv_cache_dtype); valid kv_dtype: {valid}")
