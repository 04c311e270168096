"""Label values: the one rule for which values a mask of ``num_classes`` classes may hold.

Training (the loader), ``canet check-data`` and scoring (``canet score``,
``evaluate``) all read masks with the same convention, so they apply the same
rule, with the same words:

* ``num_classes == 2`` (binary): at most one non-zero value, which marks the
  object. It may be 1 or another value (0/255 masks are common); every
  non-zero voxel is object. Two or more non-zero values are refused, since
  reading them as one object would merge classes silently.
* ``num_classes > 2``: every value lies in ``0 .. num_classes - 1``.
* Negative values, and values that are not whole numbers (2.4), are refused
  in both cases.

Across the masks of one set, binary masks that mark their object with values
other than 1 and 255 mixed (0/1 beside 0/2) may be one class a case of a label
map; :data:`BINARY_CONVENTIONS` are the values that may be mixed.

The byte range (values up to 255, whole numbers) is the data layer's concern
(:func:`canet.data.dataset.as_label`), not this rule's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from canet.errors import DataError

__all__ = ["BINARY_CONVENTIONS", "check_label_values", "label_value_problem", "label_values", "mixed_object_values",
           "refuse_mixed_object_values"]

_SHOWN = 6

#: Object values of binary masks that a set of masks may mix without a question: 0/1 and
#: 0/255 masks from different tools are both binary. Other mixes (0/1 beside 0/2) may be
#: the classes of one label map, one class a case; ``canet score`` and ``check-data`` ask.
BINARY_CONVENTIONS: frozenset[int] = frozenset({1, 255})


def label_values(mask: np.ndarray) -> list[int | float]:
    """The distinct non-zero values of a mask, ascending: ints, and floats for values that are not whole.

    A float mask's values are not rounded or cut here (2.4 is not 2):
    :func:`label_value_problem` refuses those that are not whole numbers.
    """
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return [1] if arr.any() else []
    if arr.dtype == np.uint8:
        counts = np.bincount(arr.ravel(), minlength=256)
        return [int(v) for v in np.flatnonzero(counts[1:]) + 1]
    values = [v for v in np.unique(arr).tolist() if v != 0]
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def _shown(values: Sequence[int | float]) -> str:
    shown = [str(v) if isinstance(v, int) else f"{v:.6g}" for v in values[:_SHOWN]]  # float32 2.4, not 2.4000000953
    return "{" + ", ".join(shown) + (", ..." if len(values) > _SHOWN else "") + "}"


def label_value_problem(values: Sequence[int | float], num_classes: int) -> str | None:
    """Why a mask with these non-zero values cannot be read as ``num_classes`` classes.

    Args:
        values: the distinct non-zero values of the mask, ascending (:func:`label_values`).
        num_classes: classes including the background (>= 2).

    Returns:
        ``None`` when the mask is fine, otherwise the reason, worded to follow
        the mask's name (``"holds values {1, 2}, but ..."``).
    """
    fractional = [v for v in values if not float(v).is_integer()]
    if fractional:
        return f"holds values {_shown(fractional)} that are not whole numbers; a label map holds class numbers"
    values = [int(v) for v in values]
    negative = [v for v in values if v < 0]
    if negative:
        return f"holds negative values {_shown(negative)}; labels are 0 (background) and positive class values"
    if num_classes == 2:
        if len(values) > 1:
            return (
                f"holds values {_shown(values)}, but the task is binary (num_classes 2: one non-zero value, "
                "such as 1 or 255, marks the object); give the number of classes it has"
            )
        return None
    bad = [v for v in values if v >= num_classes]
    if bad:
        return f"holds values {_shown(bad)} outside the {num_classes} classes (0..{num_classes - 1})"
    return None


def check_label_values(values: Sequence[int | float], num_classes: int, what: str) -> None:
    """Refuse a mask whose values ``num_classes`` cannot read (see the module docstring).

    Args:
        values: the distinct non-zero values of the mask (:func:`label_values`).
        num_classes: classes including the background.
        what: how the message names the mask, e.g. ``"case 'a': ground truth"``
            or ``"a_seg.nii.gz: label"``.

    Raises:
        DataError: ``<what> holds values {...} ...`` (see :func:`label_value_problem`).
    """
    problem = label_value_problem(values, num_classes)
    if problem is not None:
        raise DataError(f"{what} {problem}")


def mixed_object_values(seen: Mapping[int, str]) -> tuple[tuple[int, str], tuple[int, str]] | None:
    """The first two ``(value, where)`` of binary masks that mark their object with values beyond
    :data:`BINARY_CONVENTIONS` mixed (1 and 2), or None when they may be one set of binary masks.

    Args:
        seen: each mask's one object value -> where it was first seen (a case id, a file).
    """
    if len(seen) < 2 or set(seen) <= BINARY_CONVENTIONS:
        return None
    first, second = sorted(seen.items())[:2]
    return first, second


def refuse_mixed_object_values(seen: Mapping[int, str], masks: str, advice: str, marked: str = "their object") -> None:
    """Refuse binary ``masks`` that mark ``marked`` with values beyond :data:`BINARY_CONVENTIONS`
    mixed (:func:`mixed_object_values`), in one line ending with ``advice``.

    Args:
        seen: each mask's one object value -> where it was first seen (``"case 'a'"``).
        masks: what the masks are, as the message starts (``"the ground truths"``).
        advice: what the user may do, after the values and where they were seen.
        marked: what the values mark (``"their object"``, ``"the atrium"``).

    Raises:
        DataError: ``<masks> mark <marked> with different values (1 in <where>, 2 in <where>): <advice>``.
    """
    mixed = mixed_object_values(seen)
    if mixed is not None:
        (v1, w1), (v2, w2) = mixed
        raise DataError(f"{masks} mark {marked} with different values ({v1} in {w1}, {v2} in {w2}): {advice}")
