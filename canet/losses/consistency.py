"""Consistency losses of the mean-teacher baselines (MT, UA-MT)."""

from __future__ import annotations

import torch
from torch import Tensor

#: Added inside logarithms (as UA-MT does).
EPS = 1e-6


def probabilities(logits: Tensor) -> Tensor:
    """Sigmoid of a one-channel output, softmax over channels otherwise (``B x C x ...``)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def prob_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Voxel-wise squared difference of the two networks' probabilities.

    Args:
        student_logits, teacher_logits: ``B x C x X x Y x Z`` logits.

    Returns:
        ``B x C x X x Y x Z`` squared differences (not reduced); the teacher
        side carries no gradient.
    """
    return (probabilities(student_logits) - probabilities(teacher_logits).detach()) ** 2


def consistency_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean of :func:`prob_mse`: the mean-teacher consistency loss (0-d tensor)."""
    return prob_mse(student_logits, teacher_logits).mean()


def predictive_entropy(probs: Tensor) -> Tensor:
    """Entropy (nats) of mean predicted probabilities, ``B x 1 x X x Y x Z``.

    One channel is a Bernoulli probability ``p``: ``-(p ln p + (1-p) ln(1-p))``
    (at most ``ln 2``); several channels are a categorical distribution:
    ``-sum_c p_c ln p_c``.
    """
    if probs.shape[1] == 1:
        p = probs
        return -(p * torch.log(p + EPS) + (1 - p) * torch.log(1 - p + EPS))
    return -torch.sum(probs * torch.log(probs + EPS), dim=1, keepdim=True)


def masked_consistency(
    student_logits: Tensor, teacher_logits: Tensor, uncertainty: Tensor, threshold: float
) -> Tensor:
    """UA-MT's uncertainty-masked consistency: the mean squared probability
    difference over the voxels whose teacher entropy is below ``threshold``.

    ``sum(mask * d) / (sum(mask) + 1e-16)`` with ``d`` the voxel-wise probability
    MSE (:func:`prob_mse`) and ``mask = uncertainty < threshold`` broadcast over the
    channels. For UA-MT's two softmax channels this is exactly the original
    ``sum(mask * d) / (2 * sum(mask_1ch) + 1e-16)``; for one sigmoid channel it
    equals the same loss on the equivalent two-channel softmax.

    Args:
        student_logits, teacher_logits: ``B x C x X x Y x Z``.
        uncertainty: ``B x 1 x X x Y x Z`` teacher entropy.
        threshold: entropy threshold in nats.

    Returns:
        A 0-d tensor (0 when every voxel is masked out).
    """
    dist = prob_mse(student_logits, teacher_logits)
    mask = (uncertainty < threshold).to(dist.dtype).expand_as(dist)
    return torch.sum(mask * dist) / (torch.sum(mask) + 1e-16)
