"""perfmodel what-if dashboard (``perfmodel dashboard`` = ``streamlit run app/Home.py``).

A thin page over the public API: the sidebar builds a scenario mapping, ``pm.predict`` answers
it, and app/charts.py draws the answer. No modelling happens here.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # charts.py beside this file (AppTest does not add it)
    sys.path.insert(0, str(HERE))
try:
    import perfmodel as pm
except ModuleNotFoundError:  # a checkout run without installing: the package is next door
    sys.path.insert(0, str(HERE.parent))
    import perfmodel as pm

import charts  # noqa: E402
import streamlit as st  # noqa: E402
import yaml  # noqa: E402

from perfmodel.textfmt import percent  # noqa: E402

DEFAULT_MODEL = "llama-2-7b"
DEFAULT_DEVICE = "a100-sxm4-80gb"
# Widget defaults per workload kind; applied when the page opens or the kind changes.
DEFAULTS = {
    "training": {"num_gpus": 8, "tp": 2, "pp": 1, "seq_len": 4096, "global_batch": 128,
                 "micro_batch": 1, "recompute": "selective", "precision": "bf16",
                 "zero_stage": 1, "sequence_parallel": True},
    "inference": {"num_gpus": 1, "tp": 1, "batch": 8, "prompt_len": 1024, "output_len": 256,
                  "weight_dtype": "bf16", "kv_dtype": "bf16"},
}
TRAIN_PRECISIONS = ["bf16", "fp16", "fp8", "tf32", "fp32"]
WEIGHT_DTYPES = ["bf16", "fp16", "fp8", "int8", "int4"]
KV_DTYPES = ["bf16", "fp16", "fp8", "int8", "int4"]
ZERO_LABELS = {0: "0 — replicated", 1: "1 — optimizer sharded", 2: "2 — + gradients",
               3: "3 — + weights (FSDP)"}


@st.cache_data(show_spinner=False, max_entries=256)
def predict(scenario: dict) -> pm.Prediction:
    """One prediction per distinct scenario mapping (SpecErrors are raised, not cached)."""
    return pm.predict(pm.as_scenario(scenario))


def plain(text: str) -> str:
    """``text`` shown literally in Streamlit markdown (``tp*pp*dp`` is not emphasis, ``$``
    not LaTeX); backticks stay, so `commands` still render as code."""
    parts = str(text).split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = "".join("\\" + c if c in "\\*_[]<>#~|$" else c for c in parts[i])
    return "`".join(parts)


def _apply_defaults(kind: str, overwrite: bool = False) -> None:
    for key, value in DEFAULTS[kind].items():
        if overwrite:
            st.session_state[key] = value
        else:
            st.session_state.setdefault(key, value)


def _on_kind_change() -> None:
    _apply_defaults(st.session_state["kind"], overwrite=True)


def _int(label: str, key: str, step: int = 1, help: str | None = None) -> int:
    return int(st.number_input(label, min_value=1, step=step, key=key, help=help))


def sidebar() -> dict:
    """The scenario mapping (DESIGN.md scenario format) chosen in the sidebar."""
    models, devices = pm.models(), pm.devices()
    model_ids, device_ids = sorted(models), sorted(devices)
    st.session_state.setdefault("kind", "training")
    st.session_state.setdefault("model", DEFAULT_MODEL if DEFAULT_MODEL in models
                                else model_ids[0])
    st.session_state.setdefault("device", DEFAULT_DEVICE if DEFAULT_DEVICE in devices
                                else device_ids[0])
    with st.sidebar:
        st.header("Scenario")
        kind = st.radio("Workload", ["training", "inference"], key="kind", horizontal=True,
                        format_func=str.capitalize, on_change=_on_kind_change)
        _apply_defaults(kind)
        model = st.selectbox("Model", model_ids, key="model",
                             format_func=lambda i: models[i].name)
        device = st.selectbox("GPU", device_ids, key="device",
                              format_func=lambda i: devices[i].name)
        num_gpus = _int("Number of GPUs", "num_gpus")
        sc: dict = {"kind": kind, "model": model,
                    "system": {"device": device, "num_gpus": num_gpus}}
        if kind == "training":
            st.subheader("Training step")
            c1, c2 = st.columns(2)
            seq_len = _int("Sequence length", "seq_len", step=512)
            with c1:
                global_batch = _int("Global batch", "global_batch", step=8,
                                    help="sequences per optimizer step")
                tp = _int("TP", "tp", help="tensor-parallel size")
            with c2:
                micro_batch = _int("Micro-batch", "micro_batch",
                                   help="sequences per micro-batch")
                pp = _int("PP", "pp", help="pipeline-parallel stages; DP = GPUs / (TP·PP)")
            recompute = st.selectbox("Activation recompute", ["none", "selective", "full"],
                                     key="recompute")
            precision = st.selectbox("Precision", TRAIN_PRECISIONS, key="precision",
                                     format_func=str.upper)
            zero = st.selectbox("ZeRO stage", list(ZERO_LABELS), key="zero_stage",
                                format_func=ZERO_LABELS.get)
            sp = st.checkbox("Sequence parallel", key="sequence_parallel")
            sc["parallelism"] = {"tp": tp, "pp": pp, "zero_stage": zero,
                                 "sequence_parallel": sp}
            sc["training"] = {"seq_len": seq_len, "global_batch": global_batch,
                              "micro_batch": micro_batch, "recompute": recompute,
                              "precision": precision}
        else:
            st.subheader("Request")
            c1, c2 = st.columns(2)
            with c1:
                batch = _int("Batch", "batch", help="concurrent sequences per replica")
                prompt_len = _int("Prompt tokens", "prompt_len", step=128)
                weight_dtype = st.selectbox("Weights", WEIGHT_DTYPES, key="weight_dtype",
                                            format_func=str.upper)
            with c2:
                tp = _int("TP", "tp", help="tensor-parallel GPUs per replica")
                output_len = _int("Output tokens", "output_len", step=64)
                kv_dtype = st.selectbox("KV cache", KV_DTYPES, key="kv_dtype",
                                        format_func=str.upper)
            sc["parallelism"] = {"tp": tp}
            sc["inference"] = {"batch": batch, "prompt_len": prompt_len,
                               "output_len": output_len, "weight_dtype": weight_dtype,
                               "kv_dtype": kv_dtype}
    return sc


def metrics(pred: pm.Prediction) -> None:
    mem = (f"{pred.memory_per_gpu_bytes / charts.GIB:.1f} GiB",
           f"of {pred.memory_capacity_bytes / charts.GIB:g} GiB; "
           + ("fits" if pred.fits else "does NOT fit"))
    if pred.kind == "training":
        items = [
            ("Step time", charts.fmt_seconds(pred.step_time_s),
             f"{pred.num_microbatches:g} micro-batches per step"),
            ("Tokens/s (system)", charts.fmt_rate(pred.tokens_per_s), "all GPUs"),
            ("TFLOP/s per GPU", f"{pred.tflops_per_gpu:.1f}",
             "model FLOPs (Megatron convention: GEMMs + attention, no recompute)"),
            ("MFU", percent(pred.mfu),
             f"vs the dense peak of the training dtype; 6ND convention: "
             f"{percent(pred.mfu_6nd)}; HFU incl. recompute: {percent(pred.hfu)}"),
            ("Memory per GPU", *mem),
        ]
    else:
        items = [
            ("TTFT", charts.fmt_seconds(pred.ttft_s), "time to first token (prefill)"),
            ("TPOT", charts.fmt_seconds(pred.tpot_s), "time per output token (decode step)"),
            ("End-to-end", charts.fmt_seconds(pred.e2e_latency_s), "whole request"),
            ("Output tokens/s", charts.fmt_rate(pred.tokens_per_s),
             "generated tokens per second, all replicas"),
            ("Memory per GPU", *mem),
            ("Max sequences", f"{pred.max_concurrent_sequences:,.0f}",
             "concurrent sequences whose KV cache fits in memory "
             f"({charts.fmt_bytes(pred.kv_cache_bytes_per_sequence)} each)"),
        ]
    for col, (label, value, help_) in zip(st.columns(len(items)), items, strict=True):
        col.metric(label, value, help=help_, border=True)


def main() -> None:
    st.set_page_config(page_title="perfmodel · what-if", page_icon=":material/speed:", layout="wide")
    scenario = sidebar()
    st.title("perfmodel · what-if")
    try:
        pred = predict(scenario)
    except (pm.PerfModelError, ValueError) as err:
        st.error(f"**This scenario cannot run:** {plain(err)}", icon=":material/block:")
        return
    device = pm.get_device(pred.device)
    model_name = pm.get_model(pred.model).name if pred.model in pm.models() else pred.model
    st.markdown(f"**{pred.kind.capitalize()}** · {model_name} on "
                f"**{pred.num_gpus} × {device.name}** · calibration: "
                f"`{pred.calibration.get('label', pred.calibration.get('id'))}`")
    for warning in pred.warnings:  # "uncalibrated" is a caveat, anything else a problem
        if warning.startswith("uncalibrated"):
            st.info(plain(warning), icon=":material/info:")
        else:
            st.warning(plain(warning), icon=":material/warning:")
    metrics(pred)

    left, right = st.columns([3, 2])
    left.plotly_chart(charts.time_figure(pred), key="time_chart", width="stretch")
    right.plotly_chart(charts.memory_figure(pred), key="memory_chart", width="stretch")
    dtype = charts.compute_dtype(scenario)
    st.plotly_chart(charts.roofline_figure(pred, device.peak_flops(dtype),
                                           device.memory_bandwidth, dtype, device.name),
                    key="roofline_chart", width="stretch")
    shares = " and ".join(f"{100 * v:.0f}% of {k.lower()}"
                          for k, v in charts.elementwise_share(pred).items())
    st.caption(
        "Each marker is one operator at (FLOP per HBM byte, modelled FLOP/s per call); marker "
        "area ∝ its share of operator time. ● forward / prefill, ◆ decode, ■ backward, "
        "▲ recompute. Elementwise operators move bytes without matrix FLOPs and are not "
        f"placed ({shares} operator time).")

    with st.expander("Operators"):
        stages = charts.op_stages(pred)
        st.dataframe(
            [{"operator": op.name, "class": op.cls, "stage": stage, "calls": op.calls,
              "FLOP/B": op.intensity, "bound": op.bound, "per call (µs)": op.time_s * 1e6,
              "total (ms)": op.total_s * 1e3} for op, stage in zip(pred.ops, stages, strict=True)],
            hide_index=True, width="stretch",
            column_config={"FLOP/B": st.column_config.NumberColumn(format="%.1f"),
                           "per call (µs)": st.column_config.NumberColumn(format="%.1f"),
                           "total (ms)": st.column_config.NumberColumn(format="%.3f")})
    with st.expander("Scenario file (for `perfmodel predict`)"):
        st.code(yaml.safe_dump(scenario, sort_keys=False), language="yaml")


main()
