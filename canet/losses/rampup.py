"""Ramp-up schedules of the semi-supervised losses (Laine & Aila's sigmoid ramp-up)."""

from __future__ import annotations

import math

#: Adversarial weight of CA-Net / SASSNet: ``0.01 * sigmoid_rampup(iteration // 150, 40)``.
ADV_WEIGHT = 0.01
RAMPUP_LENGTH = 40.0
RAMPUP_INTERVAL = 150


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - t / length)^2)`` with ``t = clip(current, 0, length)``.

    Rises from ``exp(-5) ~ 0.0067`` at ``current = 0`` to 1 at ``current >= length``;
    a ``length`` of 0 gives 1 at once.
    """
    if length <= 0:
        return 1.0
    t = min(max(float(current), 0.0), float(length))
    phase = 1.0 - t / length
    return float(math.exp(-5.0 * phase * phase))


def rampup_weight(
    iteration: int,
    weight: float,
    length: float = RAMPUP_LENGTH,
    interval: int = RAMPUP_INTERVAL,
) -> float:
    """``weight * sigmoid_rampup(iteration // interval, length)``.

    Args:
        iteration: 0-based index of the training step being taken.
        weight: the final weight.
        length: ramp length in units of ``interval`` iterations (40).
        interval: iterations per ramp unit (150).
    """
    return weight * sigmoid_rampup(iteration // max(1, int(interval)), length)


def adversarial_weight(
    iteration: int,
    weight: float = ADV_WEIGHT,
    length: float = RAMPUP_LENGTH,
    interval: int = RAMPUP_INTERVAL,
) -> float:
    """CA-Net's adversarial weight ``0.01 * exp(-5 (1 - t/40)^2)``, ``t = min(iteration // 150, 40)``."""
    return rampup_weight(iteration, weight, length, interval)


def uncertainty_threshold(iteration: int, max_iterations: int, num_classes: int = 2) -> float:
    """UA-MT's entropy threshold ``(0.75 + 0.25 * sigmoid_rampup(iteration, max_iterations)) * ln K``.

    ``ln K`` is the largest entropy of ``K = num_classes`` classes: UA-MT's ``ln 2`` for a
    binary task (default), so that with more classes the threshold is the same fraction
    of the entropy's range rather than a stricter one.
    """
    return (0.75 + 0.25 * sigmoid_rampup(iteration, max_iterations)) * math.log(float(max(num_classes, 2)))
