"""Calibration: a profile's fitted efficiency tables against the measured points they were
fitted on, the held-out error of every table, and which devices have measured or reference
profiles (and which fall back to the documented defaults)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import backend
import charts_quality
import streamlit as st
from common import (
    ERRORS,
    csv_button,
    metric_cards,
    plain,
    pm,
    show_error,
    sync_url,
    url_state,
)

SOURCES = {"shipped": "Shipped profile", "upload": "Upload a profile"}
FILES = backend.profile_files()
DEFAULTS = {"ca_source": "shipped", "ca_profile": next(iter(FILES), ""), "ca_points": False,
            "ca_table": "", "ca_log": False}


def pick_profile():
    """(profile, path, uploaded records or None) from the sidebar, or None after an error."""
    with st.sidebar:
        st.header("Profile")
        source = st.radio("Source", list(SOURCES), key="ca_source", format_func=lambda s: SOURCES.get(s, s))
        records = None
        if source == "shipped":
            if not FILES:
                st.error("No profile in calibration/.")
                return None
            path = str(FILES[st.selectbox("Profile", list(FILES), key="ca_profile")])
            records = backend.own_records(path)  # a measured profile's raw points, if kept
        else:
            upload = st.file_uploader("Profile JSON (perfmodel calibrate output)",
                                      type=["json"], key="ca_upload")
            raw = st.file_uploader("Its raw records (optional, .jsonl)", type=["jsonl"],
                                   key="ca_records")
            if upload is None:
                st.info("Upload a profile JSON to inspect it.")
                return None
            path = backend.save_upload(upload.getvalue(), ".json")
            if raw is not None:
                try:
                    records = backend.load_records(raw.getvalue())
                except ValueError as err:
                    show_error(err, "Cannot read the records")
    try:
        return pm.load_profile(path), path, records
    except ERRORS as err:
        show_error(err, "Cannot read this profile")
        return None


url_state(DEFAULTS)
st.title("Calibration profiles")
picked = pick_profile()
sync_url([k for k in DEFAULTS if k != "ca_profile" or st.session_state["ca_source"]
          == "shipped"], DEFAULTS)
if picked is not None:
    profile, path, records = picked
    fit = list(profile.fit_errors)
    worst = max(fit, key=lambda f: f.median_ape) if fit else None
    metric_cards([
        ("Profile", profile.kind, f"{profile.id} · {profile.label} · {len(profile.sources)} "
                                  "sources"),
        ("Device", profile.device or "—", f"created {profile.created or '?'}"),
        ("Tables with held-out errors", str(len(fit)),
         f"worst median: {worst.table} {worst.median_ape:.1%}" if worst else "none"),
    ], per_row=2)
    if profile.notes:
        with st.expander("Notes and sources"):
            st.markdown(plain(profile.notes))
            for s in profile.sources:
                st.markdown(f"- {plain(getattr(s, 'title', s))}"
                            + (f" — {s.url}" if getattr(s, "url", None) else ""))
    rows = [{"table": f.table, "fit points": f.n_fit, "held-out points": f.n_test,
             "median APE %": 100 * f.median_ape, "p90 APE %": 100 * f.p90_ape} for f in fit]
    st.subheader("Held-out errors per table")
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.1f")
                                for c in ("median APE %", "p90 APE %")})
    csv_button(rows, f"{profile.id}-fit-errors", key="ca_fit_csv", label="Fit errors CSV")

    st.subheader("Measured points vs fitted curves")
    can_ref = profile.kind == "reference" and profile.device in backend.reference_devices()
    if records is None and not can_ref:
        st.info("Measured points are shown for the shipped reference profiles (their upstream "
                "tables are in calibration/sources) and for an uploaded profile with its raw "
                "records.")
    elif st.toggle("Load the measured points (takes a few seconds)", key="ca_points"):
        try:
            with st.spinner("Loading and fitting the measured tables…", show_time=True):
                tables = (backend.records_tables(records, profile) if records is not None
                          else backend.reference_tables(profile.device, path))
        except ERRORS as err:
            show_error(err, "Cannot rebuild the tables")
            tables = []
        names = [t.name for t in tables if len(t) > 1]
        if names:
            if st.session_state["ca_table"] not in names:
                st.session_state["ca_table"] = names[0]
            c1, c2 = st.columns([2, 1])
            name = c1.selectbox("Table", names, key="ca_table")
            log_y = c2.checkbox("Log y axis", key="ca_log")
            table = next(t for t in tables if t.name == name)
            points = backend.table_points(table, profile)
            held = next((f for f in fit if f.table == name), None)
            st.caption((f"Held-out median / p90 APE {held.median_ape:.1%} / "
                        f"{held.p90_ape:.1%} ({held.n_test} points kept out of the fit). "
                        if held else "No held-out error recorded for this table. ")
                       + f"{points['n']:,} points; in-sample median |fitted / measured − 1| = "
                       f"{points['ape']:.1%} "
                       "(points the curve was fitted on; its grid nodes may sit on them).")
            st.plotly_chart(charts_quality.calibration_figure(points, name, log_y),
                            key="ca_curve_chart", width="stretch")
            st.plotly_chart(charts_quality.parity_figure(points, name), key="ca_parity_chart",
                            width="stretch")

st.subheader("Which devices have measured profiles")
summary = backend.profile_summary()
st.dataframe(summary, hide_index=True, width="stretch")
csv_button(summary, "device-profiles", key="ca_dev_csv", label="Devices CSV")
st.caption("Predictions use a device's measured profile, else its reference profile, else the "
           "documented default efficiencies (labelled uncalibrated). Measure this machine "
           "with `perfmodel calibrate`.")
