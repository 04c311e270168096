"""Training augmentation: random rot90 and flip in the x-y plane, then a random crop.

This is the augmentation of the paper's code (inherited from UA-MT): rotate
the volume by ``k * 90`` degrees in the x-y plane (``k`` uniform in 0..3),
then mirror it along x or y (one of the two, uniform), then cut a random
patch; where the volume is smaller than the patch along an axis it is
zero-padded, centred. As in that code the flip is always applied, so every
patch is one of the four mirror images of the x-y dihedral group.

Every draw comes from an explicit :class:`numpy.random.Generator`, in a fixed
order: ``k``, the flip axis, then one crop start per axis (always drawn, even
where the volume is no larger than the patch, so the number of draws never
depends on the volume's shape). Rotation and flip produce views; only the
patch is copied, so a call costs about one patch of memory traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from canet.errors import DataError
from canet.patch_size import check_patch_size

__all__ = ["augment_pair", "check_patch_size", "crop_with_padding", "rot_flip"]


def rot_flip(array: np.ndarray, k: int, axis: int) -> np.ndarray:
    """``array`` rotated by ``k * 90`` degrees in its first two axes, then flipped along ``axis`` (a view)."""
    return np.flip(np.rot90(array, k, axes=(0, 1)), axis=axis)


def crop_with_padding(
    array: np.ndarray, start: Sequence[int], patch_size: Sequence[int], fill: float = 0
) -> np.ndarray:
    """Copy the block ``array[start : start + patch_size]``; outside the array it is ``fill``.

    ``start`` may be negative and the block may run past the end: those
    voxels take ``fill``. Returns a C-contiguous array of shape ``patch_size``.
    """
    shape = array.shape
    out = np.full(tuple(patch_size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, p, n in zip(start, patch_size, shape):
        lo, hi = max(s, 0), min(s + p, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def draw_crop_start(
    shape: Sequence[int], patch_size: Sequence[int], rng: np.random.Generator
) -> tuple[int, int, int]:
    """Start of a random crop: uniform in ``0..shape - patch`` per axis; centred (negative) where smaller."""
    starts = []
    for n, p in zip(shape, patch_size):
        offset = int(rng.integers(0, max(n - p, 0) + 1))
        starts.append(offset if n >= p else -((p - n) // 2))
    return (starts[0], starts[1], starts[2])


def augment_pair(
    image: np.ndarray,
    label: np.ndarray | None,
    patch_size: Sequence[int],
    rng: np.random.Generator,
    rotate_flip: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Augment an image (and its label) into one training patch.

    Args:
        image: ``X x Y x Z`` volume.
        label: ``X x Y x Z`` label of the same shape, or ``None``.
        patch_size: ``(px, py, pz)``.
        rng: the generator all draws come from (see the module docstring).
        rotate_flip: apply the random rot90 + flip (default); ``False`` only crops.

    Returns:
        ``(image_patch, label_patch)``, each ``px x py x pz`` and C-contiguous,
        transformed identically; padding is 0 in both. ``label_patch`` is
        ``None`` when ``label`` is.
    """
    patch = check_patch_size(patch_size)
    if image.ndim != 3:
        raise DataError(f"augment_pair needs a 3D image, got shape {tuple(image.shape)}")
    if label is not None and label.shape != image.shape:
        raise DataError(f"label shape {tuple(label.shape)} differs from image shape {tuple(image.shape)}")
    if rotate_flip:
        k = int(rng.integers(0, 4))
        axis = int(rng.integers(0, 2))
        image = rot_flip(image, k, axis)
        if label is not None:
            label = rot_flip(label, k, axis)
    start = draw_crop_start(image.shape, patch, rng)
    image_patch = crop_with_padding(image, start, patch, 0)
    label_patch = None if label is None else crop_with_padding(label, start, patch, 0)
    return image_patch, label_patch
