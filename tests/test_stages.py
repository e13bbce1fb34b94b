"""What one GPU holds under TP / PP / EP, by hand count (Narayanan et al. 2021 Sec. 2)."""

import numpy as np
import pytest

from perfmodel.parameters import param_counts
from perfmodel.pipeline import layers_on_largest_stage
from perfmodel.specs.registry import get_model
from perfmodel.stages import stage_params

L7 = get_model("llama-2-7b")


def test_stage_params_hand_count():
    """Llama-2-7B, TP 2, PP 4: the first stage holds 8 layers of (4h^2 + 3hf)/2 + 2h norm
    weights, plus half the word embedding: 8 * 101,195,776 + 65,536,000 = 875,102,208."""
    sp = stage_params(param_counts(L7), 2, 4)
    assert sp.first == 875_102_208
    assert sp.last == 875_102_208 + 4096  # the final RMSNorm; the untied head is the same size


def test_uneven_pipeline_largest_stage():
    """126 layers over 8 stages: the largest stage holds ceil(126 / 8) = 16 layers; with
    2 virtual chunks, ceil(126 / 16) * 2 = 16."""
    assert layers_on_largest_stage(126, 8, 1, True) == 16
    assert layers_on_largest_stage(126, 8, 2, True) == 16
    assert layers_on_largest_stage(128, 8, 1, False) == 16
    pc = param_counts(get_model("llama-3.1-405b"))
    sp = stage_params(pc, 8, 8, layers=16)
    assert sp.dense_first - sp.dense_last == pytest.approx(
        pc.word_embedding / 8 - pc.lm_head / 8 - pc.final_norm)
    assert np.isclose(float(sp.first), 16 * (pc.attention / 8 + pc.layer_norms
                                             + pc.dense_mlp / 8) + pc.word_embedding / 8)

