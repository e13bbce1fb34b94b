"""Helpers of the dashboard page tests (AppTest) that read a metric card."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def metric_card(at: AppTest, label: str) -> tuple[str, str]:
    """(value, the line under it) of the metric card ``label``."""
    card = next((m for m in at.metric if m.label == label), None)
    assert card is not None, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return card.value, card.proto.delta
