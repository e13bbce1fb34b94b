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
  ``resolve.resolve`` for every inference and serving scenario). ``generic`` takes any;
* ``quantization.formats.fp8_block.block_aligned_shards``: a block-fp8 checkpoint whose
  tensor-parallel shard of an MLP / expert weight is not a whole number of its 128 x 128
  blocks is refused, naming the layer, the shard, the block and the valid splits
  (``check_block_shards``, called by ``resolve.resolve``); under ``generic`` the same finding
  is a warning naming the engines that refuse it (``block_shard_warning``).
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


#: the side of a block-fp8 checkpoint's weight block: ``fp8_block`` is 128 x 128 blocks with
#: one fp32 scale each (perfmodel.dtypes BYTES, DeepSeek-V3 arXiv 2412.19437 Sec. 3.3.2; the
#: checkpoints' quantization_config ``weight_block_size: [128, 128]``, perfmodel.zoo.hf_quant)
FP8_BLOCK_SIDE = 128


def block_shard_problems(model, parallelism, inference) -> list[tuple[str, str]]:
    """(field, finding) for every MLP / expert weight of a block-fp8 class whose per-GPU
    shard is not a whole number of FP8_BLOCK_SIDE blocks; [] when none (or no fp8_block
    class). The splits are the engines': the dense MLP and the shared experts over tp
    (column-parallel gate / up outputs, row-parallel down inputs, the same width), each
    routed expert over its expert-TP group (``etp``, else tp x attention_dp / ep: vLLM /
    SGLang MoE TP x EP; with ep = tp x attention_dp each expert stays whole). Attention
    projections are not checked (their per-rank widths are whole heads, 128-wide in the
    block-fp8 checkpoints read here)."""
    if inference is None:
        return []
    from .formats import class_dtype
    from .parameters import param_counts

    formats, default = inference.weight_formats, inference.weight_dtype
    pc = param_counts(model)
    tp = int(parallelism.tp)
    expert_tp = parallelism.etp or tp * int(parallelism.attention_dp) / int(parallelism.ep)
    layers = []
    if pc.dense_mlp and pc.num_dense_layers:
        layers.append(("mlp", "dense MLP (ffn_hidden_size)", model.ffn_hidden_size, tp,
                       "parallelism.tp", "tp"))
    moe = model.moe
    if moe is not None:
        layers.append(("experts", "routed experts (moe.expert_ffn_hidden_size)",
                       moe.expert_ffn_hidden_size, expert_tp, "parallelism.ep",
                       "tp x attention_dp / ep, or etp"))
        if moe.num_shared_experts:
            layers.append(("shared_experts", "shared experts (moe.shared_ffn x "
                           "num_shared_experts)", moe.shared_ffn * moe.num_shared_experts, tp,
                           "parallelism.tp", "tp"))
    out = []
    b = FP8_BLOCK_SIDE
    for cls, what, width, split, field, name in layers:
        if class_dtype(formats, cls, default) != "fp8_block" or split <= 1:
            continue
        if width % (split * b) == 0:
            continue
        valid = [t for t in range(1, 65) if width % (t * b) == 0]
        shard = width / split
        shard_txt = f"{shard:,.0f}" if shard == int(shard) else f"{shard:,.2f}"
        hint = ("; or expert parallelism (ep = tp x attention_dp) keeps each expert whole"
                if cls == "experts" else "")
        out.append((field, f"{what} of {width:,} split {split:g} ways ({name}) give "
                           f"{shard_txt} per GPU, not a multiple of the {b} x {b} weight block "
                           f"of the fp8_block checkpoint; valid {name}: "
                           f"{', '.join(map(str, valid))}{hint}"))
    return out


def check_block_shards(spec, model, parallelism, inference) -> None:
    """One-line SpecError when ``spec``'s engine refuses a block-fp8 shard of ``model`` under
    ``parallelism`` (engines/<id>.yaml ``quantization.formats.fp8_block.block_aligned_shards``;
    ``block_shard_problems``)."""
    rule = spec.quantization.formats.get("fp8_block")
    if rule is None or not rule.block_aligned_shards:
        return
    problems = block_shard_problems(model, parallelism, inference)
    if problems:
        field, finding = problems[0]
        raise SpecError(f"{field}: {finding}. {spec.name} refuses to load it (ValueError "
                        f"\"is not divisible by weight quantization block_n = "
                        f"{FP8_BLOCK_SIDE}\", engines/{spec.id}.yaml "
                        "quantization.formats.fp8_block)")


def block_shard_warning(model, parallelism, inference) -> str | None:
    """Under ``generic``: the first block-fp8 shard finding and the engines whose files say
    they refuse it (None: no finding)."""
    problems = block_shard_problems(model, parallelism, inference)
    if not problems:
        return None
    from .engines import get_engine

    refusing = []
    for engine_id in ("vllm", "sglang", "trtllm"):
        spec = get_engine(engine_id)
        rule = spec.quantization.formats.get("fp8_block")
        if rule is not None and rule.block_aligned_shards:
            refusing.append(spec.name)
    field, finding = problems[0]
    who = " and ".join(refusing) or "no engine file"
    return (f"{field}: {finding}. {who} refuse to load it (engines/*.yaml "
            "quantization.formats.fp8_block.block_aligned_shards): this predicts a layout "
            "those engines do not run")
