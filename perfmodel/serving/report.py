"""Plain-text summary of a serving Prediction (percentiles, throughput, SLOs, KV, cost)."""

from __future__ import annotations

from ..prediction import Prediction
from ..textfmt import seconds, table
from .bench import render_benchmark


def render_serving(p: Prediction) -> str:
    s = p.serving or {}
    if not s:
        return ""
    dep = s["deployment"]
    inst = ", ".join(f"{i['count']} x {i['role']} (tp {i['tp']}, pp {i['pp']}{_layout(i)})"
                     for i in dep["instances"])
    wl = s["workload"]
    load = (f"closed loop of {wl['concurrency']} clients" if wl.get("concurrency")
            else f"{wl['arrival']} at {wl['rate_per_s']:.2f} req/s")
    out = [f"serving: {dep['scheduler']} batching, {inst}; {wl['num_requests']} requests, "
           f"{load}, prompt {wl['prompt_len_mean']:.0f}"
           f" / output {wl['output_len_mean']:.0f} tokens (mean)", ""]
    if s.get("benchmark"):  # reads like `vllm bench serve`; the simulator's extras follow
        out += [render_benchmark(s["benchmark"]), ""]
    def sec(x):
        return "-" if x is None else seconds(x)

    rows = [(name, *(sec(s[key][f"p{q}"]) for q in (50, 90, 99)))
            for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"),
                              ("time between tokens", "tbt_s"), ("queueing", "queue_s"))]
    out.append(table(rows, header=("latency", "p50", "p90", "p99")))
    t = s["throughput"]
    slo = s["slo"]
    out.append("")
    head = [("output tokens/s", f"{t['output_tokens_per_s']:,.1f}"),
            ("requests/s (served / offered)",
             f"{t['requests_per_s']:.2f} / {t['offered_requests_per_s']:.2f}"),
            ("goodput (req/s within SLOs)", f"{slo['goodput_rps']:.2f}"),
            ("SLO attainment", f"{100 * slo['attainment']:.1f}%"),
            ("KV cache utilisation (mean / peak)",
             f"{100 * s['kv_cache']['mean_utilization']:.1f}% / "
             f"{100 * s['kv_cache']['peak_utilization']:.1f}%"),
            ("preemptions", str(s["preemptions"]))]
    if s.get("cost"):
        head.append(("USD per million output tokens",
                     f"{s['cost']['usd_per_million_output_tokens']:.3f}"))
    if s.get("energy", {}).get("joules_per_output_token") is not None:
        head.append(("J per output token", f"{s['energy']['joules_per_output_token']:.3f}"))
    out.append(table(head))
    if slo["checks"]:
        out.append("")
        out.append(table([(k, seconds(c["value_s"]), seconds(c["bound_s"]),
                           "met" if c["met"] else "MISSED") for k, c in slo["checks"].items()],
                         header=("SLO", "value", "bound", "")))
    return "\n".join(out)


def _layout(inst: dict) -> str:
    """", attention DP 8, EP 8" for an instance with an attention-DP / expert layout (and its
    uneven layer split, ", layers 30/31", and ", across 2 nodes" when it spans nodes)."""
    out = ""
    if inst.get("attention_dp", 1) > 1:
        out += f", attention DP {inst['attention_dp']}"
    if inst.get("ep", 1) > 1:
        out += f", EP {inst['ep']}"
    if inst.get("pipeline_layers"):
        out += f", layers {'/'.join(str(n) for n in inst['pipeline_layers'])}"
    if inst.get("nodes_per_instance", 1) > 1:
        out += f", across {inst['nodes_per_instance']} nodes"
    return out
