"""Pipeline parallelism: how layers split over stages, and the time of m micro-batches through
p stages (Narayanan et al. 2021, arXiv 2104.04473, Sec. 2.2).

Array-friendly in every numeric plan dimension (pp, vp, micro-batches, stage times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .specs.model import ModelSpec
    from .specs.scenario import EngineConfig, Parallelism

Array = Any


def layers_on_largest_stage(num_layers: int, pp: Array, vp: Array, uneven: bool) -> Array:
    """L/p, or with an uneven split (layers spread as evenly as possible over p*v chunks, as
    torchtitan and DeepSpeed do) the largest stage's ceil(L/(p v)) * v."""
    if not uneven:
        return num_layers / pp
    return np.ceil(num_layers / (np.asarray(pp) * vp)) * vp


@dataclass(frozen=True)
class StageTimes:
    """Time of one micro-batch (forward + backward) on the first, a middle and the last
    stage, and the sum over all stages (every layer once)."""

    first: Array
    middle: Array  # 0 when there is no middle stage (pp <= 2)
    last: Array
    total: Array


def stage_times(body: Array, body_avg: Array, embed: Array, head: Array, pp: Array) -> StageTimes:
    """Stage times from the largest stage's ``body`` (its layers, their exposed communication
    and the pipeline sends), an average stage's ``body_avg`` and the embedding (first stage)
    and LM head + loss (last stage). Without pipelining one stage does everything."""
    pp_on = np.asarray(pp) > 1
    first = body + embed + np.where(pp_on, 0.0, head)
    last = np.where(pp_on, body + head, first)
    middle = np.where(np.asarray(pp) > 2, body, 0.0)
    total = np.where(pp_on, pp * body_avg + embed + head, first)
    return StageTimes(first=first, middle=middle, last=last, total=total)


def slowest_stage(t: StageTimes) -> Array:
    return np.maximum(np.maximum(t.first, t.last), t.middle)


def pipeline_time(t: StageTimes, microbatches: Array, vp: Array) -> tuple[Array, Array]:
    """(time of the whole schedule, its bubble) for m micro-batches over the stages.

    Narayanan et al. 2021 Sec. 2.2: the slowest stage runs m micro-batches; the fill and drain
    cost the other stages' time once, divided by the v virtual chunks of the interleaved
    schedule (Sec. 2.2.2): T = m max_i T_i + (sum_i T_i - max_i T_i) / v, which for p equal
    stages is (m + (p-1)/v) T, a bubble fraction (p-1)/(v m) (their eq. for t_pb / t_id).
    GPipe and 1F1B have the same bubble (Sec. 2.2.1); they differ in memory.
    """
    t_max = slowest_stage(t)
    bubble = (t.total - t_max) / vp
    return microbatches * t_max + bubble, bubble


def dualpipev_bubble(stage: Array, backward: Array, wgrad: Array, pp: Array) -> Array:
    """Bubble of DeepSeek's DualPipeV on ``pp`` ranks (two model chunks per rank in a V, 2 pp
    stages): (PP/2 - 1)(F&B + B - 3W) with PP = 2 pp stages (DeepSeek-V3 report, arXiv
    2412.19437 Table 2 for DualPipe; deepseek-ai/DualPipe README @3da1bbe: the same bubble for
    DualPipeV "based on the same number of PP stages", on PP/2 devices). F&B, B and W are one
    chunk's (half a rank's layers): F&B = ``stage`` / 2 (one micro-batch's forward and backward
    through the rank, their all-to-alls overlapped), B = ``backward`` / 2, W = ``wgrad`` / 2
    (the weight-gradient GEMMs of the rank's backward), so (pp - 1)(stage + backward - 3 wgrad)
    / 2. 1F1B's bubble on the same ranks is (pp - 1) x stage."""
    return (np.asarray(pp) - 1.0) * np.maximum(stage + backward - 3.0 * wgrad, 0.0) / 2.0


# ---- uneven layer splits of an inference pipeline -------------------------------------------

def vllm_partition(num_layers: int, pp: int) -> tuple[int, ...]:
    """vLLM's default split (``get_pp_indices``, vllm-project/vllm vllm/distributed/utils.py at
    5a6541db, the rule of PR #13839 merged 2025-02-26, in every release from 0.8.0; PR #46217,
    open in 2026-06, states it is still the rule: "Today they go on the middle stages"): L // pp
    layers per stage, the remainder one each to the stages before the last, counting back from
    the second-to-last (``range(2, remaining + 2)``: the last one holds the final norm and LM
    head). 80 over 3: 26 each, 2 left for stages -2 and -3: (27, 27, 26)."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return tuple(parts)


def extra_layer_partition(num_layers: int, pp: int, where: str) -> tuple[int, ...]:
    """L // pp layers per stage and one more on each of the L % pp stages ``where`` says:
    ``first_ranks`` (TensorRT-LLM ``Mapping.pp_layers``: torch.tensor_split, "first n ranks get
    one extra layer"), ``last_ranks`` (SGLang ``get_pp_indices`` from PR #13977: "the last N
    partitions will have one extra layer") or ``last_stage`` (the whole remainder on the last
    stage: vLLM before 0.8, SGLang before PR #13282)."""
    base, extra = divmod(num_layers, pp)
    parts = [base] * pp
    if where == "last_stage":
        parts[-1] += extra
    else:
        idx = range(extra) if where == "first_ranks" else range(pp - extra, pp)
        for i in idx:
            parts[i] += 1
    return tuple(parts)


def llamacpp_partition(num_layers: int, proportions) -> tuple[int, ...]:
    """llama.cpp's layer split (``--split-mode layer --tensor-split a,b,...``; by default the
    devices' free memory): ggml-org/llama.cpp src/llama-model.cpp at a5410f04,
    ``llama_model::load_tensors``: the proportions are normalised to cumulative split points
    and repeating layer il goes to the first device whose point exceeds il / (L + 1) (the
    output layer is slot L of L + 1, on the last device)."""
    w = np.asarray(proportions, float)
    points = np.cumsum(w) / w.sum()
    device = np.searchsorted(points, np.arange(num_layers) / (num_layers + 1), side="right")
    return tuple(int(c) for c in np.bincount(device, minlength=w.size))


def llamacpp_default_split(pp: int) -> list[float]:
    """llama.cpp's proportions when --tensor-split is not given: each device's free memory at
    load time (ggml-org/llama.cpp src/llama-model.cpp ``llama_model::load_tensors``: "default
    split, by free memory", ``ggml_backend_dev_memory(dev, &free, &total); splits[i] = free``).
    A system here is one device type, so every device reports the same free memory (each holds
    the same CUDA context before the weights load): equal proportions, which still give an
    uneven split (the output layer is the last device's slot L of L + 1)."""
    return [1.0] * pp


def default_partition(rule: str, num_layers: int, pp: int) -> tuple[int, ...]:
    """The layers per stage of an engine's default split ``rule`` (engines/<id>.yaml
    ``pipeline.default_split``, ``engines.SplitRule``)."""
    if rule == "before_last":
        return vllm_partition(num_layers, pp)
    if rule == "free_memory":
        return llamacpp_partition(num_layers, llamacpp_default_split(pp))
    return extra_layer_partition(num_layers, pp, rule)


def stage_partition(num_layers: int, pp: int, layers=None, split=None,
                    uneven: bool = False, engine: str | None = None,
                    engine_version: str | None = None,
                    engine_variant: str | None = None) -> tuple[int, ...] | None:
    """Layers per pipeline stage of an inference instance, or None for the even split L / pp.

    ``layers``: an explicit partition (vLLM ``VLLM_PP_LAYER_PARTITION``, SGLang
    ``SGLANG_PP_LAYER_PARTITION``): pp counts summing to L. ``split``: llama.cpp
    ``--tensor-split`` proportions, one per stage. Without either, the engine's own default
    split (engines/<id>.yaml ``pipeline.default_split``: vLLM get_pp_indices, SGLang and
    TensorRT-LLM one extra layer on the last / first stages, llama.cpp by free memory) applies
    where it differs from L / pp; ``uneven`` (parallelism.uneven_pipeline) asks for a split of
    an engine without a rule (``generic``): vLLM's. Errors name the scenario field."""
    from .engines import pipeline_facts
    from .errors import SpecError

    facts = pipeline_facts(engine, engine_version, engine_variant)
    rule = facts.default_split

    if layers is not None and split is not None:
        raise SpecError("parallelism.pipeline_layers and parallelism.pipeline_split both "
                        "set; give the layer counts or the proportions, not both")
    if layers is not None and engine not in (None, "generic") and facts.partition_env is None:
        hint = (" (it splits by proportions: parallelism.pipeline_split, --tensor-split)"
                if rule == "free_memory" else "")
        raise SpecError(f"parallelism.pipeline_layers: {engine} has no setting for explicit "
                        f"per-stage layer counts{hint}; leave it out for {engine}'s own split")
    if layers is not None:
        layers = tuple(int(x) for x in layers)
        if len(layers) != pp:
            raise SpecError(f"parallelism.pipeline_layers has {len(layers)} stages but pp is "
                            f"{pp}; give one layer count per pipeline stage")
        if sum(layers) != num_layers:
            raise SpecError(f"parallelism.pipeline_layers sums to {sum(layers)}, the model has "
                            f"{num_layers} layers; the counts must add up to num_layers")
        if min(layers) < 1:
            raise SpecError("parallelism.pipeline_layers: every stage needs at least 1 layer")
        return layers
    if split is not None:
        if len(split) != pp:
            raise SpecError(f"parallelism.pipeline_split has {len(split)} proportions but pp "
                            f"is {pp}; give one per pipeline stage (llama.cpp --tensor-split)")
        parts = llamacpp_partition(num_layers, split)
        if min(parts) < 1:
            raise SpecError(f"parallelism.pipeline_split {list(split)} leaves a stage without "
                            f"layers ({list(parts)} of {num_layers}); raise its proportion")
        return parts
    if rule is None and uneven:
        rule = "before_last"
    if pp <= 1 or rule is None or (num_layers % pp == 0 and rule != "free_memory"):
        return None
    if pp > num_layers:
        raise SpecError(f"parallelism.pp ({pp}) exceeds num_layers ({num_layers})")
    return default_partition(rule, num_layers, pp)


def largest_stage_layers(num_layers: int, pp: Array, partition) -> Array:
    """Layers of the largest stage: max of the partition, else L / pp."""
    return num_layers / pp if partition is None else float(max(partition))


def stage_excess(pp: Array, partition, num_layers: int, layer_time: Array,
                 layer_comm: Array) -> Array:
    """Extra time of the slowest stage over an average one: its extra layers times the time of
    one layer (compute + its TP / EP communication), from an average stage's ``layer_time`` and
    ``layer_comm`` (L / pp layers). 0 for an even split. Head and embedding stay on their
    stages (they are in the average and are not scaled)."""
    if partition is None:
        return 0.0
    per_layer = (np.asarray(layer_time) + np.asarray(layer_comm)) * np.asarray(pp) / num_layers
    return (max(partition) - num_layers / np.asarray(pp)) * per_layer


def pipelined_step_time(pass_time: Array, hops: Array, pp: Array, micro: Array,
                        excess: Array) -> Array:
    """Time per decode step of ``micro`` micro-batches cycling through ``pp`` stages: the
    latency of one pass, or the slowest stage's cycle (micro x its time) when that is longer
    (Narayanan et al. 2021 Sec. 2.2: the slowest stage sets the pace), i.e. pass_time +
    max(0, micro (T_avg + excess) - pp T_avg) with T_avg = (pass_time - hops) / pp. An even
    split (excess 0) gives pass_time exactly."""
    t_avg = (np.asarray(pass_time) - hops) / pp
    return pass_time + np.maximum(micro * (t_avg + excess) - pp * t_avg, 0.0)


def engine_split(model: ModelSpec, parallelism: Parallelism,
                 engine: EngineConfig | None) -> Parallelism:
    """The scenario's parallelism with its pipeline layer split made explicit
    (``parallelism.pipeline_layers``), exactly as an inference plan of the same scenario
    splits (``pipeline.stage_partition``): the given counts or llama.cpp proportions, else
    the named engine's default split (engines/<id>.yaml pipeline.default_split: vLLM
    get_pp_indices, SGLang / TensorRT-LLM one extra layer on the last / first stages,
    llama.cpp by free memory), else vLLM's with uneven_pipeline: true. Unchanged for an even
    split or pp = 1."""
    p = parallelism
    if p.pp <= 1 and p.pipeline_layers is None and p.pipeline_split is None:
        return p
    layers = stage_partition(model.num_layers, p.pp, p.pipeline_layers, p.pipeline_split,
                             p.uneven_pipeline,
                             engine=engine.name if engine is not None else None,
                             engine_version=engine.version if engine is not None else None,
                             engine_variant=engine.variant if engine is not None else None)
    if layers is None:
        return p
    return p.model_copy(update={"pipeline_layers": list(layers), "pipeline_split": None,
                                "uneven_pipeline": False})
