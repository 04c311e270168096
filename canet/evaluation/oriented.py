"""Predict a volume in the orientation the network was trained in and return the result in the stored voxel order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from canet.inferers.predict import predict_volume
from canet.inferers.settings import InferenceSettings

__all__ = ["predict_oriented"]


def predict_oriented(
    model: nn.Module,
    image: np.ndarray,
    affine: np.ndarray,
    patch_size: Sequence[int],
    orientation: str | None = None,
    oriented: bool = True,
    settings: InferenceSettings | None = None,
    **changes: Any,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """:func:`canet.inferers.predict_volume` in the training orientation, results in stored order.

    Args:
        model, patch_size, settings, changes: as for :func:`~canet.inferers.predict_volume`.
        image: ``X x Y x Z`` (or ``C x X x Y x Z``) as stored in the file.
        affine: the file's voxel-to-world matrix (RAS+).
        orientation: the training orientation's axis codes; None keeps the
            stored voxel order.
        oriented: whether the file states its orientation (False: stored order).

    Returns:
        ``(mask, probabilities, reorientation)``: mask and probabilities in the
        stored voxel order (as :func:`~canet.inferers.predict_volume` returns
        them), and the :class:`~canet.data.orientation.Reorientation` used (None
        when the volume stayed in stored order).
    """
    arr = np.asarray(image)
    if orientation is None or not oriented:
        mask, probs = predict_volume(model, arr, patch_size, settings, **changes)
        return mask, probs, None
    from canet.data.orientation import reorientation

    turn = reorientation(affine, arr.shape[-3:], orientation)
    mask, probs = predict_volume(model, turn.forward(arr), patch_size, settings, **changes)
    return turn.backward(mask), turn.backward(probs), turn
