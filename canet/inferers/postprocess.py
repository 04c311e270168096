"""Largest-connected-component post-processing of predicted masks.

Components are 26-connected (any shared face, edge or corner), as in the LA
literature's ``getLargestCC`` (``skimage.measure.label`` with its default full
connectivity). Ties between equally large components keep the one whose first
voxel comes first in C order.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import generate_binary_structure, label

__all__ = ["largest_connected_component", "largest_component_per_class"]


def largest_connected_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 26-connected component of a binary mask.

    Args:
        mask: ``X x Y x Z`` array, non-zero = object (any number of dimensions works).

    Returns:
        An array of ``mask``'s dtype and shape holding 1 (or True) on the
        largest component and 0 elsewhere; an empty mask comes back unchanged.
    """
    binary = np.asarray(mask) != 0
    if not binary.any():
        return np.zeros_like(mask)
    labels, count = label(binary, structure=generate_binary_structure(binary.ndim, binary.ndim))
    if count == 1:
        return binary.astype(np.asarray(mask).dtype)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = int(np.argmax(sizes))
    return (labels == keep).astype(np.asarray(mask).dtype)


def largest_component_per_class(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Keep the largest component of every foreground class of a label map.

    Args:
        labels: ``X x Y x Z`` integer label map.
        num_classes: classes including the background; classes ``1 ..
            num_classes - 1`` are cleaned, voxels removed become background (0).
    """
    labels = np.asarray(labels)
    out = np.zeros_like(labels)
    for c in range(1, num_classes):
        keep = largest_connected_component(labels == c).astype(bool)
        out[keep] = c
    return out
