"""Helpers of the dashboard tests: read a metric card (AppTest), import a module of app/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app"


def app_module(name: str):
    """The dashboard's module ``app/<name>.py``, imported as the pages import it (app/ on the
    path only while importing)."""
    sys.path.insert(0, str(APP))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(APP))


def metric_card(at: AppTest, label: str) -> tuple[str, str]:
    """(value, the line under it) of the metric card ``label``."""
    card = next((m for m in at.metric if m.label == label), None)
    assert card is not None, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return card.value, card.proto.delta
