"""Plain-text summary of a serving Prediction (percentiles, throughput, SLOs, KV, cost)."""

from __future__ import annotations

from ..prediction import Prediction
from ..textfmt import seconds, table, with_bands
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
    lim = dep.get("request_limit")
    if lim:  # a KV pool below max_model_len: the engine's cap on a request (serving/limits.py)
        out[-1:-1] = [f"request limit: {lim['engine']} caps a request at {lim['limit_name']} = "
                      f"{lim['capped_len']:,} tokens (KV pool {lim['kv_pool_tokens']:,} < "
                      f"max_model_len {lim['max_model_len']:,}): prompts over "
                      f"{lim['max_prompt_tokens']:,} tokens refused "
                      f"({lim['refused_requests']:,}), outputs cut to prompt + output <= "
                      f"{lim['max_request_tokens']:,} ({lim['truncated_requests']:,})"]
    if s.get("benchmark"):  # reads like `vllm bench serve`; the simulator's extras follow
        out += [render_benchmark(s["benchmark"]), ""]
    def sec(x):
        return "-" if x is None else seconds(x)

    bands = getattr(p, "serving_ranges", None) or {}  # uncertainty.serving_ranges
    rows = []
    path = s.get("request_path_s") or {}
    shown = (("TTFT", "ttft_s", "ttft"), ("TPOT", "tpot_s", "tpot"),
             ("E2E", "e2e_s", "e2e"), ("time between tokens", "tbt_s", "itl"),
             *((("request path (before the engine core)", "request_path_s", None),)
               if any(path.get(f"p{q}") for q in (50, 90, 99)) else ()),
             ("queueing (at the engine core)", "queue_s", None))
    for name, key, band in shown:
        rows.append((name, *(sec(s[key][f"p{q}"]) for q in (50, 90, 99))))
        ends = [bands.get(f"{band}_p{q}_s") for q in (50, 90, 99)] if band else []
        if any(ends):  # the 80 % band of each percentile, on the row below it
            rows.append(("  80 % range", *(f"{sec(b[0])} - {sec(b[1])}" if b else "-"
                                           for b in ends)))
    out.append(table(rows, header=("latency (simulated requests)", "p50", "p90", "p99")))
    if path.get("tokenizer_proxy"):  # engines/tokenizers.yaml default
        out.append(f"  request path: tokenising timed with the {path['tokenizer']} tokenizer's "
                   "measured cost, a proxy (this model's own tokenizer is not measured: "
                   "engines/tokenizers.yaml)")
    if path.get("tokenize_extrapolated_requests"):
        out.append(f"  request path: {path['tokenize_extrapolated_requests']} prompt(s) longer "
                   f"than the {path['tokenize_measured_tokens']:,} tokens the tokenizer's cost was "
                   "measured to: extrapolated at that point's mean per-token rate "
                   "(a lower bound when the cost per token grows with length)")
    t = s["throughput"]
    slo = s["slo"]
    out.append("")
    head = with_bands([("output tokens/s", f"{t['output_tokens_per_s']:,.1f}"),
                       *_request_rate_rows(wl, t)], bands, _BANDED)
    head += [("goodput (req/s within SLOs)", f"{slo['goodput_rps']:.2f}"),
             ("SLO attainment", f"{100 * slo['attainment']:.1f}%"),
             ("KV cache utilisation (mean / peak)",
              f"{100 * s['kv_cache']['mean_utilization']:.1f}% / "
              f"{100 * s['kv_cache']['peak_utilization']:.1f}%"),
             ("preemptions", str(s["preemptions"])), *_zero_load_rows(s)]
    if s.get("cost"):
        head.append(("USD per million output tokens",
                     f"{s['cost']['usd_per_million_output_tokens']:.3f}"))
    if s.get("energy", {}).get("joules_per_output_token") is not None:
        head.append(("J per output token", f"{s['energy']['joules_per_output_token']:.3f}"))
    out.append(table(head))
    if slo["checks"]:
        out.append("")
        out.append(table([(k, seconds(c["value_s"]), _band_cell(bands.get(k)),
                           seconds(c["bound_s"]), slo_status(c, bands.get(k)))
                          for k, c in slo["checks"].items()],
                         header=("SLO", "value", "80 % range", "bound", "")))
    return "\n".join(out)


def _zero_load_rows(s: dict) -> list[tuple[str, str]]:
    """``serving.zero_load``: one request alone on the idle deployment (deploy.zero_load: the
    engine's request path, its prefill, then its decode steps with nothing else running), the
    floor the simulated latencies above sit on; its TTFT includes the request path, as the
    simulated TTFT does."""
    z = s.get("zero_load") or {}
    if z.get("ttft_s") is None:
        return []
    tpot = "-" if z.get("tpot_s") is None else seconds(z["tpot_s"])
    path = (f" (TTFT incl. {seconds(z['request_path_s'])} request path)"
            if z.get("request_path_s") else "")
    return [("zero load, one request alone (TTFT / TPOT)",
             f"{seconds(z['ttft_s'])} / {tpot}{path}")]


def _request_rate_rows(wl: dict, t: dict) -> list[tuple[str, str]]:
    """The request rate. An open loop: served / offered (the arrivals' own rate). A closed
    loop has no offered rate (each client sends its next request when the last one ends):
    its clients (the concurrency it holds) and the served rate; the mean number of requests
    in flight, Little's law's requests/s x mean E2E, is the block's "Concurrency" line."""
    if wl.get("concurrency"):
        return [("requests/s (served)", f"{t['requests_per_s']:.2f}"),
                ("closed loop (concurrency)", f"{wl['concurrency']} clients")]
    return [("requests/s (served / offered)",
             f"{t['requests_per_s']:.2f} / {t['offered_requests_per_s']:.2f}")]


# head rows with a band in ``Prediction.serving_ranges`` (the served requests/s is banded)
_BANDED = {"output tokens/s": ("output_tokens_per_s", lambda x: f"{x:,.1f}"),
           "requests/s (served / offered)": ("requests_per_s", lambda x: f"{x:.2f}"),
           "requests/s (served)": ("requests_per_s", lambda x: f"{x:.2f}")}


def _band_cell(band) -> str:
    return f"{seconds(band[0])} - {seconds(band[1])}" if band else "-"


def slo_status(check: dict, band) -> str:
    """"met", "MISSED", or "met, may miss" when the value meets the bound but the upper end
    of its 80 % band does not (as plan-serving flags a row: capacity.may_miss_slo)."""
    if not check["met"]:
        return "MISSED"
    if band and band[1] > check["bound_s"]:
        return "met, may miss (band)"
    return "met"


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
