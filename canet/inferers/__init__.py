"""Whole-volume inference: sliding windows (``reference`` and ``fast`` modes), flip TTA, LCC.

See :mod:`canet.inferers.sliding_window` for the two window protocols,
:mod:`canet.inferers.predict` for :func:`predict_volume` and
:mod:`canet.inferers.settings` for :class:`InferenceSettings`, the one object
that carries every inference choice.
"""

from canet.inferers.postprocess import largest_component_per_class, largest_connected_component
from canet.inferers.predict import (
    FLIPS,
    predict_volume,
    probability_predictor,
    seg_logits,
    with_flip_tta,
)
from canet.inferers.settings import AMP_CHOICES, InferenceSettings
from canet.inferers.sliding_window import (
    MODES,
    REFERENCE_STRIDES,
    WEIGHTINGS,
    gaussian_weights,
    sliding_window_inference,
    window_starts,
)

__all__ = [
    "AMP_CHOICES",
    "FLIPS",
    "MODES",
    "REFERENCE_STRIDES",
    "WEIGHTINGS",
    "InferenceSettings",
    "gaussian_weights",
    "largest_component_per_class",
    "largest_connected_component",
    "predict_volume",
    "probability_predictor",
    "seg_logits",
    "sliding_window_inference",
    "window_starts",
    "with_flip_tta",
]
