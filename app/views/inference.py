"""Inference: one batch of requests — TTFT, TPOT, throughput, memory and KV capacity, where
the time goes in prefill and decode, and the roofline of its operators."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import forms
import prediction_view

P = "in_"
DEFAULTS = {**forms.system_defaults(P, 1), **forms.inference_defaults(P)}

prediction_view.page(P, DEFAULTS, "Inference request", "Inference scenario", forms.inference_form)
