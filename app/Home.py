"""perfmodel what-if dashboard (``perfmodel dashboard`` = ``streamlit run app/Home.py``).

The router of a multipage app: each page is a small script in app/views/ over the public
API; shared widgets live in app/forms.py, shared plumbing in app/common.py, figures in
app/charts*.py. No modelling happens here.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import streamlit as st  # noqa: E402
from common import style  # noqa: E402

VIEWS = HERE / "views"
PAGES = [  # (file, title, icon, url path); the first is the default page ("/")
    ("start.py", "Start", ":material/home:", "start"),
    ("training.py", "Training", ":material/model_training:", "training"),
    ("inference.py", "Inference", ":material/bolt:", "inference"),
    ("serving.py", "Serving", ":material/dns:", "serving"),
    ("compare.py", "Compare", ":material/compare_arrows:", "compare"),
    ("sweep.py", "Sweep", ":material/show_chart:", "sweep"),
    ("plans.py", "Plan search", ":material/travel_explore:", "plans"),
    ("calibration.py", "Calibration", ":material/tune:", "calibration"),
    ("validation.py", "Validation", ":material/fact_check:", "validation"),
]


def main() -> None:
    st.set_page_config(page_title="perfmodel · what-if", page_icon=":material/speed:",
                       layout="wide")
    pages = [st.Page(str(VIEWS / f), title=t, icon=i, url_path=u, default=n == 0)
             for n, (f, t, i, u) in enumerate(PAGES) if (VIEWS / f).exists()]
    style()
    st.navigation(pages).run()


main()
