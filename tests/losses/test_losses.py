"""Dice loss, ramp-ups and consistency losses against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from canet.errors import CanetError
from canet.losses import (
    adversarial_weight,
    consistency_mse,
    dice_loss,
    masked_consistency,
    multiclass_dice_loss,
    predictive_entropy,
    sigmoid_rampup,
    uncertainty_threshold,
)


def test_dice_loss_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(2, 6, 5, 4, generator=gen)
    y = torch.rand(2, 6, 5, 4, generator=gen) > 0.5
    expected = 1 - (2 * (p * y).sum() + 1e-5) / ((p * p).sum() + y.float().sum() + 1e-5)
    assert dice_loss(p, y).item() == pytest.approx(expected.item(), rel=1e-6)
    assert dice_loss(y.float(), y).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(y.float(), ~y).item() == pytest.approx(1.0, abs=1e-6)
    # Both empty: (0 + s) / (0 + s) = 1, so the loss is 0.
    assert dice_loss(torch.zeros(3, 3), torch.zeros(3, 3)).item() == pytest.approx(0.0)


def test_dice_loss_gradient_and_errors() -> None:
    p = torch.full((1, 4, 4, 4), 0.5, requires_grad=True)
    y = torch.zeros(1, 4, 4, 4)
    y[0, :2] = 1
    dice_loss(p, y).backward()
    assert p.grad is not None
    # Raising p where y = 1 lowers the loss; raising it where y = 0 raises it.
    assert p.grad[0, 0].max() < 0 and p.grad[0, 3].min() > 0
    with pytest.raises(CanetError, match=r"\(2, 3\)"):
        dice_loss(torch.zeros(2, 3), torch.zeros(3, 2))


def test_multiclass_dice_is_the_foreground_mean() -> None:
    gen = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2, 3, 4, 4, 4, generator=gen), dim=1)
    label = torch.randint(0, 3, (2, 4, 4, 4), generator=gen)
    expected = (dice_loss(probs[:, 1], label == 1) + dice_loss(probs[:, 2], label == 2)) / 2
    assert multiclass_dice_loss(probs, label).item() == pytest.approx(expected.item())


def test_rampups() -> None:
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(40, 40) == 1.0 and sigmoid_rampup(100, 40) == 1.0
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(3, 0) == 1.0
    assert adversarial_weight(0) == pytest.approx(0.01 * math.exp(-5))
    assert adversarial_weight(149) == adversarial_weight(0)
    assert adversarial_weight(150) == pytest.approx(0.01 * math.exp(-5 * (39 / 40) ** 2))
    assert adversarial_weight(150 * 40) == pytest.approx(0.01)
    assert adversarial_weight(10**6) == pytest.approx(0.01)
    weights = [adversarial_weight(i) for i in range(0, 6001, 150)]
    assert weights == sorted(weights)
    assert uncertainty_threshold(0, 6000) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uncertainty_threshold(6000, 6000) == pytest.approx(math.log(2))
    # K classes: the same fraction of the largest entropy, ln K.
    assert uncertainty_threshold(6000, 6000, num_classes=3) == pytest.approx(math.log(3))
    assert uncertainty_threshold(0, 6000, 4) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(4))


def test_consistency_losses() -> None:
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(2, 1, 4, 4, 4, generator=gen, requires_grad=True)
    b = torch.randn(2, 1, 4, 4, 4, generator=gen, requires_grad=True)
    expected = ((torch.sigmoid(a) - torch.sigmoid(b)) ** 2).mean()
    loss = consistency_mse(a, b)
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert a.grad is not None and b.grad is None  # the teacher gets no gradient

    p = torch.tensor([0.5, 0.0, 1.0, 0.2]).view(1, 1, 4, 1, 1)
    ent = predictive_entropy(p)
    assert ent[0, 0, 0, 0, 0].item() == pytest.approx(math.log(2), rel=1e-4)
    assert ent[0, 0, 1].item() == pytest.approx(0.0, abs=1e-4)
    two = torch.cat([1 - p, p], dim=1)
    assert torch.allclose(predictive_entropy(two), ent, atol=1e-5)


def test_masked_consistency_matches_ua_mt() -> None:
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(2, 2, 4, 4, 4, generator=gen)
    t = torch.randn(2, 2, 4, 4, 4, generator=gen)
    unc = torch.rand(2, 1, 4, 4, 4, generator=gen)
    # UA-MT: sum(mask * d) / (2 * sum(mask) + 1e-16) with a one-channel mask.
    d = (torch.softmax(s, 1) - torch.softmax(t, 1)) ** 2
    mask = (unc < 0.5).float()
    expected = torch.sum(mask * d) / (2 * torch.sum(mask) + 1e-16)
    assert masked_consistency(s, t, unc, 0.5).item() == pytest.approx(expected.item(), rel=1e-5)
    # One sigmoid channel equals the equivalent two-channel softmax.
    s1, t1 = s[:, 1:] - s[:, :1], t[:, 1:] - t[:, :1]
    assert masked_consistency(s1, t1, unc, 0.5).item() == pytest.approx(expected.item(), rel=1e-5)
    assert masked_consistency(s, t, unc, 0.0).item() == 0.0
