"""Validation: the published end-to-end measurements against perfmodel's predictions,
predicted vs measured with ±10 / 25 % bands, filtered by kind, source, framework or engine,
metric and device, with each case's citation and assumptions.

The page opens on the last `perfmodel validate` report (validation/report.json); predicting
every case takes tens of seconds, so the shown cases are re-predicted on request."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import backend
import charts_quality
import streamlit as st
from common import ERRORS, csv_button, metric_cards, plain, show_error, sync_url, url_state

FILTERS = {"kind": "Kind", "source": "Source", "stack": "Framework / engine",
           "metric": "Metric", "device": "Device"}
DEFAULTS = {**{f"va_{k}": [] for k in FILTERS}, "va_colour": "source", "va_case": ""}
ORIGIN = {"report": "last report", "now": "predicted now", "new": "not predicted yet"}


def predict_shown(ids: list[str]) -> None:
    """Predict ``ids`` now, with a progress bar; results replace the report's rows."""
    live = st.session_state.setdefault("va_live", {})
    bar = st.progress(0.0, text=f"Predicting {len(ids)} cases…")
    for i, case_id in enumerate(ids):
        live[case_id] = backend.predict_case(case_id)
        bar.progress((i + 1) / len(ids), text=f"Predicted {i + 1} of {len(ids)} cases")
    bar.empty()


url_state(DEFAULTS)
st.title("Validation")
try:
    with st.spinner("Loading the published cases…", show_time=True):
        base, meta = backend.validation_rows()
        details = backend.validation_cases()
except ERRORS as err:
    show_error(err, "Validation cannot run")
    st.stop()
live = st.session_state.get("va_live", {})
cases = [{**live.get(c["id"], c), "stack": details.get(c["id"], {}).get("stack")}
         for c in base]
with st.sidebar:
    st.header("Filter")
    chosen = {}
    for field, label in FILTERS.items():
        options = sorted({str(c.get(field)) for c in cases if c.get(field) is not None})
        st.session_state[f"va_{field}"] = [v for v in st.session_state[f"va_{field}"]
                                           if v in options]
        chosen[field] = st.multiselect(label, options, key=f"va_{field}", placeholder="all")
    colour = st.selectbox("Colour by", list(FILTERS), key="va_colour",
                          format_func=lambda f: FILTERS.get(f, f))
sync_url(DEFAULTS, DEFAULTS)

shown = [c for c in cases if all(not v or str(c.get(f)) in v for f, v in chosen.items())]
ok = [c for c in shown if c["status"] == "ok"]
apes = sorted(c["ape"] for c in ok)
new = sum(c.get("origin") == "new" for c in shown)
st.caption(f"Predictions come from the last `perfmodel validate` report (perfmodel "
           f"{meta['version']}, {meta['count']} cases) unless predicted now"
           + (f"; {new} shown cases were added since and have no prediction yet" if new else "")
           + ".")
if st.button(f"Predict the {len(shown)} shown case{'s' * (len(shown) != 1)} now", key="va_run",
             icon=":material/refresh:", disabled=not shown,
             help="each case takes up to a few seconds; filter first to predict fewer"):
    predict_shown([c["id"] for c in shown])
    st.rerun()
metric_cards([
    ("Cases", f"{len(ok)} of {len(shown)}",
     f"{sum(c['status'] == 'error' for c in shown)} could not be predicted, {new} not yet"),
    ("Median APE", f"{100 * statistics.median(apes):.1f}%" if apes else "—",
     "absolute percentage error |predicted − measured| / measured"),
    ("Within ±10 % / ±25 %",
     f"{sum(a <= 0.10 for a in apes)} / {sum(a <= 0.25 for a in apes)}" if apes else "—",
     "cases inside each band"),
])
if not ok:
    st.error("**No predicted case matches these filters**: clear a filter, or predict the "
             "shown cases.", icon=":material/block:")
    st.stop()
st.plotly_chart(charts_quality.validation_figure(ok, colour), key="va_chart", width="stretch")
st.caption(plain(meta.get("note", "")))
rows = [{"id": c["id"], "source": c["source"], "metric": c["metric"], "unit": c["unit"],
         "measured": c["measured"], "predicted": c["predicted"],
         "APE %": None if c["ape"] is None else 100 * c["ape"], "device": c.get("device"),
         "GPUs": c.get("num_gpus"), "model": c.get("model"), "stack": c.get("stack"),
         "from": ORIGIN.get(c.get("origin"), ""), "status": c["status"],
         "error": c.get("error")} for c in shown]
st.dataframe(rows, hide_index=True, width="stretch",
             column_config={"APE %": st.column_config.NumberColumn(format="%.1f")})
csv_button(rows, "validation-cases", key="va_csv", label="Cases CSV")

st.subheader("One case: its source and assumptions")
ids = [c["id"] for c in shown]
if st.session_state["va_case"] not in ids:
    st.session_state["va_case"] = ids[0]
case_id = st.selectbox("Case", ids, key="va_case")
case = next(c for c in shown if c["id"] == case_id)
info = details.get(case_id, {})
src = info.get("source", {})
if case["status"] == "ok":
    st.markdown(f"**{plain(case['metric'])}**: measured {case['measured_as_printed']}, "
                f"predicted {case['predicted']:.4g} {case['unit']} "
                f"(APE {100 * case['ape']:.1f}%, {ORIGIN.get(case.get('origin'), '')})")
else:
    st.warning(f"Not predicted: {plain(case.get('error') or ORIGIN['new'])}",
               icon=":material/warning:")
st.markdown(f"**Source:** {plain(src.get('title', case.get('citation', '')))}"
            + (f" — [{src['url']}]({src['url']})" if src.get("url") else ""))
if src.get("location"):
    st.caption(plain(src["location"]))
for a in info.get("assumptions", []):
    st.markdown(f"- {plain(a)}")
for w in case.get("warnings", []):
    st.caption(f"warning: {plain(w)}")
