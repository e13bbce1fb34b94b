"""The measured end-to-end loop: real PyTorch workloads on this machine vs perfmodel.

`perfmodel validate --measure {cpu,cuda} [--calibration FILE] [--json]` builds the small GPT
of ``validation/measured/workloads.yaml`` in PyTorch, times a training step (forward,
backward, AdamW), a prefill and the decode steps of a KV-cached generation with the same
timing loop as the microbenchmarks (``calibrate.timing.measure``), predicts the same three
workloads from the calibration profile with the core's own functions, and reports predicted
vs measured with APE in the JSON shape of `perfmodel validate`. On CUDA the same code runs
with CUDA-event timing; the device is matched to its hardware_specs entry through NVML.
torch is an optional extra: it is imported only when a measurement runs
(``calibrate.import_torch``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibrate import import_torch
from ..calibrate.timing import StopRule, make_clock, measure
from ..errors import PerfModelError
from ..inference import inference
from ..paths import data_dir
from ..plan import InferPlan, TrainPlan
from ..profile import CalibrationProfile
from ..specs.common import validate
from ..specs.hardware import InterconnectSpec
from ..specs.model import ModelSpec
from ..specs.registry import load_profile, read_yaml
from ..specs.system import System
from ..training import training_step


def workloads_file() -> Path:
    """validation/measured/workloads.yaml (beside the package in a checkout, inside a wheel)."""
    return data_dir("validation") / "measured" / "workloads.yaml"

RULE = StopRule(min_reps=5, max_reps=40, rel_ci=0.03, max_time_s=6.0, warmup_reps=2,
                warmup_s=0.2, max_warmup_reps=5)
# Each workload's warm-up and timing stop by this many seconds (timing.measure's deadline), so
# the check ends in bounded time on a slow or loaded machine; the record says how it stopped.
BUDGET_S = 10.0


def _timed(fn, clock):
    return measure(fn, clock, RULE, deadline=time.perf_counter() + BUDGET_S)
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class Workloads:
    """The model, dtype and the three workloads of one device kind (workloads.yaml)."""

    model: ModelSpec
    dtype: str
    training: dict
    prefill: dict
    decode: dict


def load_workloads(device: str) -> Workloads:
    """The workloads of ``device`` ("cpu" or "cuda")."""
    path = workloads_file()
    data = read_yaml(path)
    part = data[device]
    return Workloads(model=validate(ModelSpec, data["model"], what=str(path)),
                     dtype=part["dtype"], training=part["training"], prefill=part["prefill"],
                     decode=part["decode"])


# ---- the workloads, in PyTorch ----------------------------------------------------------------
def build_gpt(torch, spec: ModelSpec, device: str, dtype):
    """A GPT-2-style decoder matching ``spec`` (what perfmodel's operator list describes)."""
    nn, F = torch.nn, torch.nn.functional
    h, nh = spec.hidden_size, spec.num_heads
    hd = h // nh

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
            self.qkv, self.out = nn.Linear(h, 3 * h), nn.Linear(h, h)
            self.up, self.down = nn.Linear(h, spec.ffn_hidden_size), nn.Linear(
                spec.ffn_hidden_size, h)

        def forward(self, x, cache=None, pos=0):
            b, s, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, nh, hd).permute(2, 0, 3, 1, 4)
            if cache is not None:  # write this step's K, V; attend over the whole prefix
                cache[0][:, :, pos:pos + s] = k
                cache[1][:, :, pos:pos + s] = v
                k, v = cache[0][:, :, :pos + s], cache[1][:, :, :pos + s]
            causal = s > 1
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            x = x + self.out(o.transpose(1, 2).reshape(b, s, h))
            return x + self.down(F.gelu(self.up(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(spec.vocab_size, h)
            self.pos = nn.Embedding(spec.max_position_embeddings, h)
            self.blocks = nn.ModuleList(Block() for _ in range(spec.num_layers))
            self.ln = nn.LayerNorm(h)

        def forward(self, idx, caches=None, pos=0, last_only=False):
            s = idx.shape[1]
            x = self.tok(idx) + self.pos(torch.arange(pos, pos + s, device=idx.device))
            for i, block in enumerate(self.blocks):
                x = block(x, caches[i] if caches is not None else None, pos)
            x = self.ln(x[:, -1:] if last_only else x)
            return x @ self.tok.weight.t()  # tied LM head

    return GPT().to(device=device, dtype=dtype)


def _tokens(torch, spec, batch, length, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    return torch.randint(0, spec.vocab_size, (batch, length), generator=g).to(device)


def measure_training(torch, spec, cfg, device, dtype, clock):
    """Time one training step: forward, cross-entropy, backward, fused AdamW."""
    model = build_gpt(torch, spec, device, dtype)
    # the fused AdamW kernel updates each parameter in one pass, as the model's optimizer
    # operator assumes (ops.optimizer_op); the unfused path makes several passes
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    idx = _tokens(torch, spec, cfg["batch"], cfg["seq_len"] + 1, device)
    x, y = idx[:, :-1], idx[:, 1:]

    def step():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _timed(step, clock)


def _caches(torch, spec, batch, length, device, dtype):
    hd = spec.hidden_size // spec.num_heads
    shape = (batch, spec.num_heads, length, hd)
    return [(torch.empty(shape, device=device, dtype=dtype),
             torch.empty(shape, device=device, dtype=dtype)) for _ in range(spec.num_layers)]


def measure_prefill(torch, spec, cfg, device, dtype, clock):
    """Time the prompt's forward pass, writing the KV cache, logits of the last token only."""
    model = build_gpt(torch, spec, device, dtype).eval()
    idx = _tokens(torch, spec, cfg["batch"], cfg["prompt_len"], device)
    caches = _caches(torch, spec, cfg["batch"], cfg["prompt_len"], device, dtype)
    with torch.inference_mode():
        return _timed(lambda: model(idx, caches, 0, last_only=True), clock)


def measure_decode(torch, spec, cfg, device, dtype, clock):
    """Time the whole KV-cached generation of ``output_len`` tokens after the prompt; the
    median over repetitions divided by the tokens is the measured TPOT."""
    model = build_gpt(torch, spec, device, dtype).eval()
    b, p, o = cfg["batch"], cfg["prompt_len"], cfg["output_len"]
    idx = _tokens(torch, spec, b, p, device)
    caches = _caches(torch, spec, b, p + o, device, dtype)
    with torch.inference_mode():
        first = model(idx, caches, 0, last_only=True).argmax(-1)

        def generate():
            tok = first
            for t in range(o):
                tok = model(tok, caches, p + t, last_only=True).argmax(-1)

        m = _timed(generate, clock)
    return m, o


# ---- the same workloads, predicted --------------------------------------------------------------
def host_system(profile: CalibrationProfile) -> System:
    """One device, no fabric: the calibrated device (or the measured host stand-in)."""
    from ..calibrate.fit import host_device

    device = host_device(profile)
    local = InterconnectSpec(id="none", kind="pcie", name="no interconnect (one device)",
                             bandwidth_gbps=1.0, sources=[{"title": "single device: unused",
                                                           "url": "local://none"}])
    return System(device=device, num_gpus=1, gpus_per_node=1, intra=local, inter=None,
                  nics_per_node=0, host_link=None, node=None)


def predict(w: Workloads, profile: CalibrationProfile) -> dict[str, float]:
    """The same three workloads predicted by the core (``training_step``, ``inference``) on
    one device with ``profile``: training step, prefill and TPOT in seconds."""
    system = host_system(profile)
    t = w.training
    plan = TrainPlan(tp=1, pp=1, dp=1, cp=1, ep=1, etp=1, vp=1, micro_batch=t["batch"],
                     seq_len=t["seq_len"], global_batch=t["batch"], precision=w.dtype,
                     recompute="none", optimizer="adamw", flash_attention=True,
                     master_weights=w.dtype != "fp32", grad_dtype=w.dtype)
    step = float(training_step(w.model, system, plan, profile).step_time)

    def infer(cfg, output_len):
        ip = InferPlan(tp=1, pp=1, replicas=1, batch=cfg["batch"], prompt_len=cfg["prompt_len"],
                       output_len=output_len, weight_dtype=w.dtype, activation_dtype=w.dtype,
                       kv_dtype=w.dtype)
        return inference(w.model, system, ip, profile)

    prefill = float(infer(w.prefill, 1).prefill.time)
    tpot = float(infer(w.decode, w.decode["output_len"]).tpot)
    return {"training_step_s": step, "prefill_s": prefill, "tpot_s": tpot}


# ---- the loop -----------------------------------------------------------------------------------
def run(device: str, profile: CalibrationProfile) -> dict:
    """Measure and predict the workloads of ``device``: cases with APE, median and max APE."""
    torch = import_torch()
    if device == "cuda" and not torch.cuda.is_available():
        raise PerfModelError("--measure cuda: no CUDA device is visible to PyTorch")
    w = load_workloads(device)
    dtype = getattr(torch, TORCH_DTYPES[w.dtype])
    dev = "cuda" if device == "cuda" else "cpu"
    clock = make_clock(torch, dev)
    torch.manual_seed(0)
    train = measure_training(torch, w.model, w.training, dev, dtype, clock)
    prefill = measure_prefill(torch, w.model, w.prefill, dev, dtype, clock)
    decode, tokens = measure_decode(torch, w.model, w.decode, dev, dtype, clock)
    measured = {"training_step_s": train, "prefill_s": prefill, "tpot_s": decode}
    scale = {"training_step_s": 1.0, "prefill_s": 1.0, "tpot_s": 1.0 / tokens}
    predicted = predict(w, profile)
    described = {
        "training_step_s": f"training step (fwd+bwd+AdamW), batch {w.training['batch']} x "
                           f"{w.training['seq_len']}",
        "prefill_s": f"prefill, batch {w.prefill['batch']} x {w.prefill['prompt_len']}",
        "tpot_s": f"decode per token, batch {w.decode['batch']}, context "
                  f"{w.decode['prompt_len']}+{w.decode['output_len']}",
    }
    cases = []
    for metric, m in measured.items():
        value = m.median_s * scale[metric]
        pred = predicted[metric]
        cases.append({"id": f"measured-{device}-{metric.removesuffix('_s')}", "metric": metric,
                      "workload": described[metric], "predicted": pred, "measured": value,
                      "ape": abs(pred - value) / value,
                      "measured_p10": m.p10_s * scale[metric],
                      "measured_p90": m.p90_s * scale[metric], "repetitions": m.n})
    apes = [c["ape"] for c in cases]
    return {"cases": cases, "median_ape": float(np.median(apes)), "max_ape": float(max(apes)),
            "device": device, "model": w.model.id, "dtype": w.dtype,
            "threads": torch.get_num_threads() if dev == "cpu" else None,
            "calibration": profile.summary()}


def _default_profile_path(device: str) -> Path:
    """Where `perfmodel calibrate --device DEVICE` writes its profile by default."""
    from ..calibrate.cli import default_out
    from ..calibrate.device_info import gpu_facts

    device_id = gpu_facts().get("device_id") if device == "cuda" else None
    return default_out(device_id, device)


def resolve_profile(args: argparse.Namespace) -> CalibrationProfile:
    """--calibration FILE, else this device's measured profile, calibrating it first (quick)
    when it does not exist yet."""
    path = Path(args.calibration) if args.calibration else _default_profile_path(args.measure)
    if not path.is_file():
        if args.calibration:
            raise PerfModelError(f"--calibration: {path} not found")
        print(f"perfmodel validate: no measured profile at {path}; running `perfmodel "
              f"calibrate --device {args.measure} --quick` first", file=sys.stderr)
        from ..calibrate.cli import run_cli as calibrate

        calibrate(argparse.Namespace(device=args.measure, quick=True, out=str(path),
                                     report=None, only="gemm,memory,attention,elementwise,"
                                     "launch", reference=None))
    return load_profile(path)


def render(result: dict) -> str:
    """A plain-text table of ``run``'s result."""
    from ..report import seconds, table

    rows = [(c["id"], c["workload"], seconds(c["predicted"]), seconds(c["measured"]),
             f"{100 * c['ape']:.1f}%") for c in result["cases"]]
    head = (f"measured on {result['device']} ({result['model']}, {result['dtype']}"
            + (f", {result['threads']} threads" if result.get("threads") else "") + "), "
            f"predicted with {result['calibration']['label']} profile "
            f"{result['calibration']['id']}")
    return "\n".join([head, table(rows, header=("case", "workload", "predicted", "measured",
                                                "APE")),
                      f"median APE {100 * result['median_ape']:.1f}%, "
                      f"max APE {100 * result['max_ape']:.1f}%"])


def run_cli(args: argparse.Namespace) -> int:
    """``perfmodel validate --measure cpu|cuda [--calibration FILE] [--json]``."""
    if args.measure == "cuda" and not import_torch().cuda.is_available():
        raise PerfModelError("--measure cuda: torch.cuda.is_available() is False (no GPU or a "
                             "CPU-only torch build); use --measure cpu")
    profile = resolve_profile(args)
    result = run(args.measure, profile)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        print(render(result))
    return 0 if all(math.isfinite(c["ape"]) for c in result["cases"]) else 1
