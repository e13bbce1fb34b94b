"""Scenario widgets shared by the pages: one function per scenario section, each keyed by a
prefix so that a page can hold several scenarios (Compare) and the URL can name every field.

A form function creates its widgets (values seeded by ``common.url_state``) and returns the
part of the scenario mapping (DESIGN.md format) it is responsible for. Fields that other
parts of perfmodel may add later (``engine``, ``framework``, ``power_limit_w``,
``activation_dtype`` choices) are looked up on the pydantic models, so the form shows them
exactly when the installed perfmodel accepts them.
"""

from __future__ import annotations

import sys
import typing
from typing import Any

import backend
import streamlit as st
from common import pm

DEFAULT_MODEL = "llama-2-7b"
DEFAULT_DEVICE = "a100-sxm4-80gb"
TRAIN_PRECISIONS = ["bf16", "fp16", "fp8", "mxfp8", "nvfp4", "tf32", "fp32"]
ZERO_LABELS = {0: "0 — replicated", 1: "1 — optimizer sharded", 2: "2 — + gradients",
               3: "3 — + weights (FSDP)"}
RECOMPUTE = ["none", "selective", "full", "op"]
AUTO = ""  # "use the device's / node's default" in the system selectboxes


# --------------------------------------------------------------------------- field discovery
def _literal_choices(annotation: Any) -> list | None:
    """The values of a ``Literal[...]`` (also inside Optional / Annotated), else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found = _literal_choices(arg)
        if found:
            return found
    return None


def field_choices(cls: type, name: str) -> list | None:
    """Choices of field ``name`` of pydantic model ``cls`` (None: no such field, or not a
    Literal)."""
    field = getattr(cls, "model_fields", {}).get(name)
    return None if field is None else _literal_choices(field.annotation)


def has_field(cls: type, name: str) -> bool:
    return name in getattr(cls, "model_fields", {})


def _stack_model(name: str) -> type | None:
    """The pydantic model of a stack field (``engine`` on the Scenario, ``framework`` on the
    training section): a model with a ``name`` Literal; None if this perfmodel has none."""
    for cls in (pm.Scenario, pm.TrainingConfig, pm.InferenceConfig):
        field = getattr(cls, "model_fields", {}).get(name)
        if field is None:
            continue
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and has_field(candidate, "name"):
                return candidate
    return None


def stack_choices(name: str) -> list[str]:
    """The names a stack field accepts (first: its default)."""
    model = _stack_model(name)
    if model is None:
        return []
    choices = field_choices(model, "name") or []
    aliases = getattr(sys.modules.get(model.__module__), "ALIASES", {})
    choices = [c for c in choices if c not in aliases]  # other spellings of the same stack
    default = model.model_fields["name"].default
    return [default, *[c for c in choices if c != default]] if default in choices else choices


def stack_section(name: str) -> str | None:
    """Where a stack field lives: 'top' (Scenario), a section name, or None (not yet)."""
    if _stack_model(name) is None:
        return None
    if has_field(pm.Scenario, name):
        return "top"
    return "training" if has_field(pm.TrainingConfig, name) else "inference"


def activation_dtypes() -> list[str]:
    return field_choices(pm.InferenceConfig, "activation_dtype") or ["bf16"]


def kv_dtypes() -> list[str]:
    return field_choices(pm.InferenceConfig, "kv_dtype") or ["bf16"]


WEIGHT_DTYPES = ["bf16", "fp16", "fp8", "int8", "int4", "nvfp4", "mxfp4", "fp8_block"]


# --------------------------------------------------------------------------- defaults
def system_defaults(p: str, num_gpus: int, model: str = DEFAULT_MODEL,
                    device: str = DEFAULT_DEVICE) -> dict[str, Any]:
    out = {f"{p}model": model, f"{p}device": device, f"{p}num_gpus": num_gpus,
           f"{p}node": AUTO, f"{p}intra_node": AUTO, f"{p}inter_node": AUTO,
           f"{p}gpus_per_node": 0}
    if has_field(pm.SystemConfig, "power_limit_w"):
        out[f"{p}power_limit_w"] = 0
    return out


def training_defaults(p: str) -> dict[str, Any]:
    out = {f"{p}seq_len": 4096, f"{p}global_batch": 128, f"{p}micro_batch": 1,
           f"{p}tp": 2, f"{p}pp": 1, f"{p}cp": 1, f"{p}ep": 1, f"{p}vp": 1,
           f"{p}zero_stage": 1, f"{p}sequence_parallel": True, f"{p}recompute": "selective",
           f"{p}precision": "bf16", f"{p}uneven_pipeline": False}
    if stack_section("framework"):
        out[f"{p}framework"] = AUTO
    return out


def inference_defaults(p: str, serving: bool = False) -> dict[str, Any]:
    out = {f"{p}prompt_len": 1024, f"{p}output_len": 256, f"{p}tp": 1, f"{p}pp": 1,
           f"{p}ep": 1, f"{p}weight_dtype": AUTO, f"{p}activation_dtype": AUTO,
           f"{p}kv_dtype": "bf16"}
    if not serving:
        out[f"{p}batch"] = 8
        # MoE with EP (inference reads these; a serving scenario does not)
        if has_field(pm.Parallelism, "attention_dp"):
            out[f"{p}attention_dp"] = 1
        if field_choices(pm.Parallelism, "moe_overlap"):
            out[f"{p}moe_overlap"] = AUTO
    if stack_section("engine"):
        out[f"{p}engine"] = AUTO
        if has_field(_stack_model("engine"), "version"):
            out[f"{p}engine_version"] = AUTO
            out[f"{p}engine_variant"] = AUTO
    return out


# --------------------------------------------------------------------------- widgets
def _int(label: str, key: str, step: int = 1, min_value: int = 1, help: str | None = None,
         where=st) -> int:
    return int(where.number_input(label, min_value=min_value, step=step, key=key, help=help))


def _checkpoint(value: str) -> str:
    return "checkpoint" if value == AUTO else value.upper()


def _auto(value: str) -> str:
    return "device default" if value == AUTO else value


def system_form(p: str) -> dict:
    """Model, GPU, count and (optionally) the node and its interconnects."""
    models, devices = pm.models(), pm.devices()
    model = st.selectbox("Model", sorted(models), key=f"{p}model",
                         format_func=lambda i: models[i].name)
    device = st.selectbox("GPU", sorted(devices), key=f"{p}device",
                          format_func=lambda i: devices[i].name)
    num_gpus = _int("Number of GPUs", f"{p}num_gpus")
    system: dict = {"device": device, "num_gpus": num_gpus}
    with st.expander("Node, interconnect and power"):
        links = [AUTO, *sorted(pm.interconnects())]
        node = st.selectbox("Node", [AUTO, *sorted(pm.nodes())], key=f"{p}node",
                            format_func=_auto, help="node preset (hardware_specs/nodes)")
        gpn = _int("GPUs per node (0 = default)", f"{p}gpus_per_node", min_value=0)
        intra = st.selectbox("Intra-node link", links, key=f"{p}intra_node", format_func=_auto)
        inter = st.selectbox("Inter-node link", links, key=f"{p}inter_node", format_func=_auto)
        if f"{p}power_limit_w" in st.session_state:
            watts = _int("GPU power limit, W (0 = TDP)", f"{p}power_limit_w", step=50,
                         min_value=0, help="board power cap per GPU (nvidia-smi -pl)")
            if watts:
                system["power_limit_w"] = watts
    for name, value in (("node", node), ("intra_node", intra), ("inter_node", inter)):
        if value != AUTO:
            system[name] = value
    if gpn:
        system["gpus_per_node"] = gpn
    return {"model": model, "system": system}


def _stack_widget(p: str, name: str, label: str) -> str | None:
    """A selectbox of the stack's names; None when left at "default" (the field is then
    not written, so the scenario keeps perfmodel's default stack)."""
    if f"{p}{name}" not in st.session_state:
        return None
    choices = stack_choices(name)
    default = choices[0] if choices else "default"
    value = st.selectbox(label, [AUTO, *choices[1:]], key=f"{p}{name}",
                         format_func=lambda v: f"default ({default})" if v == AUTO else v)
    return value or None


def _place(sc: dict, name: str, value: Any) -> None:
    where = stack_section(name)
    if value is None or where is None:
        return
    if where == "top":
        sc[name] = value
    else:
        sc.setdefault(where, {})[name] = value


def training_form(p: str) -> dict:
    """The training step and its parallel plan: the full Parallelism of Megatron-style
    training (TP, PP, CP, EP, VP, ZeRO, sequence parallelism)."""
    sc: dict = {"kind": "training", **system_form(p)}
    c1, c2 = st.columns(2)
    seq_len = _int("Sequence length", f"{p}seq_len", step=512, where=c1)
    global_batch = _int("Global batch", f"{p}global_batch", step=8, where=c2,
                        help="sequences per optimizer step")
    micro_batch = _int("Micro-batch", f"{p}micro_batch", where=c1,
                       help="sequences per micro-batch")
    tp = _int("TP", f"{p}tp", where=c2, help="tensor-parallel size")
    pp = _int("PP", f"{p}pp", where=c1, help="pipeline stages; DP = GPUs / (TP·PP·CP)")
    cp = _int("CP", f"{p}cp", where=c2, help="context-parallel size")
    ep = _int("EP", f"{p}ep", where=c1, help="expert-parallel size (MoE models)")
    vp = _int("VP", f"{p}vp", where=c2, help="virtual stages per rank (interleaved 1F1B)")
    recompute = st.selectbox("Activation recompute", RECOMPUTE, key=f"{p}recompute")
    precision = st.selectbox("Precision", TRAIN_PRECISIONS, key=f"{p}precision",
                             format_func=str.upper)
    framework = _stack_widget(p, "framework", "Framework")
    zero = _zero_widget(p, framework)
    sp = st.checkbox("Sequence parallel", key=f"{p}sequence_parallel")
    uneven = st.checkbox("Uneven pipeline stages", key=f"{p}uneven_pipeline",
                         help="allow num_layers not divisible by pp·vp")
    par = {"tp": tp, "pp": pp, "cp": cp, "ep": ep, "vp": vp, "zero_stage": zero,
           "sequence_parallel": sp}
    if uneven:
        par["uneven_pipeline"] = True
    sc["parallelism"] = par
    sc["training"] = {"seq_len": seq_len, "global_batch": global_batch,
                      "micro_batch": micro_batch, "recompute": recompute,
                      "precision": precision}
    _place(sc, "framework", framework)
    return sc


def _zero_widget(p: str, framework: str | None) -> int:
    """The ZeRO stages the framework offers (frameworks/<id>.yaml capabilities), each with its
    own switch; a stage chosen under another framework moves to the nearest one offered that
    shards at least as much."""
    stages = backend.framework_stages(framework)
    key = f"{p}zero_stage"
    if st.session_state.get(key) not in stages:
        wanted = st.session_state.get(key) or 0
        # the nearest stage that shards at least as much (torchtitan: FSDP2 for ZeRO-1)
        st.session_state[key] = min(stages, key=lambda z: (z < wanted, abs(z - wanted)))
    return st.selectbox("ZeRO stage", list(stages), key=key,
                        format_func=lambda z: f"{ZERO_LABELS.get(z, z)} ({stages[z]})")


def inference_form(p: str, serving: bool = False) -> dict:
    """A request batch on TP x PP (x EP) replicas, with per-tensor dtypes; ``serving``
    leaves out the batch (the scheduler forms batches)."""
    kind = "serving" if serving else "inference"
    sc: dict = {"kind": kind, **system_form(p)}
    c1, c2 = st.columns(2)
    inf: dict = {}
    if not serving:
        inf["batch"] = _int("Batch", f"{p}batch", where=c1,
                            help="concurrent sequences per replica")
    tp = _int("TP", f"{p}tp", where=c2, help="tensor-parallel GPUs per replica")
    inf["prompt_len"] = _int("Prompt tokens", f"{p}prompt_len", step=128, where=c1)
    inf["output_len"] = _int("Output tokens", f"{p}output_len", step=64, where=c2)
    pp = _int("PP", f"{p}pp", where=c1, help="pipeline stages per replica")
    ep = _int("EP", f"{p}ep", where=c2, help="expert-parallel groups within TP (MoE)")
    weights = st.selectbox("Weights", [AUTO, *WEIGHT_DTYPES], key=f"{p}weight_dtype",
                           format_func=_checkpoint,
                           help="checkpoint: the model's own formats (e.g. an mxfp4 or fp8 "
                                "checkpoint's quantization_config), bf16 when it has none")
    if weights != AUTO:
        inf["weight_dtype"] = weights
    # unset, the weights' format decides (fp8 / fp4 weights run the engines' W8A8 / W4A4);
    # a 16-bit choice with quantised weights asks for weight-only kernels
    activations = st.selectbox(
        "Activations", [AUTO, *activation_dtypes()], key=f"{p}activation_dtype",
        format_func=lambda v: "with the weights" if v == AUTO else v.upper(),
        help="with the weights: 16-bit for 16-bit weights, the weights' format for fp8 / fp4 "
             "weights (as the engines run them); 16-bit with quantised weights: weight-only")
    if activations != AUTO:
        inf["activation_dtype"] = activations
    inf["kv_dtype"] = st.selectbox("KV cache", kv_dtypes(), key=f"{p}kv_dtype",
                                   format_func=str.upper)
    sc["parallelism"] = {"tp": tp, "pp": pp, "ep": ep}
    sc["inference"] = inf
    engine = _stack_widget(p, "engine", "Engine")
    _place(sc, "engine", _engine_version(p, engine))
    _moe_widgets(p, sc["model"], ep, sc["parallelism"])
    return sc


def _engine_version(p: str, engine: str | None) -> str | dict | None:
    """The ``engine`` entry: its name, or ``{name, version, variant}`` when the engine has
    version families (engines/versions/) and one is picked. Any release can be typed; the
    core says in one line when no family holds it."""
    starts = backend.version_starts(engine) if engine else {}
    if not starts or f"{p}engine_version" not in st.session_state:
        return engine
    # the family a scenario naming no version gets depends on the variant picked below (vLLM
    # v0: 0.7-v0); Streamlit reruns on every change, so the label follows the pick
    picked = st.session_state.get(f"{p}engine_variant")
    families = backend.engine_versions(
        engine, picked if picked in backend.engine_variants(engine) else None)
    current = next((f["label"] for f in families if f["default"]), "current")
    version = st.selectbox(
        "Engine version", [AUTO, *starts], key=f"{p}engine_version", accept_new_options=True,
        format_func=lambda v: f"current ({current})" if v == AUTO else
        f"{v} — facts {starts[v]}" if v in starts else v,
        help="the release whose rules apply: the first release of each version family "
             "(engines/versions), or type your release, e.g. 0.6.3; the engine memory plan "
             "below names the family used")
    variants = backend.engine_variants(engine)
    variant = AUTO
    if variants:
        variant = st.selectbox("Engine variant", [AUTO, *variants], key=f"{p}engine_variant",
                               format_func=lambda v: "release default" if v == AUTO else v,
                               help="vLLM: v1 = the V1 engine core (VLLM_USE_V1=1) before "
                                    "it became the default in 0.8, v0 = the old core after")
    out: dict = {"name": engine}
    if version:
        out["version"] = str(version).strip()
    if variant:
        out["variant"] = variant
    return out if len(out) > 1 else engine


def _moe_widgets(p: str, model: str, ep: int, par: dict) -> None:
    """Attention DP and the all-to-all overlap of a MoE model with EP (inference only):
    written into ``par`` when not left at their defaults."""
    if f"{p}moe_overlap" not in st.session_state or ep <= 1:
        return
    spec = pm.models().get(model)
    if spec is None or getattr(spec, "moe", None) is None:
        return
    adp = 1
    if f"{p}attention_dp" in st.session_state:
        adp = _int("Attention DP", f"{p}attention_dp",
                   help="attention data-parallel groups of TP GPUs, each with its own "
                        "requests (SGLang --enable-dp-attention); the experts span all of "
                        "them and tokens reach them by all-to-all")
    choices = field_choices(pm.Parallelism, "moe_overlap") or []
    overlap = st.selectbox("MoE overlap", [AUTO, *choices], key=f"{p}moe_overlap",
                           format_func=lambda v: "engine default" if v == AUTO else v,
                           help="two_batch: two micro-batches, one's all-to-all hidden behind "
                                "the other's compute (SGLang --enable-two-batch-overlap, vLLM "
                                "--enable-dbo); needs an engine with that schedule and "
                                "attention DP > 1")
    if adp > 1:
        par["attention_dp"] = adp
    if overlap != AUTO:
        par["moe_overlap"] = overlap
