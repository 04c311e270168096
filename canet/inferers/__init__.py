"""Whole-volume inference: sliding windows (``reference`` and ``fast`` modes), flip TTA, LCC.

See :mod:`canet.inferers.sliding_window` for the two window protocols and
:mod:`canet.inferers.predict` for :func:`predict_volume`.
"""

from canet.inferers.postprocess import largest_component_per_class, largest_connected_component
from canet.inferers.predict import (
    FLIPS,
    predict_volume,
    probability_predictor,
    seg_logits,
    with_flip_tta,
)
from canet.inferers.sliding_window import (
    MODES,
    REFERENCE_STRIDES,
    WEIGHTINGS,
    gaussian_weights,
    sliding_window_inference,
    window_starts,
)

__all__ = [
    "FLIPS",
    "MODES",
    "REFERENCE_STRIDES",
    "WEIGHTINGS",
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
