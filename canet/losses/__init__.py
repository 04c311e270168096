"""Losses of CA-Net and its baselines.

- :func:`dice_loss`: soft Dice ``1 - (2 sum(p y) + 1e-5) / (sum(p^2) + sum(y^2) + 1e-5)``;
- :func:`compute_sdm`: the normalised signed-distance map target of the tanh head;
- :func:`adversarial_weight` / :func:`sigmoid_rampup`: ramp-ups of the unlabeled losses;
- :func:`consistency_mse`, :func:`masked_consistency`, :func:`predictive_entropy`:
  the mean-teacher (MT) and uncertainty-aware mean-teacher (UA-MT) consistency.
"""

from canet.losses.consistency import (
    consistency_mse,
    masked_consistency,
    predictive_entropy,
    prob_mse,
    probabilities,
)
from canet.losses.dice import DICE_SMOOTH, dice_loss, multiclass_dice_loss
from canet.losses.rampup import (
    adversarial_weight,
    rampup_weight,
    sigmoid_rampup,
    uncertainty_threshold,
)
from canet.losses.sdm import SDMTargets, batch_sdm, compute_sdm, inner_boundary, label_sdm

__all__ = [
    "DICE_SMOOTH",
    "SDMTargets",
    "adversarial_weight",
    "batch_sdm",
    "compute_sdm",
    "consistency_mse",
    "dice_loss",
    "inner_boundary",
    "label_sdm",
    "masked_consistency",
    "multiclass_dice_loss",
    "predictive_entropy",
    "prob_mse",
    "probabilities",
    "rampup_weight",
    "sigmoid_rampup",
    "uncertainty_threshold",
]
