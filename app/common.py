"""Shared plumbing of the dashboard pages: importing perfmodel, cached predictions, one-line
errors, downloads, and a page's state mirrored in the URL's query parameters.

Every page is a small script under app/views/ that builds a scenario mapping with
app/forms.py, asks the public API (``perfmodel``) for an answer and draws it with app/charts*.py.
No modelling happens in app/.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling modules (AppTest and `streamlit run` of a view)
    sys.path.insert(0, str(HERE))
try:
    import perfmodel as pm
except ModuleNotFoundError:  # a checkout run without installing: the package is next door
    sys.path.insert(0, str(HERE.parent))
    import perfmodel as pm

import streamlit as st  # noqa: E402
import yaml  # noqa: E402

from perfmodel.textfmt import sig3  # noqa: E402

ERRORS = (pm.PerfModelError, ValueError)


# --------------------------------------------------------------------------- predictions
@st.cache_data(show_spinner=False, max_entries=512)
def predict(scenario: dict) -> pm.Prediction:
    """One prediction per distinct scenario mapping (SpecErrors are raised, not cached)."""
    return pm.predict(pm.as_scenario(scenario))


def try_predict(scenario: dict) -> pm.Prediction | None:
    """The prediction, or None after showing the reason as one line in the page."""
    try:
        with st.spinner("Predicting…", show_time=True):
            return predict(scenario)
    except ERRORS as err:
        show_error(err)
        return None


def plain(text: Any) -> str:
    """``text`` shown literally in Streamlit markdown (``tp*pp*dp`` is not emphasis, ``$``
    not LaTeX); backticks stay, so `commands` still render as code."""
    parts = str(text).split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = "".join("\\" + c if c in "\\*_[]<>#~|$" else c for c in parts[i])
    return "`".join(parts)


def first_line(err: BaseException | str) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def show_error(err: BaseException | str, what: str = "This scenario cannot run") -> None:
    st.error(f"**{what}:** {plain(first_line(err))}", icon=":material/block:")


def show_warnings(warnings: Iterable[str]) -> None:
    """"uncalibrated" is a caveat (info), anything else a problem (warning)."""
    for warning in warnings:
        if warning.startswith("uncalibrated"):
            st.info(plain(warning), icon=":material/info:")
        else:
            st.warning(plain(warning), icon=":material/warning:")


def short_name(device_id: str) -> str:
    """A device's name without its parenthesised form factor ('B200', not 'B200 (HGX/DGX
    B200)'), for metric values that must fit a card."""
    devices = pm.devices()
    return devices[device_id].name.split(" (")[0] if device_id in devices else device_id


def header_line(pred: pm.Prediction) -> None:
    device = pm.get_device(pred.device)
    models = pm.models()
    model_name = models[pred.model].name if pred.model in models else pred.model
    cal = pred.calibration.get("label", pred.calibration.get("id"))
    st.markdown(f"**{pred.kind.capitalize()}** · {plain(model_name)} on "
                f"**{pred.num_gpus} × {plain(device.name)}** · calibration: `{cal}`")


# --------------------------------------------------------------------------- metric cards
def metric_cards(items: list[tuple], per_row: int = 3) -> None:
    """Bordered metric cards (label, value, help[, range]), at most ``per_row`` side by side;
    a range (uncertainty band) is shown under the value, uncoloured."""
    for start in range(0, len(items), per_row):
        row = items[start:start + per_row]
        for col, item in zip(st.columns(per_row), row, strict=False):
            label, value, help_ = item[:3]
            band = item[3] if len(item) > 3 else None
            col.metric(label, value, delta=band or None, delta_color="off", delta_arrow="off",
                       help=help_, border=True)


STYLE = """
<style>
/* readable at 820 px: metric values shrink with the window instead of being cut off */
[data-testid="stMetricValue"] > div { font-size: clamp(1.2rem, 2.3vw, 2.1rem); }
[data-testid="stMetricLabel"] p { white-space: normal; overflow: visible; }
[data-testid="stMetricLabel"] { height: auto; }
</style>
"""


def style() -> None:
    st.html(STYLE)


def ranged(pred: pm.Prediction, metric: str, fmt: Callable[[float], str]) -> str | None:
    """'lo – hi' when the prediction carries an uncertainty band for ``metric``
    (``Prediction.ranges``: metric -> [lo, hi]); None otherwise."""
    ranges = getattr(pred, "ranges", None) or {}
    band = ranges.get(metric) if isinstance(ranges, Mapping) else None
    if not band or len(band) != 2:
        return None
    return f"{fmt(float(band[0]))} – {fmt(float(band[1]))}"


def number(value: float, fmt: str) -> str:
    """``value`` formatted with ``fmt``; "num" is the CLI's style (3 significant digits below
    1,000, whole numbers with thousands separators above)."""
    if fmt == "num":
        return sig3(value)
    return format(value, fmt)


def band_text(band: Any, fmt: str = ".3g", scale: float = 1.0, unit: str = "") -> str | None:
    """'lo–hi unit' of an 80 % band [lo, hi] (an API's ``ranges`` entry), each end times
    ``scale`` formatted with ``fmt`` (``number``); None without a band."""
    if not band or len(band) != 2 or band[0] is None or band[1] is None:
        return None
    lo, hi = (number(float(v) * scale, fmt) for v in band)
    return f"{lo}–{hi}" + (f" {unit}" if unit else "")


def with_band(value: Any, band: Any, fmt: str = ".3g", scale: float = 1.0) -> str | None:
    """'value (lo–hi)': a predicted figure and its 80 % band in one table cell (the value
    alone without a band; None without a value)."""
    if value is None:
        return None
    text = number(float(value) * scale, fmt)
    rng = band_text(band, fmt, scale)
    return f"{text} ({rng})" if rng else text


def banded_rows(rows: list[dict], formats: Mapping[str, str]) -> list[dict]:
    """Table rows as shown: each column ``c`` of ``formats`` that has ``c lo`` / ``c hi``
    (its 80 % band's ends, kept as numbers for the CSV) becomes one text column
    ``c [80 %]`` = 'value (lo–hi)' in the same place; other columns are unchanged."""
    out = []
    for row in rows:
        shown: dict = {}
        for key, value in row.items():
            if key.endswith((" lo", " hi")) and key[:-3] in formats:
                continue
            if key in formats:
                lo, hi = row.get(f"{key} lo"), row.get(f"{key} hi")
                shown[f"{key} [80 %]"] = with_band(
                    value, [lo, hi] if lo is not None and hi is not None else None,
                    formats[key])
            else:
                shown[key] = value
        out.append(shown)
    return out


# --------------------------------------------------------------------------- downloads
def to_csv(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def csv_button(rows: list[Mapping[str, Any]], name: str, key: str,
               label: str = "CSV") -> None:
    st.download_button(label, to_csv(rows), file_name=f"{name}.csv", mime="text/csv",
                       key=key, icon=":material/download:", disabled=not rows)


def scenario_downloads(scenario: dict, pred: pm.Prediction | None, key: str,
                       name: str = "scenario") -> None:
    """Scenario YAML (for `perfmodel predict`) and the prediction as JSON, side by side."""
    c1, c2 = st.columns(2)
    c1.download_button("Scenario YAML", yaml.safe_dump(scenario, sort_keys=False),
                       file_name=f"{name}.yaml", mime="text/yaml", key=f"{key}_yaml",
                       icon=":material/download:")
    body = json.dumps(pred.to_json_dict(), indent=2, default=float) if pred else "{}"
    c2.download_button("Prediction JSON", body, file_name=f"{name}.json",
                       mime="application/json", key=f"{key}_json",
                       icon=":material/download:", disabled=pred is None)


def scenario_file(scenario: dict) -> None:
    with st.expander("Scenario file (for `perfmodel predict`)"):
        st.code(yaml.safe_dump(scenario, sort_keys=False), language="yaml")


# --------------------------------------------------------------------------- URL state
def _coerce(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(float(text))
    if isinstance(default, float):
        return float(text)
    if isinstance(default, list):
        return [t for t in text.split(",") if t]
    return text


def url_state(defaults: Mapping[str, Any]) -> None:
    """Seed ``st.session_state`` for this page's widget keys: from the URL's query parameters
    when they differ from what this session last wrote there (a shared link, or a link from
    another page), else keep the session's value, else the default.

    Widgets are then created with ``key=`` only; ``sync_url`` writes their values back.
    """
    written = st.session_state.setdefault("_url_written", {})
    applied = st.session_state["_url_applied"] = {}
    for key, default in defaults.items():
        if key in st.query_params and st.query_params[key] != written.get(key):
            try:
                st.session_state[key] = applied[key] = _coerce(st.query_params[key], default)
                continue
            except ValueError:
                applied[key] = st.query_params[key]  # not a value of this field: said by sync_url
        if key in st.session_state:
            # re-assigned, so Streamlit keeps the value while its widget is hidden (another
            # arrival process, workload kind or planner) instead of cleaning it up
            st.session_state[key] = st.session_state[key]
        else:
            st.session_state[key] = default


def sync_url(keys: Iterable[str], defaults: Mapping[str, Any] | None = None) -> None:
    """Mirror the current values of ``keys`` into the query parameters (values equal to
    their default are left out, so links stay short)."""
    defaults = defaults or {}
    for key, value in st.session_state.pop("_url_applied", {}).items():
        if key in st.session_state and st.session_state[key] != value:
            st.warning(f"The link's {key.split('_', 1)[-1]} = {str(value)[:60]!r} is not a valid "
                       f"choice here; showing {str(st.session_state[key])[:60]!r}.")
    wanted = {}
    for key in keys:
        if key not in st.session_state:
            continue
        value = st.session_state[key]
        if key in defaults and value == defaults[key]:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        wanted[key] = str(value)
    st.session_state["_url_written"] = wanted
    current = {k: st.query_params[k] for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)


def share_note() -> None:
    st.caption("The address bar holds this view's settings: copy the link to share it.")
