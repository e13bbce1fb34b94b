"""The serving planner of the Plan search page: the cheapest device, layout and replica count
that serves a request rate within latency SLOs (`perfmodel plan-serving`), the batch cap
(max_num_seqs) it chose and why, 80 % bands on its latencies, and the throughput-vs-
interactivity frontier over device x layout (TP, attention DP, EP, PP) x batch."""

from __future__ import annotations

import backend
import charts_plans
import forms
import streamlit as st
from common import (
    ERRORS,
    band_text,
    banded_rows,
    csv_button,
    metric_cards,
    plain,
    pm,
    short_name,
    show_error,
    with_band,
)

TPS = ["1", "2", "4", "8"]
DEFAULTS = {
    "ps_model": "llama-3-70b", "ps_rate": 20.0, "ps_prompt_len": 1024, "ps_output_len": 256,
    "ps_ttft_p90": 1.0, "ps_tpot_p90": 0.05, "ps_devices": ["h100-sxm5-80gb", "b200"],
    "ps_tps": TPS, "ps_scheduler": "continuous", "ps_num_requests": 300, "ps_max_gpus": 512,
    "ps_engine": "generic", "ps_max_num_seqs": "",
}
# the banded latencies of a candidate (capacity.Candidate.ranges), shown in ms
LATENCIES = (("TTFT p90", "ttft_p90_s", ".0f"), ("TPOT p90", "tpot_p90_s", ".1f"),
             ("E2E p90", "e2e_p90_s", ".0f"))
# the banded throughputs of a candidate (inverse of the E2E band, capped at the offered rate)
RATES = (("out tok/s", "output_tokens_per_s", ".0f"), ("req/s", "requests_per_s", ".2f"))
BANDED = {f"{label} (ms)": fmt for label, _key, fmt in LATENCIES} | {
    label: fmt for label, _key, fmt in RATES}  # table: 'value (lo–hi)'


def extra_replicas(c: dict) -> int | None:
    """On a row sized across its 80 % band (capacity.size_across_band: JSON
    ``sized_across_band``, ``replicas_at_point``): the replicas it adds to the same device / TP
    sized at the point estimate; None on any other row."""
    point = c.get("replicas_at_point")
    if not c.get("sized_across_band") or point is None or not c.get("replicas"):
        return None
    return c["replicas"] - point


def across_band_text(c: dict) -> str:
    """What a row says about its SLOs across the 80 % band, as the CLI's table column does
    (capacity.render_plan): 'may miss SLO', 'yes' or 'yes, +N replica(s)'; '' when it does
    not meet the SLOs."""
    if not c["feasible"]:
        return ""
    if c.get("may_miss_slo"):
        return "may miss SLO"
    extra = extra_replicas(c)
    return "yes" if extra is None else f"yes, +{extra} replica(s)"


def across_band_note(c: dict) -> str:
    """The longer word for the table's 'across band' column: on a row sized across its band,
    the replicas it adds and why; on a row that may miss an SLO, what sizing it across its band
    gave (capacity.Candidate.across_band: replicas and extra USD/h, or why not)."""
    extra = extra_replicas(c)
    if extra is not None:
        return (f"+{extra} replica(s) to meet SLOs across the 80 % band "
                f"({c['replicas_at_point']} meet them at the point estimate)")
    return c.get("across_band") or ""


def per_gpu_rows(candidates: list[dict]) -> dict[str, dict]:
    """Per GPU type, the row the planner's answer rule picks (capacity.PlanResult.best): the
    cheapest priced row meeting every SLO across its 80 % band if that device has one, else
    its cheapest priced row meeting them at the point estimate (candidates come cheapest
    first)."""
    out: dict[str, dict] = {}
    for c in candidates:
        if not (c["feasible"] and c["cost"]):
            continue
        have = out.get(c["device"])
        if have is None or (have.get("may_miss_slo") and not c.get("may_miss_slo")):
            out[c["device"]] = c
    return out


def serve_planner() -> None:
    models, devices = pm.models(), pm.devices()
    with st.sidebar:
        model = st.selectbox("Model", sorted(models), key="ps_model",
                             format_func=lambda i: models[i].name)
        rate = float(st.number_input("Request rate (req/s)", min_value=0.01, step=1.0,
                                     key="ps_rate"))
        c1, c2 = st.columns(2)
        prompt = int(c1.number_input("Prompt tokens", min_value=1, step=128,
                                     key="ps_prompt_len"))
        output = int(c2.number_input("Output tokens", min_value=1, step=64,
                                     key="ps_output_len"))
        ttft = float(c1.number_input("TTFT p90 (s)", min_value=0.0, step=0.1, key="ps_ttft_p90",
                                     format="%.3f"))
        tpot = float(c2.number_input("TPOT p90 (s)", min_value=0.0, step=0.01,
                                     key="ps_tpot_p90", format="%.3f"))
        chosen = st.multiselect("GPUs to consider", sorted(devices), key="ps_devices",
                                format_func=lambda i: devices[i].name)
        tps = st.multiselect("TP degrees", TPS, key="ps_tps")
        scheduler = st.selectbox("Batching", ["continuous", "chunked", "static"],
                                 key="ps_scheduler")
        engines = forms.stack_choices("engine") or ["generic"]
        engine = st.selectbox("Engine", engines, key="ps_engine",
                              help="its KV-cache rule and max_num_seqs default size each "
                                   "replica (`--engine`)")
        seqs = st.text_input("max_num_seqs to try", key="ps_max_num_seqs",
                             placeholder="default: powers of two from 8",
                             help="comma-separated batch caps tried besides the engine's "
                                  "default (`--max-num-seqs`)")
        n_req = int(st.number_input("Requests per simulation", min_value=50, max_value=5000,
                                    step=100, key="ps_num_requests"))
        max_gpus = int(st.number_input("Most GPUs", min_value=1, step=64, key="ps_max_gpus"))
    slo = {k: v for k, v in (("ttft_p90_s", ttft), ("tpot_p90_s", tpot)) if v > 0}
    if not chosen or not tps:
        st.error("**Choose at least one GPU and one TP degree** to plan a deployment.",
                 icon=":material/block:")
        return
    try:
        with st.spinner(f"Sizing {len(chosen) * len(tps)} deployments (simulating each)…",
                        show_time=True):
            result = backend.plan_serving(model, rate, prompt, output, slo, tuple(chosen),
                                          tuple(int(t) for t in tps), scheduler, n_req, max_gpus,
                                          engine, seqs)
    except ERRORS as err:
        show_error(err, "Cannot plan this deployment")
        return
    best = result["best"]
    if best:
        show_best(best, devices, result.get("choice") or "")
    else:
        st.error("**No GPU / TP meets the SLOs** within the GPU limit; relax an SLO or allow "
                 "more GPUs.", icon=":material/block:")
    for w in result["warnings"]:
        st.info(plain(w), icon=":material/info:")
    kinds = (result.get("inputs") or {}).get("profiles") or {}
    if kinds:  # which devices were predicted with a measured profile (as the CLI says)
        measured = [d for d, k in kinds.items() if k == "measured"]
        default = [d for d, k in kinds.items() if k == "default"]
        st.caption(plain("Measured calibration profiles: " + (", ".join(measured) or "none")
                         + ("; uncalibrated: " + ", ".join(default) if default else "") + "."))
    rows = candidate_rows(result["candidates"])
    per_gpu = per_gpu_rows(result["candidates"])
    if per_gpu:
        st.markdown("**Cheapest per GPU type** (meeting the SLOs):\n" + "\n".join(
            f"- **{short_name(g)}**: {c['replicas']} × {layout(c)} = {c['gpus']} GPUs at "
            f"max_num_seqs {c['max_num_seqs']}, {c['cost']['usd_per_hour']:.2f} USD/h, "
            f"{c['cost']['usd_per_million_output_tokens']:.3f} USD per M output tokens"
            + (f" ({plain(across_band_note(c))})" if extra_replicas(c) is not None
               else " (may miss SLO across the 80 % band)" if c.get("may_miss_slo") else "")
            for g, c in per_gpu.items()))
    st.dataframe(banded_rows(rows, BANDED), hide_index=True, width="stretch",
                 key="ps_table",
                 column_config={k: st.column_config.NumberColumn(format="%.2f")
                                for k in ("USD/h", "USD/M out tok", "J/out tok")})
    csv_button(rows, "serving-plan", key="ps_csv", label="Candidates CSV")
    points = [{"GPU": r["GPU"], "tpot": r["TPOT p90 (ms)"], "usd": r["USD/h"],
               "tpot_lo": r["TPOT p90 (ms) lo"], "tpot_hi": r["TPOT p90 (ms) hi"],
               "label": f"{r['layout']} × {r['replicas']}, max_num_seqs {r['max seqs']}"}
              for r in rows if r["feasible"] and r["USD/h"] is not None]
    if points:
        st.plotly_chart(charts_plans.pareto_figure(
            points, "tpot", "usd", "GPU", "TPOT p90 (ms) — interactivity", "USD per hour",
            f"Deployments meeting the SLOs at {rate:g} req/s", text="label"),
            key="ps_pareto_chart", width="stretch")
    frontier(result)


def show_best(best: dict, devices: dict, choice: str = "") -> None:
    """The cheapest deployment: cost, its banded p90 latencies, the max_num_seqs it runs at
    and the planner's one-line why (what binds)."""
    cost = best["cost"] or {}
    m, ranges = best["metrics"] or {}, best.get("ranges") or {}
    cards = [
        # GPUs first (3 replicas of tp 2 are 6 GPUs), the replicas and layout under them
        ("Cheapest", f"{best['gpus']} × {short_name(best['device'])}",
         f"{devices[best['device']].name}: {best['replicas']} replica(s), {layout(best)} per "
         f"replica = {best['gpus']} GPUs", replicas_text(best)),
        ("USD per hour", f"{cost['usd_per_hour']:.2f}" if cost else "—",
         cost.get("price", "no price")),
        ("USD per M output tokens",
         f"{cost['usd_per_million_output_tokens']:.3f}" if cost else "—",
         "at the simulated output tokens/s"),
    ]
    basis = best.get("range_basis") or {}
    for label, key, fmt in LATENCIES[:2]:
        if key in m:
            cards.append((label, f"{m[key] * 1e3:{fmt}} ms",
                          f"simulated p90 over requests; 80 % band under the value: "
                          f"{basis.get(key, 'none')}",
                          band_text(ranges.get(key), fmt, 1e3, "ms")))
    seqs, default = best.get("max_num_seqs"), best.get("max_num_seqs_default")
    if seqs is not None:
        cards.append(("max_num_seqs", f"{seqs:,}",
                      "the engine's batch cap each replica runs at (chosen by the planner: "
                      "fewest replicas, the largest cap on a tie)",
                      "engine default" if seqs == default else f"default {default:,}"))
    if best.get("may_miss_slo"):
        cards.append(("SLOs across the band", "may miss SLO",
                      "the values meet every SLO, but the upper end of the 80 % band of "
                      f"{', '.join(best['may_miss_slo'])} does not", None))
    elif (extra := extra_replicas(best)) is not None:
        cards.append(("SLOs across the band", f"+{extra} replica(s)",
                      f"{best['replicas_at_point']} replica(s) meet every SLO at the point "
                      f"estimate, but the upper end of an 80 % band misses one; {extra} more "
                      "meet every SLO across the band (each bound divided by its band's upper "
                      "end)", f"{best['replicas_at_point']} at the point estimate"))
    metric_cards(cards)
    if best.get("why"):
        st.markdown(f"**Why this deployment:** {plain(best['why'])}")
    if choice:
        st.markdown(f"**SLO bands:** {plain(choice)}")
    st.caption("Ranges under the values and in the table: 80 % bands from the validation "
               "errors of comparable serving cases (docs/uncertainty.md).")


def replicas_text(row: dict) -> str:
    """"3 replicas × tp 2": what a row's GPU count is made of."""
    n = row["replicas"]
    return f"{n} replica{'' if n == 1 else 's'} × {layout(row)}"


def layout(row: dict) -> str:
    """A candidate's or frontier point's instance layout as plan-serving names it (its
    ``layout`` key: "tp 8", "tp 8 ep 8", "tp 1 dp 8 ep 8" with attention DP, " pp 2")."""
    return row.get("layout") or f"tp {row['tp']}"


def candidate_rows(candidates: list[dict]) -> list[dict]:
    """One row per device x layout (cheapest first), numbers as numbers, each banded latency with
    its 80 % band's ends (the CSV)."""
    rows = []
    for c in candidates:
        m, cost, ranges = c["metrics"] or {}, c["cost"] or {}, c.get("ranges") or {}
        row = {"GPU": c["device"], "layout": layout(c),
               # an infeasible row's numbers are empty: the CLI's reason beside them
               # (capacity.render_plan's 'not feasible' / 'not simulated' lines)
               "not feasible": None if c["feasible"] else c["reason"],
               "replicas": c["replicas"] or None,
               "GPUs": c["gpus"] or None, "max seqs": c.get("max_num_seqs")}
        for label, key, _fmt in LATENCIES:
            value = m.get(key) if c["feasible"] else None
            band = ranges.get(key) if value is not None else None
            row[f"{label} (ms)"] = None if value is None else value * 1e3
            row[f"{label} (ms) lo"] = band[0] * 1e3 if band else None
            row[f"{label} (ms) hi"] = band[1] * 1e3 if band else None
        for label, key, _fmt in RATES:
            value = m.get(key) if c["feasible"] else None
            band = ranges.get(key) if value is not None else None
            row[label] = value
            row[f"{label} lo"] = band[0] if band else None
            row[f"{label} hi"] = band[1] if band else None
        energy = c.get("energy") or {}
        row |= {"USD/h": cost.get("usd_per_hour"),
                "USD/M out tok": cost.get("usd_per_million_output_tokens"),
                "J/out tok": energy.get("joules_per_output_token"),
                "default seqs": c.get("max_num_seqs_default"), "feasible": c["feasible"],
                # the SLOs hold at the upper end of every band too (capacity.may_miss_slo);
                # 'yes, +N replica(s)' on a row sized across its band, as the CLI says
                "SLOs across band": across_band_text(c) or None,
                "across band": across_band_note(c) or None}
        row["why"] = c.get("why") or c["reason"] if c["feasible"] else c["reason"]
        rows.append(row)
    return rows


def frontier(result: dict) -> None:
    """Throughput vs interactivity: one replica per device x layout at each batch, the Pareto
    points with their 80 % bands (chart error bars and table ranges)."""
    points = result.get("frontier_points") or []
    if not points:
        return
    st.plotly_chart(charts_plans.frontier_figure(
        points, "Throughput vs interactivity — one replica, 80 % bands"),
        key="ps_frontier_chart", width="stretch")
    rows = []
    for p in points:
        if not p.get("pareto"):
            continue
        ranges = p.get("ranges") or {}
        rows.append({"GPU": p["device"], "layout": layout(p), "batch": p["batch"],
                     "tok/s/user [80 %]": with_band(p["tokens_per_s_per_user"],
                                                    ranges.get("tokens_per_s_per_user"), ".1f"),
                     "tok/s/GPU [80 %]": with_band(p["tokens_per_s_per_gpu"],
                                                   ranges.get("tokens_per_s_per_gpu"), ".0f"),
                     "TPOT ms [80 %]": with_band(p["tpot_s"], ranges.get("tpot_s"), ".1f",
                                                 1e3)})
    with st.expander(f"Frontier points ({len(rows)}, most interactive first)"):
        st.dataframe(rows, hide_index=True, width="stretch", key="ps_frontier_table")
        csv_button(rows, "serving-frontier", key="ps_frontier_csv", label="Frontier CSV")
