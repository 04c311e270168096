"""Signed-distance maps (SDM) of label masks, the target of the generators' tanh head.

For a binary mask ``M`` (as SASSNet and CA-Net define it)::

    SDM = (d_out - min d_out) / (max d_out - min d_out)
        - (d_in  - min d_in ) / (max d_in  - min d_in )

where ``d_out`` is the Euclidean distance of each voxel to the mask (0 inside)
and ``d_in`` the distance of each voxel to the background (0 outside); minima
and maxima run over the whole volume, so both terms lie in ``[0, 1]``. The map
is then set to 0 on the mask's *inner boundary*: mask voxels with at least one
6-connected neighbour outside the mask (a voxel on the volume's edge is not a
boundary voxel for that reason alone, as ``skimage.segmentation.find_boundaries(
mode="inner")`` with its default edge handling). So the SDM is positive outside,
negative inside, 0 on the boundary, with values in ``[-1, 1]``.

Special cases:

- an empty mask gives all zeros (as the original code);
- a full mask (no background voxel, where the formula divides by zero) is
  treated as if the volume were surrounded by background: its SDM is that of
  the mask padded with one background voxel on every side, cropped back. The
  voxels on the volume's faces are then the boundary (0) and the value falls
  to -1 at the voxels farthest from the faces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from canet.errors import CanetError

#: 6-connectivity in 3D (connectivity 1), as skimage's find_boundaries default.
_CROSS3 = ndimage.generate_binary_structure(3, 1)


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside the mask (``X x Y x Z`` bool).

    Voxels beyond the volume's edge count as inside the mask, so touching the
    edge alone does not make a voxel a boundary voxel.
    """
    m = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(m.ndim, 1)
    eroded = ndimage.binary_erosion(m, structure=structure, border_value=1)
    return m & ~eroded


def _normalised(d: np.ndarray) -> np.ndarray:
    lo = float(d.min())
    hi = float(d.max())
    if hi <= lo:
        return np.zeros_like(d)
    return (d - lo) / (hi - lo)


def _inside_distance(m: np.ndarray) -> np.ndarray:
    """Distance of each mask voxel to the nearest background voxel (0 outside).

    Computed on the mask's bounding box grown by one voxel (clipped to the
    volume): the grown box's outer layer is background wherever it lies inside
    the volume, and clamping any farther background voxel onto that layer only
    shortens its distance, so the result equals the transform of the whole volume.
    """
    nz = np.nonzero(m)
    box = tuple(
        slice(max(int(idx.min()) - 1, 0), min(int(idx.max()) + 2, n)) for idx, n in zip(nz, m.shape)
    )
    out = np.zeros(m.shape, dtype=np.float64)
    out[box] = ndimage.distance_transform_edt(m[box])
    return out


def compute_sdm(mask: np.ndarray) -> np.ndarray:
    """Normalised signed-distance map of one binary mask.

    Args:
        mask: ``X x Y x Z`` (any number of dimensions) array; nonzero is foreground.

    Returns:
        float32 array of the mask's shape, in ``[-1, 1]``: positive outside,
        negative inside, 0 on the inner boundary; all zeros for an empty mask.
        See the module docstring for the formula and the full-mask rule.

    Raises:
        CanetError: ``mask`` has no voxels.
    """
    m = np.asarray(mask) != 0
    if m.size == 0:
        raise CanetError(f"compute_sdm needs a non-empty array, got shape {m.shape}")
    if not m.any():
        return np.zeros(m.shape, dtype=np.float32)
    if m.all():
        padded = np.pad(m, 1, mode="constant", constant_values=False)
        inner = tuple(slice(1, -1) for _ in range(m.ndim))
        return compute_sdm(padded)[inner].copy()
    d_in = _inside_distance(m)
    d_out = ndimage.distance_transform_edt(~m)
    sdm = _normalised(d_out) - _normalised(d_in)
    sdm[inner_boundary(m)] = 0.0
    return sdm.astype(np.float32)


def label_sdm(label: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """SDM target for a label volume, one channel per generator output channel.

    Args:
        label: ``X x Y x Z`` integer labels.
        num_classes: classes including background; 2 gives one channel (the SDM
            of ``label > 0``), ``K > 2`` gives ``K`` channels (channel ``c`` is the
            SDM of ``label == c``).

    Returns:
        float32 ``C x X x Y x Z`` with ``C = 1`` for binary tasks, ``K`` otherwise.
    """
    lab = np.asarray(label)
    if num_classes == 2:
        return compute_sdm(lab > 0)[None]
    return np.stack([compute_sdm(lab == c) for c in range(num_classes)])


def batch_sdm(labels: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """:func:`label_sdm` of every volume of a ``B x X x Y x Z`` batch -> ``B x C x X x Y x Z``."""
    return np.stack([label_sdm(lab, num_classes) for lab in np.asarray(labels)])


class SDMTargets:
    """Picklable ``extra_targets`` callable for the training loader.

    ``SDMTargets(num_classes)(label)`` returns ``{"sdm": label_sdm(label, num_classes)}``
    so that the loader's workers compute the SDM off the training process's
    critical path (the batch then holds ``"sdm"``: ``L x C x X x Y x Z`` float32 for its
    ``L`` labeled rows).
    """

    def __init__(self, num_classes: int = 2) -> None:
        self.num_classes = int(num_classes)

    def __call__(self, label: np.ndarray) -> dict[str, np.ndarray]:
        return {"sdm": label_sdm(label, self.num_classes)}

    def __repr__(self) -> str:
        return f"SDMTargets(num_classes={self.num_classes})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, SDMTargets) and other.num_classes == self.num_classes

    def __hash__(self) -> int:
        return hash(("SDMTargets", self.num_classes))
