"""The warnings of ``canet predict`` and ``canet evaluate``, one line each, and where they go by default."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["SPACING_TOLERANCE", "nonfinite_warning", "print_warning", "spacing_mismatch"]


#: A volume whose voxel size differs from the training data's by more than this fraction is warned about.
SPACING_TOLERANCE = 0.2


def print_warning(message: str) -> None:
    """Default warning sink of :func:`evaluate` and :func:`predict_files`: one ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _fmt_spacing(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def nonfinite_warning(name: str, count: int) -> str:
    """The warning about ``count`` NaN or infinite voxels of a scan set to its minimum (:func:`canet.data.fill_nonfinite`)."""
    return (
        f"{name}: {count} NaN or infinite voxel(s) set to the scan's smallest finite value before "
        "normalising (padding outside the field of view?)"
    )


def spacing_mismatch(
    name: str, spacing: Sequence[float], target: Sequence[float] | None, tolerance: float = SPACING_TOLERANCE
) -> str | None:
    """A warning when ``spacing`` differs from ``target`` by more than ``tolerance`` (relative) on an axis.

    Both are voxel sizes in mm in the same (training) orientation; ``target``
    None (unknown) gives no warning.
    """
    if target is None:
        return None
    worst = max(abs(float(a) - float(b)) / float(b) for a, b in zip(spacing, target))
    if worst <= tolerance:
        return None
    return (
        f"{name}: voxel size {_fmt_spacing(spacing)} mm differs from the training data's "
        f"{_fmt_spacing(target)} mm by {worst:.0%}; resample it to that size for reliable results"
    )
