"""Training: one training step of a scenario — step time, throughput, MFU, memory, where
the time goes, and the roofline of its operators."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import forms
import prediction_view

P = "tr_"
DEFAULTS = {**forms.system_defaults(P, 8), **forms.training_defaults(P)}

prediction_view.page(P, DEFAULTS, "Training step", "Training scenario", forms.training_form)
