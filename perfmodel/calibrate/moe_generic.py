"""The evidence for racing the production kernels of a format (``engines.production_kernels``)
against the reference table in the generic engine (calibration/moe_kernels.yaml ``generic``).

A reference profile holds, per expert format, the table under the format's name (TensorRT-LLM
1.3.0rc20's rows: calibration/references.yaml) and other engines' kernels under
``<format>@<kernel>``. An engine file names the kernels its engine selects; the generic engine
names none. It used to read the format's
reference table whatever that measured, and on Blackwell that is not what a deployment runs for
W4A16 MXFP4: TensorRT-LLM's rows there are the TRT-LLM-gen MoE run with bf16 activations
(aiconfigurator collector/trtllm/collect_moe.py at dec5f4cd2, the rc20 campaign: ``moe_backend =
"trtllm"`` for MXFP4 on SM 100-119, and ``if moe_type != "w4a16_mxfp4":`` around the autotuner, so
these rows ran untuned tactics), a mode TensorRT-LLM's own serving does not pick on SM >= 100
(get_mxfp4_quant_algo -> W4A8_MXFP4_MXFP8, engines/trtllm.yaml source trtmxfp4algo): 2.1x slower
than the same kernel family under vLLM 0.24.0 / SGLang 0.5.14, so 4-bit experts decoded slower
than fp8 ones. Now the generic engine's grouped GEMMs of a format read, per plan, the one table
among the reference table and the tables of the kernels ``engines.production_kernels`` names whose calls
of the step take the least time in sum (roofline.Roofline.moe_alternatives,
roofline._fastest_moe_kernel).
``evidence`` measures, from the copied tables alone, how often each such kernel beat the
reference on the shapes both measured (no end-to-end case enters).
"""

from __future__ import annotations

from pathlib import Path

from ..engines import production_kernels
from ..paths import data_dir

#: hardware_specs id of a reference profile -> aiconfigurator system folder
AIC_SYSTEMS = {"b200": "b200_sxm", "b300": "b300_sxm", "gb200": "gb200", "gb300": "gb300",
               "h100-sxm5-80gb": "h100_sxm", "h200-sxm-141gb": "h200_sxm"}
#: profile format -> upstream moe_dtype
AIC_DTYPE = {"bf16": "bfloat16"}
SHAPE = ["hidden_size", "inter_size", "num_experts", "topk", "moe_tp_size", "moe_ep_size",
         "num_tokens"]


def measured_rows(system: str, root: Path | None = None):
    """Balanced-routing rows of every copied MoE table of ``system`` (all engines, versions),
    with their kernel label (calibration/moe_kernels.yaml)."""
    import pandas as pd

    from .moe_kernels import kernel_labels

    root = root or data_dir("calibration") / "sources/measured/aiconfigurator/systems/data"
    frames = [pd.read_parquet(p) for p in sorted((root / system / "moe").glob("*/*/moe_perf.parquet"))]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["distribution"] == "balanced"].copy()
    rows["label"] = rows["kernel_source"].map(kernel_labels("moe"))
    return rows


def evidence(profile, rows=None) -> dict[tuple[str, str], dict]:
    """{(format, kernel): {faster, shapes, median_ratio}} for every ``<format>@<kernel>`` table
    of ``profile`` (a reference ``CalibrationProfile``) whose kernel is a production one: on the
    ``shapes`` (hidden, intermediate, experts, top-k, MoE TP, MoE EP, tokens; balanced routing)
    both its rows and the format's reference table's rows measured on the device, it was faster
    on ``faster``; ``median_ratio`` its median latency over the reference's there."""
    if rows is None:
        rows = measured_rows(AIC_SYSTEMS[profile.device])
    out: dict[tuple[str, str], dict] = {}
    for fmt in sorted(k for k in profile.moe if "@" not in k):
        ref = profile.moe_kernel.get(fmt)
        prod = production_kernels(fmt)
        cands = [profile.moe_kernel[k] for k in profile.moe
                 if k.startswith(fmt + "@") and profile.moe_kernel.get(k) in prod]
        if ref is None or not cands:
            continue
        sub = rows[rows["moe_dtype"] == AIC_DTYPE.get(fmt, fmt)]
        table = sub.groupby(["label", *SHAPE])["latency"].median().unstack("label")
        for k in cands:
            if k not in table or ref not in table:
                continue
            both = table[[ref, k]].dropna()
            if both.empty:
                continue
            out[(fmt, k)] = {"faster": int((both[k] < both[ref]).sum()), "shapes": len(both),
                             "median_ratio": float((both[k] / both[ref]).median())}
    return out
