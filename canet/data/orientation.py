"""Voxel order of a volume relative to a named orientation, and the way there and back.

A network learns its input's voxel axes: a scan stored with a flipped or
permuted axis (LPS instead of RAS, sagittal slices first, ...) shows it the
anatomy in an order it never saw. :func:`reorientation` finds the flips and
the transpose (nibabel's ``io_orientation`` / ``ornt_transform``) that bring a
volume with a given voxel-to-world ``affine`` to the orientation the network
was trained in, named by three axis codes (``"RAS"``: axis 0 points Right,
axis 1 Anterior, axis 2 Superior; ``"LPS"``, ``"PRS"`` and so on), and back.

Only whole flips and transposes are used (no resampling), so the round trip
``backward(forward(a))`` returns ``a`` exactly; an oblique scan goes to the
closest orientation. The reoriented volume's own affine is
``affine @ inv_ornt_aff(transform, shape)``: the same world positions for the
same voxels.

Two files can hold the same grid of voxels in different voxel orders (a label
stored flipped relative to its image, a prediction written by a tool that
reorients). :func:`grid_transform` finds the flips and transpose that bring one
onto the other's voxel order and says when no such reordering exists (the grids
differ in world space: shifted, resampled, another shape); :func:`to_grid`
applies it. Two grids coincide when, after the reordering, no corner of the
volume is more than :data:`AFFINE_TOLERANCE` of the smallest voxel size away
from its place on the other grid (:func:`placement_gap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from canet.errors import DataError

__all__ = [
    "AFFINE_TOLERANCE",
    "Reorientation",
    "apply_transform",
    "axcodes_of",
    "check_axcodes",
    "grid_transform",
    "placement_gap",
    "reorientation",
    "to_grid",
]

#: Two grids coincide when no corner of the volume moves by more than this fraction of
#: the smallest voxel size between their affines (float32 headers round far below it).
AFFINE_TOLERANCE = 0.01

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


def check_axcodes(codes: str | Sequence[str]) -> str:
    """``codes`` as a three-letter string, checked (one of R/L, A/P, S/I each).

    Raises:
        DataError: not three letters naming each world axis once.
    """
    text = "".join(str(c) for c in codes).upper()
    pairs = [frozenset((c, _OPPOSITE.get(c, c))) for c in text]
    if len(text) != 3 or any(c not in _OPPOSITE for c in text) or len(set(pairs)) != 3:
        raise DataError(f"orientation must be three axis codes such as 'RAS' or 'LPS', got {codes!r}")
    return text


def axcodes_of(affine: np.ndarray) -> str:
    """Axis codes of a voxel-to-world affine (RAS+ world), e.g. ``"RAS"`` for the identity."""
    import nibabel as nib

    return "".join(str(c) for c in nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


@dataclass(frozen=True)
class Reorientation:
    """Flips and a transpose between a volume's stored voxel order and a target orientation.

    Attributes:
        to_target: nibabel orientation transform from the stored order to the target.
        to_stored: the inverse transform.
        shape: stored ``(X, Y, Z)``.
        affine: the reoriented volume's voxel-to-world affine.
        source: axis codes of the stored order.
        target: axis codes of the target orientation.
    """

    to_target: np.ndarray
    to_stored: np.ndarray
    shape: tuple[int, int, int]
    affine: np.ndarray
    source: str
    target: str

    @property
    def identity(self) -> bool:
        """Whether the stored order already is the target orientation."""
        return self.source == self.target

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size per axis in the target orientation."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @staticmethod
    def _apply(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
        return apply_transform(array, transform)

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Stored order -> target orientation, for ``X x Y x Z`` or ``K x X x Y x Z`` arrays."""
        if self.identity:
            return np.asarray(array)
        return self._apply(array, self.to_target)

    def backward(self, array: np.ndarray) -> np.ndarray:
        """Target orientation -> stored order (the inverse of :meth:`forward`)."""
        if self.identity:
            return np.asarray(array)
        return self._apply(array, self.to_stored)


def apply_transform(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Flip and transpose the last three axes of ``array`` by a nibabel orientation ``transform``.

    Args:
        array: ``X x Y x Z`` or ``K x X x Y x Z`` (leading axes are kept in front).
        transform: ``3 x 2`` nibabel orientation transform (``ornt_transform``).

    Returns:
        A contiguous copy in the new voxel order.
    """
    from nibabel.orientations import apply_orientation

    arr = np.asarray(array)
    if arr.ndim < 3:
        raise DataError(f"cannot reorient an array of shape {arr.shape}; expected X x Y x Z")
    lead = arr.ndim - 3  # channel axes in front (K x X x Y x Z) move behind and back
    moved = np.moveaxis(arr, tuple(range(lead)), tuple(range(3, arr.ndim))) if lead else arr
    out = apply_orientation(moved, transform)
    if lead:
        out = np.moveaxis(out, tuple(range(3, arr.ndim)), tuple(range(lead)))
    return np.ascontiguousarray(out)


def placement_gap(a: np.ndarray, b: np.ndarray, shape: Sequence[int]) -> float:
    """How far apart two affines place a volume of ``shape``: the largest corner displacement (world units)."""
    corners = np.array(
        [[x, y, z, 1.0] for x in (0, shape[0] - 1) for y in (0, shape[1] - 1) for z in (0, shape[2] - 1)]
    )
    diff = (corners @ np.asarray(a, dtype=np.float64).T - corners @ np.asarray(b, dtype=np.float64).T)[:, :3]
    return float(np.linalg.norm(diff, axis=1).max())


def grid_transform(
    source_affine: np.ndarray,
    source_shape: Sequence[int],
    target_affine: np.ndarray,
    target_shape: Sequence[int],
    tolerance: float = AFFINE_TOLERANCE,
) -> np.ndarray | None:
    """How to bring an array on the source grid into the target grid's voxel order.

    Args:
        source_affine, source_shape: where the array's voxels are (4 x 4
            voxel-to-world, RAS+) and its stored ``(X, Y, Z)``.
        target_affine, target_shape: the grid to match.
        tolerance: largest corner displacement allowed, as a fraction of the
            target's smallest voxel size.

    Returns:
        The ``3 x 2`` nibabel orientation transform (flips and a transpose; the
        identity when the voxel orders already agree) for :func:`apply_transform`,
        or None when no reordering puts the source's voxels on the target's
        (the grids differ in world space).
    """
    from nibabel.orientations import inv_ornt_aff, io_orientation, ornt_transform

    src = np.asarray(source_affine, dtype=np.float64)
    tgt = np.asarray(target_affine, dtype=np.float64)
    size = tuple(int(s) for s in source_shape)[:3]
    transform = ornt_transform(io_orientation(src), io_orientation(tgt))
    moved_shape = tuple(size[int(axis)] for axis in np.argsort(transform[:, 0]))
    if moved_shape != tuple(int(s) for s in target_shape)[:3]:
        return None
    moved_affine = src @ inv_ornt_aff(transform, size)
    voxel = float(np.linalg.norm(tgt[:3, :3], axis=0).min())
    if placement_gap(moved_affine, tgt, moved_shape) > tolerance * voxel:
        return None
    return transform


def to_grid(
    array: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Sequence[int],
    tolerance: float = AFFINE_TOLERANCE,
) -> np.ndarray | None:
    """``array`` (on the source grid) in the target grid's voxel order, or None where the grids differ.

    See :func:`grid_transform`; ``array`` is ``X x Y x Z`` (or ``K x X x Y x Z``).
    """
    arr = np.asarray(array)
    transform = grid_transform(source_affine, arr.shape[-3:], target_affine, target_shape, tolerance)
    if transform is None:
        return None
    if np.array_equal(transform, np.array([[0, 1], [1, 1], [2, 1]])):
        return arr
    return apply_transform(arr, transform)


def reorientation(affine: np.ndarray, shape: Sequence[int], target: str | Sequence[str]) -> Reorientation:
    """How to bring a volume with ``affine`` and ``shape`` to the orientation ``target``.

    Args:
        affine: 4 x 4 voxel-to-world matrix (RAS+ world, as :class:`canet.data.Volume`).
        shape: the stored ``(X, Y, Z)``.
        target: axis codes, e.g. ``"RAS"``.

    Returns:
        The :class:`Reorientation`.
    """
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    codes = check_axcodes(target)
    matrix = np.asarray(affine, dtype=np.float64)
    start = io_orientation(matrix)
    end = axcodes2ornt(tuple(codes))
    forward = ornt_transform(start, end)
    backward = ornt_transform(end, start)
    size = tuple(int(s) for s in shape)[:3]
    new_affine = matrix @ inv_ornt_aff(forward, size)
    return Reorientation(forward, backward, size, new_affine, axcodes_of(matrix), codes)  # type: ignore[arg-type]
