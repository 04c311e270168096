"""Patch sizes: the one check of a training patch or inference window size ``(X, Y, Z)``."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

from canet.errors import PatchSizeError

__all__ = ["check_patch_size"]


def check_patch_size(patch_size: Sequence[int] | Any, multiple: int = 1, name: str = "patch_size") -> tuple[int, int, int]:
    """``patch_size`` as a tuple of three ints, each a positive multiple of ``multiple``.

    Ints of any integer type (Python, NumPy) are accepted; floats (also ``8.0``),
    booleans, strings and other lengths are not.

    Args:
        patch_size: the size to check, ``(X, Y, Z)``.
        multiple: each side must be a positive multiple of it (1: any positive
            side; 16 for the generators, which downsample four times).
        name: how the value is called in the message.

    Raises:
        PatchSizeError: ``<name> must be three positive integers, got <value>`` or
            ``<name> must be 3 positive multiples of <multiple>, got <value>``
            (a :class:`~canet.errors.ConfigError` and a :class:`~canet.errors.DataError`).
    """
    if isinstance(patch_size, (str, bytes)):
        values: tuple[Any, ...] = ()
    else:
        try:
            values = tuple(patch_size)
        except TypeError:
            values = ()
    if len(values) != 3 or not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in values):
        raise PatchSizeError(f"{name} must be three positive integers, got {patch_size!r}")
    sides = (int(values[0]), int(values[1]), int(values[2]))
    if multiple > 1 and any(s % multiple for s in sides):
        raise PatchSizeError(f"{name} must be 3 positive multiples of {multiple}, got {patch_size!r}")
    return sides
