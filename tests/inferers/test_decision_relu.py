"""``decision="relu"``: the authors' CA-Net test rule, worked out by hand on two overlapping windows.

Volume 24 x 16 x 16, patch 16^3, reference mode: the x stride (18) is clamped to
the patch (16), so along x the windows start at 0 and 8 (the last one clamped to
the border); along y and z one window. Voxels x < 8 lie in the first window only,
8 <= x < 16 in both, x >= 16 in the second only.

The predictor returns logit ``a`` in the first half (local x < 8) of every
window and ``b`` in the second half. So a voxel gets
x < 8: ``a``; 8 <= x < 16: ``b`` (window 0) and ``a`` (window 1); x >= 16: ``b``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from canet.errors import CanetError
from canet.inferers import predict_volume
from canet.inferers.settings import InferenceSettings

SHAPE = (24, 16, 16)
PATCH = (16, 16, 16)


class HalfWindow(nn.Module):
    """Logit ``a`` where the window's local x < 8, ``b`` elsewhere (one output channel)."""

    def __init__(self, a: float, b: float, channels: int = 1) -> None:
        super().__init__()
        self.a, self.b, self.channels = a, b, channels

    def forward(self, x: Tensor) -> Tensor:
        out = torch.full((x.shape[0], self.channels, *x.shape[2:]), self.b)
        out[:, :, :8] = self.a
        return out


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _predict(model: nn.Module, decision: str) -> tuple[np.ndarray, np.ndarray]:
    return predict_volume(model, np.zeros(SHAPE, np.float32), PATCH, mode="reference", lcc=False,
                          decision=decision, device="cpu")


def test_relu_and_probability_rules_disagree_where_hand_worked_values_say() -> None:
    # a = 0.8, b = 0.1
    # relu:        x<8: 0.8 -> fg;  middle: (0.1 + 0.8)/2 = 0.45 -> bg;  x>=16: 0.1 -> bg
    # probability: x<8: 0.690 -> fg; middle: (0.525 + 0.690)/2 = 0.607 -> fg; x>=16: 0.525 -> fg
    model = HalfWindow(0.8, 0.1)
    mask, values = _predict(model, "relu")
    assert mask[:8].all() and not mask[8:].any()
    np.testing.assert_allclose(values[:8], 0.8, atol=1e-6)
    np.testing.assert_allclose(values[8:16], 0.45, atol=1e-6)
    np.testing.assert_allclose(values[16:], 0.1, atol=1e-6)

    mask, probs = _predict(model, "probability")
    assert mask.all()
    np.testing.assert_allclose(probs[8:16], (_sigmoid(0.1) + _sigmoid(0.8)) / 2, atol=1e-6)


def test_relu_is_averaged_over_windows_not_applied_to_the_averaged_logit() -> None:
    # a = 1.4, b = -0.6 in the overlap: mean of ReLUs = (0 + 1.4)/2 = 0.7 -> fg,
    # while ReLU of the mean logit would be ReLU(0.4) = 0.4 -> bg.
    mask, values = _predict(HalfWindow(1.4, -0.6), "relu")
    np.testing.assert_allclose(values[8:16], 0.7, atol=1e-6)
    assert mask[:16].all() and not mask[16:].any()


def test_relu_rule_is_refused_where_it_has_no_meaning() -> None:
    with pytest.raises(CanetError, match="reference"):
        InferenceSettings(mode="fast", decision="relu")
    with pytest.raises(CanetError, match="decision must be one of"):
        InferenceSettings(mode="reference", decision="sigmoid")
    with pytest.raises(CanetError, match="one-channel"):
        _predict(HalfWindow(1.0, 1.0, channels=2), "relu")


def test_record_names_the_decision() -> None:
    assert InferenceSettings(mode="reference", decision="relu").record()["decision"] == "relu"
    assert InferenceSettings().record()["decision"] == "probability"
