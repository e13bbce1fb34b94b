"""Peer benchmark (issue 10 item 6): Calculon's plan search beside perfmodel's, on the same plans,
the same model and system, in the same process on this machine.

    CALCULON_PATH=/path/to/calculon python benchmarks/peer_calculon.py [--calculon PATH]
        [--gpus 1024] [--global-batch 2048] [--repeats 5] [--calculon-repeats 1]

Calculon (github.com/calculon-ai/calculon, Apache-2.0; Isaev et al., SC'23) is not on PyPI (the
PyPI name ``calculon`` is an unrelated library), so it is run from a source checkout, never
installed into the project. Its package imports ``psutil`` (for a CLI default), which perfmodel
does not need; a throwaway venv that sees the project's packages and adds psutil:

    git clone https://github.com/calculon-ai/calculon /tmp/calculon
    python3 -m venv /tmp/calc-venv
    echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \\
        > /tmp/calc-venv/lib/python3.11/site-packages/zz_project.pth
    /tmp/calc-venv/bin/pip install psutil
    CALCULON_PATH=/tmp/calculon /tmp/calc-venv/bin/python benchmarks/peer_calculon.py

The common plan space (printed): one GPU count, tp x pp (dp derived) x pipeline interleaving
(vp) x micro-batch x recompute {none, selective (Calculon: attn_only), full} x sequence
parallelism {off (Calculon tensor_par_comm_type 'ar'), on ('rs_ag')} x optimizer sharding {off,
on} (Calculon optimizer_sharding, which divides the optimizer state and also keeps the gradients
in 16 bits divided over dp, ``calculon/llm/layers.py`` ``get_weight_grad``: ZeRO-2's model state,
so perfmodel ZeRO-0 / ZeRO-2; ``--sharding-stage 1`` maps it to ZeRO-1, Megatron's distributed
optimizer, which keeps whole gradients) -- the dimensions both tools express. Every
other Calculon execution field is held at one value: tensor parallelism on its NVLink network
(net 0), pipeline and data parallelism on the scale-out one (net 1: Megatron's rank order
tp-dp-pp with dp >= 16 leaves the node), fused activation, no TP overlap and DP overlap on
(perfmodel's megatron-core defaults: tp_comm_overlap off, overlap_grad_reduce on), no
seq_par_ag_redo, no offload, float16 (its H100 file has no bfloat16 rates; same size and peak).

Calculon's side runs, for each plan of the list, exactly what one iteration of its own search
does (``calculon/llm/optimal_execution.py``, ``OptimalExecution.search``: ``Llm(app)``,
``compile(system, Llm.Execution.from_json(...))``, ``run(system)``, ``get_stats_json``, best by
``sample_rate``; a plan it refuses -- ``Llm.Error``, or an ``Execution`` assertion for a plan its
own enumerators would not generate -- counts as rejected). Its own driver cannot be restricted
to this list (it also enumerates every micro-batch divisor, network assignment, seq_par_ag_redo
and DP overlap) and spreads the list over a process pool; here it runs serially in this
process, so CPU seconds compare like for like. perfmodel's side is ``perfmodel.search.search``
(what ``perfmodel search`` runs) with a ``SearchSpace`` of the same values. Both read their own
files for the model (Calculon ``models/gpt3-175B.json``, perfmodel ``gpt-175b``: the same
Megatron GPT-175B shapes, checked; perfmodel with flash attention off and dropout on, as
Calculon's layer list has them) and the system (Calculon ``systems/h100_80g_nvl8.json``,
perfmodel ``h100-sxm5-80gb``, its default 8-GPU NVLink node and scale-out network).

Printed, never asserted: plans, plans/s (wall and per CPU-second) of each, the ratio, and the
two winners, each re-evaluated by the other tool (its step time and rank there). The models
differ (Calculon's efficiency tables and memory accounting vs perfmodel's calibrated profile;
perfmodel keeps a 5 % memory headroom, Calculon none), so different winners are expected.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

GET_IT = """Calculon is not available: set CALCULON_PATH or pass --calculon PATH (a source checkout of
github.com/calculon-ai/calculon; it is not on PyPI). See this script's docstring for the steps:
    sed -n 1,45p benchmarks/peer_calculon.py
Nothing measured."""

RECOMPUTE = {"none": "none", "selective": "attn_only", "full": "full"}  # perfmodel -> Calculon
DEVICE = "h100-sxm5-80gb"
PM_MODEL = "gpt-175b"
CALC_MODEL = "models/gpt3-175B.json"
CALC_SYSTEM = "systems/h100_80g_nvl8.json"


def plan_space(args) -> dict[str, tuple]:
    return {"tp": (1, 2, 4, 8), "pp": (1, 2, 4, 8), "vp": (1, 2, 3, 4),
            "micro_batch": (1, 2, 4, 8), "recompute": ("none", "selective", "full"),
            "sequence_parallel": (False, True), "sharding": (False, True)}


def calculon_execution(gpus: int, batch: int, p: dict) -> dict:
    """A plan as Calculon's execution JSON (the fields its search fills in)."""
    tp, pp = p["tp"], p["pp"]
    return {
        "num_procs": gpus, "tensor_par": tp, "pipeline_par": pp, "data_par": gpus // (tp * pp),
        "tensor_par_net": 0, "pipeline_par_net": 1 if pp > 1 else 0, "data_par_net": 1,
        "batch_size": batch, "microbatch_size": p["micro_batch"], "datatype": "float16",
        "fused_activation": True, "attention_type": "multihead",
        "activation_recompute": RECOMPUTE[p["recompute"]],
        "pipeline_interleaving": p["vp"], "optimizer_sharding": p["sharding"],
        "tensor_par_comm_type": "rs_ag" if p["sequence_parallel"] else "ar",
        "tensor_par_overlap": "none", "seq_par_ag_redo": False, "data_par_overlap": True,
        "weight_offload": False, "activations_offload": False, "optimizer_offload": False,
        "training": True,
    }


def calculon_search(Llm, app, syst, exes: list[dict]):
    """Calculon's per-execution search step over ``exes``: per plan (sample rate, stats), or
    (None, why refused); and the index of the best."""
    results = []
    best, best_rate = None, -1.0
    for i, exe_json in enumerate(exes):
        try:
            exe = Llm.Execution.from_json(exe_json)
        except AssertionError:  # a plan Calculon's own enumerators never generate
            results.append((None, "execution rules (batch / interleaving)"))
            continue
        try:
            model = Llm(app, logging.Logger("sub"))
            model.compile(syst, exe)
            model.run(syst)
            stats = model.get_stats_json(False)
        except Llm.Error as e:
            results.append((None, "memory" if "Mem tier" in str(e) else "compile rules"))
            continue
        results.append((stats["sample_rate"], stats))
        if stats["sample_rate"] > best_rate:
            best, best_rate = i, stats["sample_rate"]
    return results, best


def timed(fn, repeats: int):
    """Best wall and CPU seconds of ``repeats`` runs, the median CPU seconds, the last output."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), statistics.median(cpus), out


def describe(p: dict, gpus: int, stage: int) -> str:
    dp = gpus // (p["tp"] * p["pp"])
    return (f"tp {p['tp']} pp {p['pp']} dp {dp} vp {p['vp']} mb {p['micro_batch']} "
            f"recompute {p['recompute']} SP {'on' if p['sequence_parallel'] else 'off'} "
            f"{f'ZeRO-{stage}' if p['sharding'] else 'ZeRO-0'}")


def _git_commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("CALCULON_COMMIT", "unknown (not a git checkout; CALCULON_COMMIT unset)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calculon", default=os.environ.get("CALCULON_PATH"),
                    help="Calculon source checkout (default: $CALCULON_PATH)")
    ap.add_argument("--gpus", type=int, default=1024)
    ap.add_argument("--global-batch", type=int, default=2048, help="sequences of 2048 tokens")
    ap.add_argument("--repeats", type=int, default=5, help="perfmodel runs (best is printed)")
    ap.add_argument("--calculon-repeats", type=int, default=1)
    ap.add_argument("--sharding-stage", type=int, choices=(1, 2), default=2,
                    help="perfmodel's ZeRO stage for Calculon's optimizer_sharding (default 2)")
    args = ap.parse_args(argv)

    root = Path(args.calculon).expanduser() if args.calculon else None
    if root is None or not (root / "calculon" / "llm" / "llm.py").is_file():
        print(GET_IT if root is None else f"{root}: not a Calculon checkout (no calculon/llm/llm.py)."
              "\n" + GET_IT)
        return 0
    sys.path.insert(0, str(root))
    try:
        import calculon
        from calculon import System
        from calculon.llm import Llm
    except ModuleNotFoundError as e:
        print(f"Calculon at {root} needs the module {e.name!r} (its package imports psutil); "
              "run this script from a throwaway venv as its docstring shows. Nothing measured.")
        return 0

    import numpy as np

    from perfmodel.search import SearchSpace, base_plan, scalar_plan, search, sweep
    from perfmodel.specs.assemble import resolve_system
    from perfmodel.specs.registry import profile_for
    from perfmodel.specs.scenario import Scenario, SystemConfig, TrainingConfig
    from perfmodel.training import training_step
    from perfmodel.zoo import resolve_model

    gpus, batch, stage = args.gpus, args.global_batch, args.sharding_stage
    app_cfg = calculon.io.read_json_file(str(root / CALC_MODEL))
    sys_cfg = calculon.io.read_json_file(str(root / CALC_SYSTEM))
    app, syst = Llm.Application(app_cfg), System(sys_cfg)

    model = resolve_model(PM_MODEL)
    same = {"layers": (model.num_layers, app.num_blocks), "hidden": (model.hidden_size, app.hidden),
            "ffn": (model.ffn_hidden_size, app.feedforward), "heads": (model.num_heads, app.attn_heads),
            "head dim": (model.hidden_size // model.num_heads, app.attn_size)}
    differ = {k: v for k, v in same.items() if v[0] != v[1]}
    if differ:
        print(f"model shapes differ (perfmodel, Calculon): {differ}; not comparable")
        return 1
    seq = app.seq_size
    sc = Scenario(kind="training", model=model, system=SystemConfig(device=DEVICE, num_gpus=gpus),
                  training=TrainingConfig(seq_len=seq, global_batch=batch, flash_attention=False,
                                          dropout=True))
    system, profile = resolve_system(sc.system), profile_for(DEVICE)

    axes = plan_space(args)
    plans = [dict(zip(axes, v, strict=True)) for v in itertools.product(*axes.values())]
    exes = [calculon_execution(gpus, batch, p) for p in plans]
    space = SearchSpace(tp=axes["tp"], pp=axes["pp"], cp=(1,), vp=axes["vp"],
                        micro_batch=axes["micro_batch"], recompute=axes["recompute"],
                        sequence_parallel=axes["sequence_parallel"],
                        zero_stage=tuple(stage if z else 0 for z in axes["sharding"]))

    print(f"machine: {os.cpu_count()} CPUs, {platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"Calculon {calculon.__version__} at {root}, commit {_git_commit(root)}")
    print(f"model: Megatron GPT-175B ({model.num_layers} layers, hidden {model.hidden_size}, ffn "
          f"{model.ffn_hidden_size}, {model.num_heads} heads), seq {seq}, global batch {batch} "
          f"sequences; perfmodel '{PM_MODEL}' (flash attention off and dropout on, as Calculon's "
          f"layers model them), Calculon '{CALC_MODEL}'")
    net = sys_cfg["networks"]
    print(f"system: {gpus} x H100 SXM5 80 GB; perfmodel '{DEVICE}' ({system.gpus_per_node}/node, "
          f"intra {system.intra_bandwidth / 1e9:.0f} GB/s, inter {system.inter_bandwidth_per_gpu / 1e9:.0f} "
          f"GB/s per GPU); Calculon '{CALC_SYSTEM}' (fp16 matrix {sys_cfg['matrix']['float16']['tflops']} "
          f"TFLOP/s, net0 {net[0]['bandwidth']} GB/s x {net[0]['size']}, net1 {net[1]['bandwidth']} GB/s)")
    print(f"plan space: {len(plans):,} plans = 1 GPU count ({gpus}) x "
          + " x ".join(f"{k} {list(v)}" for k, v in axes.items())
          + " (dp = GPUs / (tp*pp); Calculon: recompute selective = attn_only, SP = rs_ag, "
          f"optimizer sharding = optimizer_sharding, perfmodel ZeRO-{stage})")

    # warm both (imports, caches), then time
    search(sc, system, profile, space, top=1)
    calculon_search(Llm, app, syst, exes[:24])
    pm_wall, pm_cpu, pm_med, pm = timed(lambda: search(sc, system, profile, space, top=1), args.repeats)
    c_wall, c_cpu, c_med, (c_results, c_best) = timed(lambda: calculon_search(Llm, app, syst, exes),
                                               args.calculon_repeats)
    assert pm.evaluated == len(plans), (pm.evaluated, len(plans))
    n = len(plans)
    good = sum(r[0] is not None for r in c_results)
    why = Counter(r[1] for r in c_results if r[0] is None)

    print()
    print(f"  {'':9s} {'plans':>6s} {'accepted':>9s} {'wall s':>9s} {'plans/s':>11s} "
          f"{'CPU s':>9s} {'plans/CPU-s':>12s}")
    print(f"  {'perfmodel':9s} {n:6d} {pm.fitting:9d} {pm_wall:9.4f} {n / pm_wall:11,.0f} "
          f"{pm_cpu:9.4f} {n / pm_cpu:12,.0f}   (best of {args.repeats}; median CPU "
          f"{pm_med:.4f} s)")
    print(f"  {'Calculon':9s} {n:6d} {good:9d} {c_wall:9.2f} {n / c_wall:11,.1f} "
          f"{c_cpu:9.2f} {n / c_cpu:12,.1f}   (best of {args.calculon_repeats}; median CPU "
          f"{c_med:.2f} s)")
    print(f"  ratio Calculon / perfmodel time: {c_wall / pm_wall:,.0f}x wall, "
          f"{c_cpu / pm_cpu:,.0f}x CPU, {c_med / pm_med:,.0f}x median CPU (perfmodel {pm.valid} valid, {pm.fitting} fit with 5 % "
          f"headroom; Calculon {good} ran and fit, {n - good} refused: "
          + ", ".join(f"{k} {v}" for k, v in why.most_common()) + ")")

    # the winners, each re-evaluated by the other tool
    def key(p):
        return tuple(p[k] for k in axes)

    index = {key(p): i for i, p in enumerate(plans)}
    rates = np.array([-np.inf if r[0] is None else r[0] for r in c_results])

    def calculon_rank(i):
        return int((rates > rates[i]).sum()) + 1 if np.isfinite(rates[i]) else None

    sw = sweep(model, system, profile, base_plan(sc), space, [gpus])
    steps = np.concatenate([c.step.ravel() for c in sw.choices])
    limit = (1 - sw.headroom) * system.device.memory_bytes

    def perfmodel_eval(p):
        rec = {"tp": p["tp"], "pp": p["pp"], "cp": 1, "dp": gpus // (p["tp"] * p["pp"]), "ep": 1,
               "vp": p["vp"], "micro_batch": p["micro_batch"], "recompute": p["recompute"],
               "sequence_parallel": p["sequence_parallel"], "zero_stage": stage if p["sharding"] else 0,
               "schedule": "interleaved" if p["vp"] > 1 else "1f1b", "uneven_pipeline": False}
        plan = scalar_plan(base_plan(sc), rec)
        r = training_step(model, system, plan, profile)
        step, mem = float(np.asarray(r.step_time)), float(np.asarray(r.memory_total))
        rank = int((steps < step).sum()) + 1 if mem <= limit else None
        return step, mem, rank

    w = pm.plans[0] if pm.plans else None
    print()
    if w:
        pw = {"tp": w["tp"], "pp": w["pp"], "vp": w["vp"], "micro_batch": w["micro_batch"],
              "recompute": w["recompute"], "sequence_parallel": w["sequence_parallel"],
              "sharding": w["zero_stage"] > 0}
        i = index[key(pw)]
        r = c_results[i]
        there = (f"Calculon: {r[1]['total_time']:.2f} s, {r[1]['proc_mem_tier1_cap_req'] / 2**30:.1f} GiB, "
                 f"rank {calculon_rank(i)} of {good}" if r[0] is not None
                 else f"Calculon refuses it ({r[1]})")
        print(f"  perfmodel's winner: {describe(pw, gpus, stage)}: step {w['step_time_s']:.2f} s, "
              f"{w['memory_per_gpu_bytes'] / 2**30:.1f} GiB, MFU {w['mfu']:.3f}; {there}")
    if c_best is not None:
        pc = plans[c_best]
        stats = c_results[c_best][1]
        step, mem, rank = perfmodel_eval(pc)
        there = (f"perfmodel: {step:.2f} s, {mem / 2**30:.1f} GiB, "
                 + (f"rank {rank} of {pm.fitting}" if rank else "does not fit (5 % headroom)"))
        print(f"  Calculon's winner:  {describe(pc, gpus, stage)}: step {stats['total_time']:.2f} s, "
              f"{stats['proc_mem_tier1_cap_req'] / 2**30:.1f} GiB, total efficiency "
              f"{stats['total_efficiency']:.3f}; {there}")
    print("  (the two models differ -- Calculon's efficiency tables, attention and memory "
          "accounting vs perfmodel's calibrated H100 profile and its 5 % memory headroom -- so "
          "step times and winners need not agree; ranks are among each tool's accepted plans)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
