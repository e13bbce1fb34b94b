"""Speed of the dashboard's pages: each page's load (its first script run, the way a visitor
opening it gets it) and one interaction (a widget changed to a value not seen before, so the
caches do not answer it), run in process with Streamlit's AppTest. Figures to track, not a
pass/fail test; a browser adds its render time on top (tests/test_dashboard_browser.py).

    PYTHONPATH=. python benchmarks/dashboard_speed.py [--repeat 1]

All pages run in one process, in page order, so the first page also pays for importing
Streamlit, plotly and perfmodel (reported separately as "import"). Then views opened from a
link (``LINKED``): a MoE model with expert parallelism and its all-to-all overlap, and a
closed loop measured by a windowed benchmark client.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
# page -> (widget kind, key, new value, what the interaction is)
INTERACTIONS = {
    "start": None,
    "training": ("number_input", "tr_global_batch", 256, "global batch 128 -> 256"),
    "inference": ("number_input", "in_batch", 64, "batch 8 -> 64"),
    "serving": ("number_input", "sv_rate", 12.0, "rate 8 -> 12 req/s (300 requests)"),
    "compare": ("number_input", "c1i_batch", 32, "scenario B batch 8 -> 32"),
    "sweep": ("number_input", "sw_stop", 512, "batch sweep to 512 (10 points)"),
    "plans": ("number_input", "pl_global_batch", 1024, "405B on 4,096 GPUs, batch 1024"),
    "calibration": ("toggle", "ca_points", True, "load the measured points"),
    "validation": ("multiselect", "va_source", ["bloom176b"], "filter one source"),
}
# views opened from a link (query parameters), timed after the pages:
# name -> (page, link, interaction as above)
LINKED = {
    "inference/moe": ("inference", {"in_model": "deepseek-v3", "in_device": "h200-sxm-141gb",
                                    "in_num_gpus": "8", "in_ep": "8", "in_attention_dp": "8",
                                    "in_batch": "256", "in_weight_dtype": "fp8_block",
                                    "in_engine": "sglang"},
                      ("selectbox", "in_moe_overlap", "two_batch",
                       "DeepSeek-V3 EP8 on SGLang, MoE overlap -> two_batch")),
    "serving/client": ("serving", {"sv_process": "closed", "sv_concurrency": "32",
                                   "sv_client": "genai-perf"},
                       ("number_input", "sv_interval_ms", 2000.0,
                        "genai-perf closed loop, 2 s measurement windows")),
}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="interactions per page")
    args = parser.parse_args()
    t0 = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    import perfmodel as pm

    pm.models()
    print(f"import (streamlit, plotly, perfmodel registry): {time.perf_counter() - t0:.2f} s")
    print(f"{'page':14s} {'load s':>7s} {'rerun s':>8s} {'interact s':>11s}  interaction")
    rows = [(name, name, {}, action) for name, action in INTERACTIONS.items()]
    rows += [(name, *linked) for name, linked in LINKED.items()]
    for name, view, params, action in rows:
        # the start page links to the others, so it runs under the router (Home.py)
        path = APP / "Home.py" if view == "start" else APP / "views" / f"{view}.py"
        at = AppTest.from_file(str(path), default_timeout=300)
        for key, value in params.items():
            at.query_params[key] = value
        load = timed(at.run)
        assert not at.exception, [e.value for e in at.exception]
        rerun = timed(at.run)  # the same view again (caches warm)
        times = []
        what = "-"
        if action:
            kind, key, value, what = action
            for i in range(args.repeat):
                widget = getattr(at, kind)(key=key)
                v = value if i == 0 or not isinstance(value, (int, float)) else value + i
                if kind == "selectbox" and i:
                    break  # one new value only
                widget.set_value(v)
                times.append(timed(at.run))
                assert not at.exception, [e.value for e in at.exception]
        inter = f"{min(times):11.2f}" if times else f"{'-':>11s}"
        print(f"{name:14s} {load:7.2f} {rerun:8.2f} {inter}  {what}")


if __name__ == "__main__":
    main()
