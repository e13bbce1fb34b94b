"""Reference calibration profiles of A100 / H100 / H200 / B200, fitted from measured tables
published upstream (copied, with licenses, under calibration/sources/measured/).

The tables are converted into records (``converters``) and fitted by the same code as a
measurement on this machine (``fit.fit_profile``). What each device uses, and why a table
is left out, is data in ``REFERENCES`` below; ``build_reference`` writes
calibration/<device>.reference.json.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PerfModelError
from ..paths import data_dir
from ..profile import CalibrationProfile
from ..specs import registry
from ..specs.common import Source
from . import converters as C
from .fit import FitResult, fit_profile, round4

AIC = "aiconfigurator/"
AIC_CSV = AIC + "csv/"
AIC_DATA = AIC + "systems/data/"
VIDUR_NET = "vidur/data/profiling/network/"
VIDUR_COMPUTE = "vidur/data/profiling/compute/"
PUBLISHED = "published/group_c_points.json"
L2_BYTES = {"a100-sxm4-80gb": 40e6, "h100-sxm5-80gb": 50e6}  # working sets > 2 x L2 only

AIC_REPO, AIC_COMMIT = "ai-dynamo/aiconfigurator", "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
VIDUR_REPO, VIDUR_COMMIT = "microsoft/vidur", "7d47513363ec447a741ac5e47241580b47724fbf"


def sources_dir() -> Path:
    return data_dir("calibration") / "sources" / "measured"


@dataclass(frozen=True)
class Table:
    """One copied table and how to convert it; ``ship=False`` tables are fitted and
    reported by benchmarks/calibration_fit.py but kept out of the shipped profile."""

    path: str  # under calibration/sources/measured/
    convert: Callable[..., list[dict]]
    kwargs: dict = field(default_factory=dict)
    ship: bool = True
    why: str = ""

    def records(self) -> list[dict]:
        return self.convert(sources_dir() / self.path, **self.kwargs)


def _aic_source(path: str, title: str, *csv_copies: str) -> Source:
    """``path``: the upstream table (under systems/data); ``csv_copies``: the CSV conversions
    of it that were copied instead of the Parquet file."""
    upstream = path.replace(AIC_DATA, "aic-core/src/aiconfigurator_core/systems/data/")
    local = "calibration/sources/measured/"
    read_via = ("CSV conversion(s) copied to " + ", ".join(local + AIC_CSV + c for c in csv_copies)
                if csv_copies else "copied to " + local + path)
    return Source(title=f"ai-dynamo/aiconfigurator silicon database: {title}",
                  url=f"https://github.com/{AIC_REPO}/tree/{AIC_COMMIT}/aic-core/src/"
                      "aiconfigurator_core/systems/data",
                  location=upstream, read_via=read_via)


def _vidur_source(path: str, title: str) -> Source:
    return Source(title=f"microsoft/vidur profiling data: {title}",
                  url=f"https://github.com/{VIDUR_REPO}/tree/{VIDUR_COMMIT}/data/profiling",
                  location=path.removeprefix("vidur/"),
                  read_via="copied to calibration/sources/measured/" + path)


PUBLISHED_SOURCES = {
    "C-HBM-STREAM-A100_80": Source(
        title="te42kyfo/gpu-benches gpu-stream results (Ernst et al.), A100 80GB triad",
        url="https://github.com/te42kyfo/gpu-benches/blob/1c36d509ee717dca9215c27135fa1e611bb03ed1/gpu-stream/a100_80.txt",
        read_via="shared/reference group C (calibration/sources/measured/" + PUBLISHED + ")"),
    "C-HBM-STREAM-H200": Source(
        title="te42kyfo/gpu-benches gpu-stream results (Ernst et al.), H200 triad",
        url="https://github.com/te42kyfo/gpu-benches/blob/1c36d509ee717dca9215c27135fa1e611bb03ed1/gpu-stream/h200.txt",
        read_via="shared/reference group C (calibration/sources/measured/" + PUBLISHED + ")"),
    "C-FA2-A100-PEAK": Source(
        title="Dao, 'FlashAttention-2' (arXiv 2307.08691) Sec. 4.1: up to 230 TFLOP/s on A100",
        url="https://arxiv.org/abs/2307.08691", location="Sec. 4.1",
        read_via="shared/reference group C (calibration/sources/measured/" + PUBLISHED + ")"),
    "C-FA2-H100-PEAK": Source(
        title="Dao, 'FlashAttention-2' (arXiv 2307.08691) Fig. 7: up to 335 TFLOP/s on H100",
        url="https://arxiv.org/abs/2307.08691", location="Sec. 4.1, Fig. 7",
        read_via="shared/reference group C (calibration/sources/measured/" + PUBLISHED + ")"),
    "C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA": Source(
        title="Stas Bekman, 'Machine Learning Engineering Open Book', network/README.md: "
              "P6-B200 all_reduce, 1 vs 4 nodes (EFA)",
        url="https://github.com/stas00/ml-engineering/blob/744d01e18b79512572f64a6bbd8b5f4a725203a7/network/README.md",
        read_via="shared/reference group C (calibration/sources/measured/" + PUBLISHED + ")"),
}


@dataclass(frozen=True)
class Reference:
    """A device's tables, sources and notes; ``uncertainty``: bands a source states for a
    table with too few points for a held-out test (table -> |log ratio|)."""

    tables: list[Table]
    sources: list[Source]
    notes: str
    uncertainty: dict[str, float] = field(default_factory=dict)


def _pub(*ids: str) -> Table:
    return Table(PUBLISHED, C.published, {"ids": list(ids)})


A100_INTER_WHY = (
    "vidur's a100_dgx 2-node runs reach 6-22 GB/s all_reduce busbw and 7.8 GB/s send_recv "
    "at 64 MiB, under a third of ONE HDR NIC, on a fabric vidur does not document; no "
    "efficiency relative to a DGX A100's 8 x HDR can be derived from them (shared/reference "
    "measured/README caveat 1). Fitted and reported, not shipped.")

REFERENCES: dict[str, Reference] = {
    "a100-sxm4-80gb": Reference(
        tables=[
            Table(AIC_CSV + "gemm/a100_sxm__sglang_0.5.10__bfloat16.csv", C.aic_gemm),
            Table(AIC_CSV + "attention/a100_sxm__trtllm_1.0.0__context.csv", C.aic_attention,
                  {"phase": "prefill"}),
            Table(AIC_CSV + "attention/a100_sxm__trtllm_1.0.0__generation.csv", C.aic_attention,
                  {"phase": "decode"}),
            Table(AIC_CSV + "nccl/a100_sxm__nccl_2.27.3.csv", C.aic_nccl),
            Table(VIDUR_NET + "a100_dgx/send_recv.csv", C.vidur_network,
                  {"scopes": ["intra"]}),
            Table(VIDUR_NET + "a100_dgx/send_recv.csv", C.vidur_network, {"scopes": ["inter"]},
                  ship=False, why=A100_INTER_WHY),
            Table(VIDUR_NET + "a100_dgx/all_reduce.csv", C.vidur_network, {"scopes": ["inter"]},
                  ship=False, why=A100_INTER_WHY),
            Table(VIDUR_COMPUTE + "a100/meta-llama/Meta-Llama-3-8B/mlp.csv", C.vidur_elementwise,
                  {"min_bytes": 2 * L2_BYTES["a100-sxm4-80gb"]}),
            _pub("C-HBM-STREAM-A100_80", "C-FA2-A100-PEAK"),
        ],
        sources=[
            _aic_source(AIC_DATA + "a100_sxm/gemm/sglang/0.5.10/gemm_perf.parquet",
                        "A100-SXM4-80GB bf16 GEMM, SGLang 0.5.10",
                        "gemm/a100_sxm__sglang_0.5.10__bfloat16.csv"),
            _aic_source(AIC_DATA + "a100_sxm/attention/trtllm/1.0.0/",
                        "A100-SXM4-80GB context/generation attention, TensorRT-LLM 1.0.0",
                        "attention/a100_sxm__trtllm_1.0.0__context.csv",
                        "attention/a100_sxm__trtllm_1.0.0__generation.csv"),
            _aic_source(AIC_DATA + "a100_sxm/comm/nccl/2.27.3/nccl_perf.parquet",
                        "A100-SXM4-80GB nccl-tests, NCCL 2.27.3, 2/4/8 GPUs",
                        "nccl/a100_sxm__nccl_2.27.3.csv"),
            _vidur_source(VIDUR_NET + "a100_dgx/send_recv.csv",
                          "A100 DGX send/recv (intra-node pairs)"),
            _vidur_source(VIDUR_COMPUTE + "a100/meta-llama/Meta-Llama-3-8B/mlp.csv",
                          "A100 fp16 elementwise ops (check only)"),
            PUBLISHED_SOURCES["C-HBM-STREAM-A100_80"], PUBLISHED_SOURCES["C-FA2-A100-PEAK"],
        ],
        notes=("Reference profile of an A100 SXM4 80GB in an 8-GPU NVSwitch node. GEMM: SGLang "
               "0.5.10 bf16 table (cuBLAS via torch). Attention: TensorRT-LLM 1.0.0, bf16, "
               "head_dim 128, all batch/head configurations pooled per (q_len, kv_len). "
               "Backward attention: FlashAttention-2's published maximum (230 TFLOP/s, fwd+bwd; "
               "the paper's 50-73 % range gives uncertainty[attention.backward]). Memory: STREAM "
               "triad (one point, constant curve); vidur's fp16 elementwise kernels are checked "
               "against it. Inter-node collectives: none shipped (defaults apply): "
               + A100_INTER_WHY),
        # FlashAttention-2 reaches 50-73 % of peak across its settings (Dao 2023 abstract)
        uncertainty={"attention.backward": round4(math.log(0.73 / 0.50))}),
    "h100-sxm5-80gb": Reference(
        tables=[
            Table(AIC_CSV + "gemm/h100_sxm__trtllm_1.3.0rc20__bfloat16.csv", C.aic_gemm),
            Table(AIC_CSV + "gemm/h100_sxm__trtllm_1.3.0rc20__fp8.csv", C.aic_gemm),
            Table(AIC_CSV + "attention/h100_sxm__trtllm_1.3.0rc20__context__hd128_nowindow.csv",
                  C.aic_attention, {"phase": "prefill"}),
            Table(AIC_CSV + "attention/h100_sxm__trtllm_1.3.0rc20__generation__hd128_nowindow"
                  ".csv", C.aic_attention, {"phase": "decode"}),
            Table(AIC_CSV + "nccl/h100_sxm__nccl_2.29.2.csv", C.aic_nccl),
            Table(VIDUR_NET + "h100_dgx/send_recv.csv", C.vidur_network),
            Table(AIC_DATA + "h100_sxm/quantize/trtllm/1.3.0rc20/scale_matrix_perf.parquet",
                  C.aic_scale_matrix, {"min_bytes": 2 * L2_BYTES["h100-sxm5-80gb"]}),
            Table(VIDUR_COMPUTE + "h100/meta-llama/Llama-2-70b-hf/mlp.csv", C.vidur_elementwise,
                  {"min_bytes": 2 * L2_BYTES["h100-sxm5-80gb"]}),
            _pub("C-FA2-H100-PEAK"),
        ],
        sources=[
            _aic_source(AIC_DATA + "h100_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet",
                        "H100 SXM bf16 and fp8 GEMM, TensorRT-LLM 1.3.0rc20",
                        "gemm/h100_sxm__trtllm_1.3.0rc20__bfloat16.csv",
                        "gemm/h100_sxm__trtllm_1.3.0rc20__fp8.csv"),
            _aic_source(AIC_DATA + "h100_sxm/attention/trtllm/1.3.0rc20/",
                        "H100 SXM context/generation attention, TensorRT-LLM 1.3.0rc20",
                        "attention/h100_sxm__trtllm_1.3.0rc20__context__hd128_nowindow.csv",
                        "attention/h100_sxm__trtllm_1.3.0rc20__generation__hd128_nowindow.csv"),
            _aic_source(AIC_DATA + "h100_sxm/comm/nccl/2.29.2/nccl_perf.parquet",
                        "H100 SXM nccl-tests, NCCL 2.29.2, 2/4/8 GPUs",
                        "nccl/h100_sxm__nccl_2.29.2.csv"),
            _aic_source(AIC_DATA + "h100_sxm/quantize/trtllm/1.3.0rc20/scale_matrix_perf.parquet",
                        "H100 SXM bf16->fp8 quantize (memory-bound), TensorRT-LLM 1.3.0rc20"),
            _vidur_source(VIDUR_NET + "h100_dgx/send_recv.csv",
                          "H100 DGX send/recv, intra-node and across 2 nodes"),
            _vidur_source(VIDUR_COMPUTE + "h100/meta-llama/Llama-2-70b-hf/mlp.csv",
                          "H100 fp16 elementwise ops (check only)"),
            PUBLISHED_SOURCES["C-FA2-H100-PEAK"],
        ],
        notes=("Reference profile of an H100 SXM5 80GB in an 8-GPU NVSwitch node. GEMM: "
               "TensorRT-LLM 1.3.0rc20 bf16 (cuBLAS) and per-tensor fp8 (its times include the "
               "dynamic activation quantize kernel, as TRT-LLM's fp8 Linear runs it). "
               "Attention: TRT-LLM, bf16, head_dim 128, batch/head configurations pooled. "
               "Backward attention: FlashAttention-2's published H100 maximum (335 TFLOP/s "
               "fwd+bwd; FA2 uses no Hopper-specific instructions). Memory: bf16->fp8 quantize "
               "kernel (reads 2 B, writes 1 B per element) on working sets > 2 x L2; vidur's "
               "fp16 elementwise kernels are checked against it. Inter-node send/recv: vidur's "
               "H100 DGX pair across 2 nodes against one NDR 400 NIC per GPU (the fabric is not "
               "documented upstream; 36 GB/s at 64 MiB fits one NDR port). Inter-node "
               "all-reduce: no table (defaults apply).")),
    "h200-sxm-141gb": Reference(
        tables=[
            Table(AIC_DATA + "h200_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet", C.aic_gemm,
                  {"kernel_source": "torch_flow"}),
            Table(AIC_DATA + "h200_sxm/attention/trtllm/1.3.0rc20/context_attention_perf.parquet",
                  C.aic_attention, {"phase": "prefill"}),
            Table(AIC_DATA + "h200_sxm/attention/trtllm/1.3.0rc20/"
                  "generation_attention_perf.parquet", C.aic_attention, {"phase": "decode"}),
            Table(AIC_CSV + "nccl/h200_sxm__nccl_2.29.2.csv", C.aic_nccl),
            Table(VIDUR_NET + "h100_dgx/send_recv.csv", C.vidur_network),
            _pub("C-HBM-STREAM-H200", "C-FA2-H100-PEAK"),
        ],
        sources=[
            _aic_source(AIC_DATA + "h200_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet",
                        "H200 bf16 and fp8 GEMM, TensorRT-LLM 1.3.0rc20"),
            _aic_source(AIC_DATA + "h200_sxm/attention/trtllm/1.3.0rc20/",
                        "H200 context/generation attention, TensorRT-LLM 1.3.0rc20"),
            _aic_source(AIC_DATA + "h200_sxm/comm/nccl/2.29.2/nccl_perf.parquet",
                        "H200 nccl-tests, NCCL 2.29.2, 2/4/8 GPUs",
                        "nccl/h200_sxm__nccl_2.29.2.csv"),
            _vidur_source(VIDUR_NET + "h100_dgx/send_recv.csv",
                          "H100 DGX send/recv (same NVLink 4 / NVSwitch and NDR platform)"),
            PUBLISHED_SOURCES["C-HBM-STREAM-H200"], PUBLISHED_SOURCES["C-FA2-H100-PEAK"],
        ],
        notes=("Reference profile of an H200 SXM 141GB in an 8-GPU NVSwitch node. GEMM: "
               "TensorRT-LLM 1.3.0rc20 bf16 and per-tensor fp8 (times include the activation "
               "quantize kernel). Attention: TRT-LLM, bf16, head_dim 128, full causal. Memory: "
               "STREAM triad (one point, constant curve). Taken from the H100 (same GH100 chip "
               "and clocks, same NVLink 4 / NVSwitch gen 3 and NDR node platform): the "
               "FlashAttention-2 backward maximum and vidur's H100 DGX send/recv. Inter-node "
               "all-reduce: no table (defaults apply).")),
    "b200": Reference(
        tables=[
            Table(AIC_DATA + "b200_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet", C.aic_gemm,
                  {"kernel_source": "torch_flow"}),
            Table(AIC_DATA + "b200_sxm/attention/trtllm/1.3.0rc20/context_attention_perf.parquet",
                  C.aic_attention, {"phase": "prefill"}),
            Table(AIC_DATA + "b200_sxm/attention/trtllm/1.3.0rc20/"
                  "generation_attention_perf.parquet", C.aic_attention, {"phase": "decode"}),
            Table(AIC_CSV + "nccl/b200_sxm__nccl_2.29.2.csv", C.aic_nccl),
            _pub("C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA"),
        ],
        sources=[
            _aic_source(AIC_DATA + "b200_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet",
                        "B200 bf16 and fp8 GEMM, TensorRT-LLM 1.3.0rc20"),
            _aic_source(AIC_DATA + "b200_sxm/attention/trtllm/1.3.0rc20/",
                        "B200 context/generation attention, TensorRT-LLM 1.3.0rc20"),
            _aic_source(AIC_DATA + "b200_sxm/comm/nccl/2.29.2/nccl_perf.parquet",
                        "B200 nccl-tests, NCCL 2.29.2, 2/4/8 GPUs",
                        "nccl/b200_sxm__nccl_2.29.2.csv"),
            PUBLISHED_SOURCES["C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA"],
        ],
        notes=("Reference profile of a B200 in an 8-GPU NVLink 5 node. GEMM: TensorRT-LLM "
               "1.3.0rc20 bf16 and per-tensor fp8 (times include the activation quantize "
               "kernel). Attention: TRT-LLM, bf16, head_dim 128, full causal; no backward "
               "table (the core falls back to the prefill curve). Memory: no table (default "
               "efficiency). Inter-node all-reduce: 4 nodes x 8 GPUs over 8 x 50 GB/s EFA "
               "(AWS p6-b200), against the per-GPU NIC share of a DGX B200 (8 x NDR 400, the "
               "same 50 GB/s per GPU); no inter-node send/recv table (defaults apply).")),
}


COMMON_NOTES = (
    "Kernel tables are CUDA-graph replays (GPU time of back-to-back kernels, no CPU launch "
    "cost: eager execution adds framework overhead); NCCL tables are nccl-tests host-timed "
    "averages. Built by `perfmodel calibrate --reference` from calibration/sources/measured/ "
    "(held-out errors: fit on a random 70 % of each table, predict the rest through the core).")


def reference_records(device_id: str, shipped: bool = True) -> list[dict]:
    """All records a device's reference profile is fitted on (``shipped=False``: only the
    tables kept out of it)."""
    ref = _reference(device_id)
    out: list[dict] = []
    for table in ref.tables:
        if table.ship == shipped:
            out += table.records()
    return out


def _reference(device_id: str) -> Reference:
    if device_id not in REFERENCES:
        raise PerfModelError(f"--reference {device_id}: no measured reference tables for this "
                             f"device; reference profiles exist for {', '.join(REFERENCES)}")
    return REFERENCES[device_id]


def fit_reference(device_id: str, *, holdout: float = 0.3, seed: int = 0) -> FitResult:
    """Fit a device's reference profile (records, held-out errors and tables)."""
    ref = _reference(device_id)
    device = registry.get_device(device_id)
    records = reference_records(device_id)
    result = fit_profile(records, device, kind="reference", profile_id=f"{device_id}.reference",
                         sources=ref.sources, holdout=holdout, seed=seed,
                         notes=ref.notes + " " + COMMON_NOTES, return_result=True)
    unc = {**result.profile.uncertainty, **ref.uncertainty}
    result.profile = result.profile.model_copy(update={"uncertainty": unc})
    return result


def build_reference(device_id: str, out_path: str | Path | None = None, *,
                    holdout: float = 0.3, seed: int = 0) -> CalibrationProfile:
    """Fit and write calibration/<device>.reference.json (or ``out_path``)."""
    profile = fit_reference(device_id, holdout=holdout, seed=seed).profile
    out = Path(out_path) if out_path else data_dir("calibration") / f"{device_id}.reference.json"
    write_profile(profile, out)
    return profile.model_copy(update={"path": str(out)})


def write_profile(profile: CalibrationProfile, path: str | Path) -> None:
    """Write a profile as JSON (lists of numbers on one line), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dumps(profile.model_dump(mode="json", exclude_none=True)) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would outlive the rename
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dumps(obj, indent: int = 0) -> str:
    """JSON with nested objects indented and flat lists kept on one line (small, diffable)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in obj):
            return "[" + ",".join(json.dumps(v) for v in obj) + "]"
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def run_reference_cli(args) -> int:
    """``perfmodel calibrate --reference DEVICE [--out PATH] [--report PNG]``."""
    device_id = args.reference
    result = fit_reference(device_id)
    out = Path(args.out) if getattr(args, "out", None) else \
        data_dir("calibration") / f"{device_id}.reference.json"
    write_profile(result.profile, out)
    print(f"wrote {out} ({result.profile.label}, {len(result.profile.sources)} sources)")
    print(f"{'table':40s} {'n_fit':>7s} {'n_test':>7s} {'median APE':>11s} {'p90 APE':>9s}")
    for fe in result.profile.fit_errors:
        print(f"{fe.table:40s} {fe.n_fit:7d} {fe.n_test:7d} {fe.median_ape:11.1%} "
              f"{fe.p90_ape:9.1%}")
    report = getattr(args, "report", None)
    if report:
        from .report import write_report

        write_report(reference_records(device_id), result.profile, report)
        print(f"wrote {report}")
    return 0
