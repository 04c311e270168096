"""Dice loss as CA-Net, SASSNet and UA-MT define it (one ratio over the whole batch)."""

from __future__ import annotations

import torch
from torch import Tensor

from canet.errors import CanetError

#: Smoothing term added to numerator and denominator.
DICE_SMOOTH = 1e-5


def dice_loss(probs: Tensor, target: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """Soft Dice loss ``1 - (2 sum(p y) + s) / (sum(p^2) + sum(y^2) + s)``.

    The sums run over every element (batch included), as in the original code,
    so the result is one scalar for the whole batch.

    Args:
        probs: probabilities, any shape (e.g. ``B x X x Y x Z``).
        target: ground truth of the same shape (bool, int or float; cast to float).
        smooth: ``s`` above (``1e-5``).

    Returns:
        A 0-d tensor in ``[0, 1]`` for probabilities in ``[0, 1]``.

    Raises:
        CanetError: the shapes differ.
    """
    if probs.shape != target.shape:
        raise CanetError(
            f"dice_loss needs equal shapes, got {tuple(probs.shape)} and {tuple(target.shape)}"
        )
    p = probs.float()
    y = target.float()
    intersect = torch.sum(p * y)
    denom = torch.sum(p * p) + torch.sum(y * y)
    return 1.0 - (2.0 * intersect + smooth) / (denom + smooth)


def multiclass_dice_loss(probs: Tensor, label: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """Mean :func:`dice_loss` over the foreground classes of a softmax output.

    Args:
        probs: ``B x K x X x Y x Z`` softmax probabilities (``K >= 2``, channel 0
            is the background).
        label: ``B x X x Y x Z`` integer labels in ``[0, K)``.

    Returns:
        A 0-d tensor: the mean over classes ``1 .. K-1``.
    """
    k = probs.shape[1]
    losses = [dice_loss(probs[:, c], label == c, smooth) for c in range(1, k)]
    return torch.stack(losses).mean()
