"""FLOP-counting conventions and metric conversion (pure).

A published TFLOP/s or MFU is only comparable when the prediction counts FLOPs the way its
source does: TFLOP/s in Narayanan et al.'s eq. 3 are compared with a predicted F_eq3 / step
time, not with perfmodel's own FLOP count. Each convention is one function with its source.
"""

from __future__ import annotations

from ..errors import SpecError
from ..parameters import param_counts
from ..prediction import Prediction
from ..specs.model import ModelSpec
from ..specs.scenario import Scenario
from .cases import ENGINE_METRICS, SERVING_METRICS, Case

# ---- FLOP conventions -----------------------------------------------------------------------


def megatron_model_flops(B: float, s: float, L: float, h: float, V: float) -> float:
    """Model FLOPs per step of a GPT (Korthikanti et al. 2022, arXiv 2205.05198, eq. 7):
    72 B s L h^2 (1 + s/(6h) + V/(12 h L)); GEMMs only, no recompute, attention non-causal."""
    return 72.0 * B * s * L * h * h * (1.0 + s / (6.0 * h) + V / (12.0 * h * L))


def narayanan_eq3_flops(B: float, s: float, L: float, h: float, V: float) -> float:
    """FLOPs per step as Narayanan et al. 2021 (arXiv 2104.04473) eq. 3 counts them:
    96 B s l h^2 (1 + s/(6h) + V/(16 l h)); includes the recompute forward of full activation
    recomputation. Megatron-DeepSpeed's TFLOPs log (BLOOM, checkpoint factor 4) is the same."""
    return 96.0 * B * s * L * h * h * (1.0 + s / (6.0 * h) + V / (16.0 * L * h))


def korthikanti_hw_flops(B: float, s: float, L: float, h: float, V: float) -> float:
    """Hardware FLOPs per step with selective recomputation (Korthikanti et al. 2022, eq. 8):
    72 B s L h^2 (1 + s/(3h) + V/(12 h L)); the attention core is run twice."""
    return 72.0 * B * s * L * h * h * (1.0 + s / (3.0 * h) + V / (12.0 * h * L))


def llmfoundry_flops(B: float, s: float, L: float, d: float, n_params: float) -> float:
    """FLOPs per step as llm-foundry's benchmarking/collect_results.py counts them for MFU:
    per sequence 3 * (2 N s) + 3 * (L * 2 * 2 * d * s^2), i.e. 6N + 12 L d s per token
    (attention non-causal, N = all parameters incl. embeddings)."""
    return B * (6.0 * n_params * s + 12.0 * L * d * s * s)


def six_nd_flops(B: float, s: float, n_active: float) -> float:
    """6 N D (Kaplan et al. 2020 eq. 2.1): 6 x active parameters x tokens, N counting the
    embeddings as Hoffmann et al. 2022 do (Kaplan's non-embedding N is smaller by
    the embedding share: ~3 % for Llama-3-70B, ~13 % for Llama-3-8B)."""
    return 6.0 * n_active * B * s


def flops_per_step(convention: str, model: ModelSpec, seq_len: float,
                   global_batch: float) -> float:
    """FLOPs of one optimizer step counted the way ``convention``'s source counts them."""
    B, s = float(global_batch), float(seq_len)
    L, h, V = model.num_layers, model.hidden_size, model.vocab_size
    if convention == "megatron_model":
        return megatron_model_flops(B, s, L, h, V)
    if convention == "narayanan_eq3":
        return narayanan_eq3_flops(B, s, L, h, V)
    if convention == "korthikanti_hw":
        return korthikanti_hw_flops(B, s, L, h, V)
    if convention == "llmfoundry":
        return llmfoundry_flops(B, s, L, h, param_counts(model).total)
    if convention == "6nd":
        return six_nd_flops(B, s, param_counts(model).active)
    raise SpecError(f"unknown flops_convention {convention!r}")


# ---- metrics ------------------------------------------------------------------------------


def metric_value(case: Case, pred: Prediction, sc: Scenario) -> float:
    """The prediction expressed as the case's metric, in the metric's canonical unit."""
    m, n = case.metric, pred.num_gpus
    if case.kind == "training":
        t = sc.training
        assert t is not None and pred.step_time_s is not None
        step = pred.step_time_s
        if m == "step_time_s":
            return step
        if m == "tokens_per_s":
            return t.global_batch * t.seq_len / step
        if m == "tokens_per_s_per_gpu":
            return t.global_batch * t.seq_len / step / n
        if m == "peak_memory_gib":
            return pred.memory_per_gpu_bytes / 2**30
        flops = flops_per_step(case.flops_convention or "", sc.model, t.seq_len, t.global_batch)
        per_gpu = flops / step / n
        if m == "tflops_per_gpu":
            return per_gpu / 1e12
        assert m == "mfu" and case.peak_tflops is not None
        return per_gpu / (case.peak_tflops * 1e12)
    if m in ENGINE_METRICS:
        return engine_metric(m, pred, sc)
    if m in SERVING_METRICS:  # mean_ttft_s -> serving.benchmark["mean_ttft_ms"]
        bench = (pred.serving or {}).get("benchmark")
        if not bench:
            raise SpecError(f"metric {m!r} needs a closed-loop serving scenario "
                            "(serving.arrival.process: closed)")
        return bench[m.removesuffix("_s") + "_ms"] / 1e3
    inf = sc.inference
    assert inf is not None
    p = sc.parallelism
    replicas = max(n // (p.tp * p.attention_dp * p.pp), 1)
    if m == "ttft_s":
        return pred.ttft_s
    if m == "tpot_s":
        return pred.tpot_s
    if m == "e2e_latency_s":
        return pred.e2e_latency_s
    if m in ("output_tokens_per_s", "output_tokens_per_s_per_gpu"):
        # fixed-batch throughput: every sequence's generated tokens over the whole request
        # (TensorRT-LLM gptSessionBenchmark: batch x output_len / latency, context included)
        rate = replicas * inf.batch * inf.output_len / pred.e2e_latency_s
        return rate / n if m.endswith("per_gpu") else rate
    if m == "decode_tokens_per_s":
        return replicas * inf.batch / pred.tpot_s
    if m == "prefill_tokens_per_s":
        return replicas * inf.batch * inf.prompt_len / pred.ttft_s
    raise SpecError(f"unknown metric {m!r}")  # pragma: no cover - the schema forbids it


def ape(predicted: float, measured: float) -> float:
    """Absolute percentage error as a fraction: |predicted - measured| / measured."""
    return abs(predicted - measured) / measured


def engine_metric(metric: str, pred: Prediction, sc: Scenario) -> float:
    """A start-up figure of the case's engine (Prediction.engine); with the generic engine,
    the same figure by perfmodel's engine-neutral rule (engine_memory.generic_capacity)."""
    if pred.engine is not None:
        e = pred.engine
        return {"kv_cache_tokens": float(e["kv_cache_tokens"]), "kv_cache_gib": e["kv_cache_gib"],
                "weights_gib": e["weights_gib"]}[metric]
    from ..engine_memory import generic_capacity

    tokens, kv_bytes, weights = generic_capacity(sc)
    return {"kv_cache_tokens": float(tokens), "kv_cache_gib": kv_bytes / 2**30,
            "weights_gib": weights / 2**30}[metric]
