"""Fu 2024's long-context running example, rebuilt with perfmodel.

Yao Fu, "Challenges in Deploying Long-Context Transformers: A Theoretical Peak Performance
Analysis" (arXiv 2405.08944) serves a 34B model (Yi-34B shapes) at 50K context on one A100
80GB and traces every extra cost over a 4K context to the size of the KV cache: prefilling is
bounded by FLOP/s, concurrency by HBM size, decoding by HBM bandwidth, context switching by
PCIe bandwidth. This module computes each of those quantities for 4K and 50K through
``perfmodel.predict`` (scenario variations of examples/fu2024-long-context-34b-a100.yaml) and
the memory model, twice: under the paper's assumption of theoretical peaks
(calibration/theoretical-peak.json: every efficiency 1.0, no overheads) and under the
device's normal profile, and prints them beside the paper's figures
(fu2024_figures.yaml; secondary transcriptions, see docs/long-context-seed-analysis.md).

Context switching follows the paper's formula, (user 1's KV cache + user 2's KV cache) / PCIe
bandwidth, with the bandwidth of perfmodel's offloading path (``perfmodel.api.offload_bandwidth``:
the A100's PCIe Gen4 x16 host link, per direction, times the profile's host-link efficiency).

Run: ``python -m perfmodel.analysis.long_context [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import perfmodel as pm
from perfmodel.api import offload_bandwidth, resolve_profile
from perfmodel.memory import kv_cache_bytes_per_sequence
from perfmodel.paths import data_dir
from perfmodel.profile import CalibrationProfile
from perfmodel.resolve import resolve, with_engine_state
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import read_yaml

EXAMPLE = "fu2024-long-context-34b-a100.yaml"
THEORETICAL_PROFILE = "theoretical-peak.json"
CONTEXTS = (4000, 50000)  # "4K" is 4000 tokens in the paper's KV figures (fu2024_figures.yaml)
KV_ONLY_CONTEXTS = (4000, 50000, 100000)
GB = 1e9
GIB = 2**30


@dataclass(frozen=True)
class ContextResult:
    """Every figure of the running example at one context length under one profile."""

    context: int
    kv_bytes: float  # K and V of `context` tokens, all layers (memory model)
    prefill_s: float  # TTFT of one prompt of `context` tokens
    prefill_gemm_s: float
    prefill_attention_s: float
    prefill_attention_flops: float  # executed (causal) attention matmul FLOPs of the prefill
    users_kv_only: int  # floor((usable HBM - weights - CUDA context) / kv_bytes): the paper's count
    max_concurrent_sequences: int  # perfmodel's own count (also reserves the prefill workspace)
    fits: bool  # one request of `context` + output tokens fits on the GPU
    tpot_s: float  # mean time per generated token over the generation
    decode_s: float  # output_len x TPOT: decoding the paper's number of tokens
    swap_s: float  # (user 1's KV + user 2's KV) / host-link bandwidth (the paper's formula)
    host_link_bytes_per_s: float
    tpot_kv_in_host_s: float  # TPOT with the whole KV cache kept in host DDR (streamed per step)


@dataclass(frozen=True)
class ProfileRun:
    profile_id: str
    profile_label: str
    output_len: int
    contexts: dict[int, ContextResult]
    kv_only: dict[int, float]  # KV bytes of a context, memory model only
    peak_flops: float  # dense bf16 peak of the device (datasheet)
    weights_bytes: float
    usable_hbm_bytes: float  # capacity minus allocator reserve and CUDA context


def load_figures(path: Path | None = None) -> dict:
    """The paper's figures and where each was read (secondary transcriptions)."""
    return read_yaml(path or data_dir("validation") / "fu2024_figures.yaml")


def example_scenario() -> pm.Scenario:
    return pm.load_scenario(data_dir("examples") / EXAMPLE)


def theoretical_profile() -> CalibrationProfile:
    """Theoretical peaks: the paper's assumption (a documented input, not a fitted profile)."""
    return pm.load_profile(data_dir("calibration") / THEORETICAL_PROFILE)


def with_context(sc: pm.Scenario, context: int, **inference) -> pm.Scenario:
    """A variation of ``sc`` whose prompt is ``context`` tokens (other inference fields may be
    overridden too)."""
    data = sc.model_dump(exclude_none=True)
    data["inference"] = {**data["inference"], "prompt_len": context, **inference}
    return pm.as_scenario(data)


def kv_bytes(model: pm.ModelSpec | pm.Scenario, context: int, kv_dtype: str | None = None
             ) -> float:
    """2 x layers x kv_heads x head_dim x bytes x tokens (memory.kv_cache_bytes_per_token) for
    full-attention layers; sliding-window layers min(context, W) tokens, linear-attention and
    Mamba layers a fixed state (memory.kv_cache_bytes_per_sequence). Given a scenario, its
    model as ``resolve.resolve`` hands it to predict (``resolve.with_engine_state``: the
    recurrent state in the dtypes its engine keeps, e.g. SGLang's fp32 SSM state) and, unless
    ``kv_dtype`` is given, its inference kv_dtype; given a model, that spec as it is (its
    state by the generic rule unless it was resolved)."""
    if isinstance(model, pm.Scenario):
        sc = with_engine_state(model)
        if kv_dtype is None:
            if sc.inference is None:
                raise ValueError("kv_bytes: the scenario has no inference section; pass kv_dtype")
            kv_dtype = sc.inference.kv_dtype
        model = sc.model
    if kv_dtype is None:
        raise ValueError("kv_bytes: kv_dtype is required with a model (not a scenario)")
    return float(kv_cache_bytes_per_sequence(model, kv_dtype, 1, context))


def usable_hbm(pred: pm.Prediction, profile: CalibrationProfile) -> float:
    """HBM left for weights and KV: capacity minus the allocator reserve and CUDA context."""
    reserve = profile.memory_overheads.allocator_fraction
    return pred.memory_capacity_bytes * (1 - reserve) - pred.breakdown["memory"]["cuda_context"]


def users_kv_only(pred: pm.Prediction, profile: CalibrationProfile, kv: float) -> int:
    """Sequences whose KV cache fits next to the weights: the paper's concurrency, i.e.
    perfmodel's free-memory rule (inference.py) without the prefill workspace."""
    free = usable_hbm(pred, profile) - pred.breakdown["memory"]["weights"]
    return max(math.floor(free / kv), 0)


def run_profile(sc: pm.Scenario, profile: CalibrationProfile) -> ProfileRun:
    sc = resolve(sc, profile).scenario  # the model as predict runs it (its engine's state)
    inf = sc.inference
    system = resolve_system(sc.system)
    link = offload_bandwidth(system, "cpu", profile)
    results = {}
    for context in CONTEXTS:
        pred = pm.predict(with_context(sc, context), calibration=profile)
        offloaded = pm.predict(with_context(sc, context, offload={"kv_cache": 1.0}),
                               calibration=profile)
        kv = kv_bytes(sc, context)
        results[context] = ContextResult(
            context=context, kv_bytes=kv, prefill_s=pred.prefill_time_s,
            prefill_gemm_s=pred.breakdown["prefill"].get("gemm", 0.0),
            prefill_attention_s=pred.breakdown["prefill"].get("attention", 0.0),
            prefill_attention_flops=sum(op.calls * op.flops for op in pred.ops
                                        if op.phase == "prefill" and op.cls == "attention"),
            users_kv_only=users_kv_only(pred, profile, kv),
            max_concurrent_sequences=int(pred.max_concurrent_sequences), fits=pred.fits,
            tpot_s=pred.tpot_s, decode_s=inf.output_len * pred.tpot_s, swap_s=2 * kv / link,
            host_link_bytes_per_s=link, tpot_kv_in_host_s=offloaded.tpot_s)
    kv_only = {c: kv_bytes(sc, c) for c in KV_ONLY_CONTEXTS}
    return ProfileRun(profile.id, profile.label, inf.output_len, results, kv_only,
                      system.device.peak_flops(inf.weight_dtype),
                      pred.breakdown["memory"]["weights"], usable_hbm(pred, profile))


def analyse(sc: pm.Scenario | None = None) -> tuple[ProfileRun, ProfileRun]:
    """(theoretical peak, the device's normal profile) for the example or ``sc``."""
    sc = sc or example_scenario()
    return run_profile(sc, theoretical_profile()), run_profile(sc, resolve_profile(sc))


# ---- the side-by-side table ------------------------------------------------------------------
def _fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "GB":
        return f"{value / GB:.2f} GB ({value / GIB:.2f} GiB)"
    if unit == "s":
        return f"{value:.2f} s" if value >= 0.1 else f"{value * 1e3:.1f} ms"
    if unit == "ms":
        return f"{value * 1e3:.1f} ms"
    return f"{value:g}"


def rows(theory: ProfileRun, normal: ProfileRun, figures: dict) -> list[tuple[str, str, str, str, str]]:
    """(quantity, paper, theoretical peak, normal profile, note id) for every figure."""
    fig = figures["figures"]
    out = []

    def add(label, paper, get, note):
        out.append((label, paper, get(theory), get(normal), note))

    for c in KV_ONLY_CONTEXTS:
        paper = fig["kv_cache_gb"].get(c)
        add(f"KV cache per sequence, {c // 1000}K", f"{paper} GB" if paper else "-",
            lambda r, c=c: _fmt(r.kv_only[c], "GB"), "kv")
    for c in CONTEXTS:
        add(f"prefill (TTFT), {c // 1000}K", _fmt(fig["prefill_s"].get(c), "s"),
            lambda r, c=c: _fmt(r.contexts[c].prefill_s, "s"), "prefill")
    for c in CONTEXTS:
        add(f"  of which GEMMs / attention, {c // 1000}K", "-",
            lambda r, c=c: f"{_fmt(r.contexts[c].prefill_gemm_s, 's')} / "
                           f"{_fmt(r.contexts[c].prefill_attention_s, 's')}", "prefill")
    for c in CONTEXTS:
        add(f"users that fit (HBM - weights) / KV, {c // 1000}K",
            _fmt(fig["concurrent_users"].get(c), ""),
            lambda r, c=c: str(r.contexts[c].users_kv_only), "users")
    for c in CONTEXTS:
        add(f"perfmodel max_concurrent_sequences, {c // 1000}K", "-",
            lambda r, c=c: str(r.contexts[c].max_concurrent_sequences), "maxseq")
    for c in CONTEXTS:
        add(f"TPOT (mean over the generation), {c // 1000}K", "-",
            lambda r, c=c: _fmt(r.contexts[c].tpot_s, "ms"), "decode")
    for c in CONTEXTS:
        add(f"decode {theory.output_len} tokens, {c // 1000}K", _fmt(fig["decode_s"].get(c), "s"),
            lambda r, c=c: _fmt(r.contexts[c].decode_s, "s"), "decode")
    for c in CONTEXTS:
        add(f"context switch: swap 2 users' KV over PCIe, {c // 1000}K", "-",
            lambda r, c=c: _fmt(r.contexts[c].swap_s, "s"), "swap")
    c = CONTEXTS[-1]
    add(f"TPOT with the KV cache in host DDR, {c // 1000}K", "-",
        lambda r, c=c: _fmt(r.contexts[c].tpot_kv_in_host_s, "s"), "offload")
    return out


def notes(theory: ProfileRun, normal: ProfileRun, figures: dict) -> dict[str, str]:
    """What each row's difference from the paper comes from, with this run's numbers."""
    fig = figures["figures"]
    lo, hi = CONTEXTS
    t_lo, t_hi = theory.contexts[lo], theory.contexts[hi]
    attn_peak = t_hi.prefill_attention_flops / theory.peak_flops
    paper_rest = fig["prefill_s"][hi] - t_hi.prefill_gemm_s
    free = theory.usable_hbm_bytes - theory.weights_bytes
    paper_users = fig["concurrent_users"][lo]
    implied = {c: fig["decode_s"][c] / theory.contexts[c].tpot_s for c in CONTEXTS}
    ratio = t_hi.decode_s / t_lo.decode_s
    paper_ratio = fig["decode_s"][hi] / fig["decode_s"][lo]
    per_token = theory.kv_only[lo] / lo
    return {
        "kv": f"2 x layers x KV heads x head_dim x 2 B = {per_token:,.0f} B per token. The paper's "
              f"{fig['kv_cache_gb'][lo]} GB ({lo // 1000}K) and {fig['kv_cache_gb'][100000]} GB (100K) "
              "are these bytes in GiB for 4000 and 100000 tokens, truncated.",
        "prefill": f"The GEMMs alone ({t_lo.prefill_gemm_s:.2f} s / {t_hi.prefill_gemm_s:.2f} s) "
                   "are the paper's 2 x params x tokens at 312 TFLOP/s. The gap is attention: "
                   f"perfmodel's causal FlashAttention takes {t_hi.prefill_attention_s:.1f} s at "
                   f"{hi // 1000}K, its causal FLOPs at peak ({attn_peak:.1f} s; compute-bound). "
                   f"The paper's {fig['prefill_s'][hi]} s leaves only {paper_rest:.1f} s above "
                   "perfmodel's GEMM time, less than causal attention needs, so the paper must "
                   "count attention more cheaply (its exact convention was not readable).",
        "users": f"The paper's rule: whole KV caches next to the weights ({theory.weights_bytes / GB:.1f} "
                 f"GB bf16) in the {theory.usable_hbm_bytes / GIB:.2f} GiB CUDA reports (80 GB "
                 f"nominal), leaving {free / GB:.1f} GB. At {hi // 1000}K, "
                 f"{t_hi.users_kv_only} user ({fig['concurrent_users'][hi]} in the paper). At "
                 f"{lo // 1000}K, {t_lo.users_kv_only}, not ~{paper_users} ({paper_users} x "
                 f"{theory.kv_only[lo] / GB:.2f} GB > {free / GB:.1f} GB). The normal profile's CUDA "
                 f"context and allocator reserve leave room for "
                 f"{normal.contexts[hi].users_kv_only} users at {hi // 1000}K.",
        "maxseq": "perfmodel also reserves the workspace of a prefill (unchunked unless "
                  "inference.prefill_chunk_tokens is set) and pages the KV cache of prompt + "
                  f"output tokens, so {t_hi.max_concurrent_sequences} requests fit at "
                  f"{hi // 1000}K.",
        "decode": "The paper's number of generated tokens was not captured. Its decode times "
                  f"imply {implied[lo]:.0f} and {implied[hi]:.0f} tokens at the theoretical-peak "
                  f"TPOTs, so {theory.output_len} are decoded. The {hi // 1000}K/{lo // 1000}K "
                  f"ratio ({ratio:.3f} against the paper's {paper_ratio:.3f}) does not depend on "
                  "that choice.",
        "swap": "The paper's formula, (user 1's KV + user 2's KV) / PCIe bandwidth, over PCIe "
                f"Gen4 x16 at {t_hi.host_link_bytes_per_s / GB:.1f} GB/s per direction "
                f"({normal.contexts[hi].host_link_bytes_per_s / GB:.1f} GB/s with the normal "
                "profile's achieved fraction). The link is full duplex, so overlapping the two "
                "copies would halve it. The paper's bandwidth and swap figures were not captured.",
        "offload": "Beyond the paper: perfmodel's offloading path, streaming the whole KV cache "
                   "over PCIe every decode step (inference.offload.kv_cache: 1.0).",
    }


def render(theory: ProfileRun, normal: ProfileRun, figures: dict) -> str:
    header = ("quantity", "paper (secondary)", f"perfmodel: {theory.profile_id}",
              f"perfmodel: {normal.profile_id} [{normal.profile_label}]", "note")
    body = rows(theory, normal, figures)
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    text = ["  ".join(str(v).ljust(w) for v, w in zip(header, widths, strict=True)).rstrip(), line]
    text += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in body]
    text.append("")
    text += [f"[{key}] {note}" for key, note in notes(theory, normal, figures).items()]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfmodel.analysis.long_context",
        description="Fu 2024 (arXiv 2405.08944) running example: 34B at 4K vs 50K on one A100.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    theory, normal = analyse()
    figures = load_figures()
    if args.json:
        print(json.dumps({"paper": figures["figures"], "theoretical_peak": asdict(theory),
                          "normal_profile": asdict(normal)}, indent=2, default=str))
    else:
        print(render(theory, normal, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
