"""Per-case metric rows, multi-class scoring and the summary of a set of cases.

:class:`MetricAccumulator` collects one row per case (``case, dice, jaccard,
hd95, asd, seconds, diagonal``; plus ``<metric>_<class>`` columns for
multi-class data; ``diagonal`` is the length of the volume's diagonal in the
distance unit, the largest distance two of its voxels can have: the penalty
``canet compare --distance-penalty diagonal`` gives a missed structure)
and turns them into the summary dict written as ``summary.json``::

    {"dice": {"mean": 0.91, "std": 0.02, "n": 20, "nan": 0}, "jaccard": {...},
     "hd95": {...}, "asd": {...}, "cases": 20, "empty_pred": 0, "empty_gt": 0,
     "nan_counts": {"dice": 0, "jaccard": 0, "hd95": 0, "asd": 0},
     "absent_classes": {"1": 0}, "num_classes": 2, "spacing": "voxels", "std_ddof": 0}

Means and standard deviations (population std, ``ddof=0``) are taken over the
finite values only; ``n`` says how many there were and ``nan`` how many were
left out (cases where a mask was empty, see :mod:`canet.metrics.binary`). A
statistic of no values is ``None`` (JSON ``null``), never 0.

Labels follow :mod:`canet.labels` (the rule training and ``check-data`` use too): with
``num_classes=2`` a mask is binary whatever its object value (0/1, 0/255, ...:
any non-zero voxel is object), and a mask holding two or more non-zero values
is refused (:class:`~canet.errors.DataError`), because scoring it as binary
would merge its classes. With ``num_classes > 2`` every label must be below
``num_classes``. A class absent from both the prediction and the
ground truth of a case has no score there: its four metrics are NaN, and
``absent_classes`` counts such cases per class. A multi-class row's ``dice`` and
``jaccard`` are the means over the classes scored; its ``hd95`` and ``asd`` too,
unless a class is in one mask only (missed, or predicted where there is none):
then they are NaN, as for an empty binary mask, and the case counts in
``empty_pred`` (a class missed) or ``empty_gt`` (a class predicted that is not there).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from canet.errors import CanetError
from canet.io import atomic_open, atomic_write_text
from canet.labels import check_label_values, label_values
from canet.metrics.binary import Spacing, binary_metrics

METRICS: tuple[str, ...] = ("dice", "jaccard", "hd95", "asd")
#: The surface distances: undefined (NaN) where a mask is empty.
DISTANCE_METRICS: tuple[str, ...] = ("hd95", "asd")

__all__ = [
    "METRICS",
    "MetricAccumulator",
    "check_label_values",
    "label_values",
    "multiclass_metrics",
    "stats",
    "summarize",
    "volume_diagonal",
]


def multiclass_metrics(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, spacing: Spacing = None
) -> dict[int, dict[str, float]]:
    """Binary metrics of every foreground class ``1 .. num_classes - 1``.

    Args:
        pred: predicted label map ``X x Y x Z`` (integers).
        gt: ground-truth label map of the same shape.
        num_classes: number of classes including the background (>= 2).
        spacing: voxel size in mm per axis, ``None`` for voxels.

    Returns:
        ``{class: {"dice", "jaccard", "hd95", "asd"}}``.
    """
    if num_classes < 2:
        raise CanetError(f"num_classes must be at least 2, got {num_classes}")
    return {c: binary_metrics(pred == c, gt == c, spacing) for c in range(1, num_classes)}


def stats(values: Iterable[float]) -> dict[str, Any]:
    """``{"mean", "std", "n", "nan"}`` of the finite values (population std)."""
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return {"mean": None, "std": None, "n": 0, "nan": int(arr.size)}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "n": int(finite.size),
        "nan": int(arr.size - finite.size),
    }


def volume_diagonal(shape: Sequence[int], spacing: Spacing = None) -> float:
    """Distance between the centres of a volume's two opposite corner voxels.

    Args:
        shape: ``(X, Y, Z)``.
        spacing: voxel size per axis (a number or one per axis); None: voxels.

    Returns:
        ``sqrt(sum(((shape - 1) * spacing) ** 2))``: no surface distance in the
        volume can be longer.
    """
    steps = np.asarray([max(int(n) - 1, 0) for n in shape], dtype=np.float64)
    if spacing is not None:
        steps = steps * np.broadcast_to(np.asarray(spacing, dtype=np.float64), steps.shape)
    return float(np.sqrt(np.sum(steps**2)))


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """Summary of per-case rows: one :func:`stats` entry per metric plus counts."""
    out: dict[str, Any] = {m: stats(row[m] for row in rows) for m in metrics}
    out["cases"] = len(rows)
    out["nan_counts"] = {m: out[m]["nan"] for m in metrics}
    return out


class MetricAccumulator:
    """Collect per-case metrics and summarise them.

    Args:
        num_classes: classes including the background; 2 means binary masks
            (non-zero = object), more gives per-class columns ``dice_1`` ...
            and the row's ``dice`` etc. are means over the classes with a
            finite value.
        spacing: default voxel size in mm for :meth:`add` (``None`` = voxels).
    """

    def __init__(self, num_classes: int = 2, spacing: Spacing = None) -> None:
        if num_classes < 2:
            raise CanetError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.spacing = spacing
        self.rows: list[dict[str, Any]] = []
        self.empty_pred: list[str] = []
        self.empty_gt: list[str] = []
        self.absent: dict[int, int] = {c: 0 for c in range(1, num_classes)}
        self._seen: set[str] = set()
        self._units: set[str] = set()
        self._entries: dict[str, dict[str, Any]] = {}

    @property
    def units(self) -> str:
        """``"voxels"`` or ``"mm"`` (``"mixed"`` if cases were scored both ways)."""
        if not self._units:
            return "voxels" if self.spacing is None else "mm"
        return next(iter(self._units)) if len(self._units) == 1 else "mixed"

    @property
    def columns(self) -> list[str]:
        """Column names of ``metrics.csv``."""
        cols = ["case", *METRICS, "seconds", "diagonal"]
        if self.num_classes > 2:
            cols += [f"{m}_{c}" for c in range(1, self.num_classes) for m in METRICS]
        return cols

    def add(
        self,
        case: str,
        pred: np.ndarray,
        gt: np.ndarray,
        spacing: Spacing | str = "default",
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """Score one case and keep its row.

        Args:
            case: case id (unique within the accumulator).
            pred: predicted mask / label map ``X x Y x Z``.
            gt: ground truth of the same shape.
            spacing: voxel size for this case; ``"default"`` uses the accumulator's.
            seconds: inference time to record (NaN when not given).

        Returns:
            The row ``{"case", "dice", "jaccard", "hd95", "asd", "seconds", ...}``.

        Raises:
            DataError: a mask with labels ``num_classes`` cannot score (see
                the module docstring).
        """
        if case in self._seen:
            raise CanetError(f"case {case!r} scored twice")
        sp = self.spacing if isinstance(spacing, str) and spacing == "default" else spacing
        pred_arr, gt_arr = np.asarray(pred), np.asarray(gt)
        pred_values, gt_values = label_values(pred_arr), label_values(gt_arr)
        check_label_values(gt_values, self.num_classes, f"case {case!r}: ground truth")
        check_label_values(pred_values, self.num_classes, f"case {case!r}: prediction")
        row: dict[str, Any] = {"case": case}
        if self.num_classes == 2:
            p, g = pred_arr != 0, gt_arr != 0
            row.update(binary_metrics(p, g, sp))  # type: ignore[arg-type]
            pred_empty, gt_empty = not pred_values, not gt_values
            absent = [1] if pred_empty and gt_empty else []
        else:
            per_class = multiclass_metrics(pred_arr, gt_arr, self.num_classes, sp)  # type: ignore[arg-type]
            # a class in one mask only: missed (or made up), no distance, as an empty binary mask
            missed = [c for c in per_class if c in gt_values and c not in pred_values]
            made_up = [c for c in per_class if c in pred_values and c not in gt_values]
            for m in METRICS:
                # the mean of the others' distances would make a missed class look perfect: NaN
                one_sided = m in DISTANCE_METRICS and (missed or made_up)
                row[m] = float("nan") if one_sided else _nanmean([v[m] for v in per_class.values()])
            for c, values in per_class.items():
                for m in METRICS:
                    row[f"{m}_{c}"] = values[m]
            pred_empty, gt_empty = bool(missed), bool(made_up)
            absent = [c for c in per_class if c not in pred_values and c not in gt_values]
        for c in absent:
            self.absent[c] += 1
        row["seconds"] = float("nan") if seconds is None else float(seconds)
        row["diagonal"] = volume_diagonal(gt_arr.shape, sp)
        if pred_empty:
            self.empty_pred.append(case)
        if gt_empty:
            self.empty_gt.append(case)
        self._seen.add(case)
        self._units.add("voxels" if sp is None else "mm")
        self.rows.append(row)
        self._entries[case] = {
            "row": row, "unit": "voxels" if sp is None else "mm", "empty_pred": pred_empty,
            "empty_gt": gt_empty, "absent": list(absent),
        }
        return row

    def entry(self, case: str) -> dict[str, Any]:
        """What :meth:`restore` needs to count ``case`` again without scoring it (JSON-able)."""
        return self._entries[case]

    def restore(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Count a case scored earlier (an :meth:`entry`, e.g. from a killed evaluation's journal).

        Raises:
            CanetError: the case was already counted.
        """
        row = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
               for k, v in entry["row"].items()}
        case = str(row["case"])
        if case in self._seen:
            raise CanetError(f"case {case!r} scored twice")
        for c in entry.get("absent", []):
            self.absent[int(c)] += 1
        if entry.get("empty_pred"):
            self.empty_pred.append(case)
        if entry.get("empty_gt"):
            self.empty_gt.append(case)
        self._seen.add(case)
        self._units.add(entry["unit"])
        self.rows.append(row)
        self._entries[case] = {**entry, "row": row}
        return row

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The summary dict (see the module docstring); ``extra`` keys are added to it."""
        out = summarize(self.rows)
        out["empty_pred"] = len(self.empty_pred)
        out["empty_gt"] = len(self.empty_gt)
        out["absent_classes"] = {str(c): n for c, n in self.absent.items()}
        out["num_classes"] = self.num_classes
        out["spacing"] = self.units
        out["std_ddof"] = 0
        secs = [r["seconds"] for r in self.rows if math.isfinite(r["seconds"])]
        out["seconds"] = {"mean": float(np.mean(secs)), "total": float(np.sum(secs))} if secs else None
        if self.num_classes > 2:
            out["per_class"] = {
                str(c): {m: stats(r[f"{m}_{c}"] for r in self.rows) for m in METRICS}
                for c in range(1, self.num_classes)
            }
        out.update(extra)
        return out

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write ``metrics.csv`` atomically (NaN written as ``nan``).

        A case name from a file name that is not valid UTF-8 (its bytes kept by
        Python as surrogates) is written with them escaped (``x\\udcffy``).
        """
        cols = self.columns
        with atomic_open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
            writer = csv.writer(fh)
            writer.writerow(cols)
            for row in self.rows:
                writer.writerow([_fmt(row.get(c, float("nan"))) for c in cols])

    def write_summary(self, path: str | os.PathLike[str], **extra: Any) -> dict[str, Any]:
        """Write ``summary.json`` atomically and return the dict written."""
        out = self.summary(**extra)
        atomic_write_text(path, json.dumps(out, indent=2, allow_nan=False) + "\n")
        return out

    def table(self) -> str:
        """A plain-text table of mean ± std per metric, with NaN counts."""
        s = summarize(self.rows)
        lines = [f"{'metric':<8} {'mean':>9} {'std':>9} {'n':>4} {'NaN':>4}"]
        for m in METRICS:
            st = s[m]
            mean = "-" if st["mean"] is None else f"{st['mean']:.4f}"
            std = "-" if st["std"] is None else f"{st['std']:.4f}"
            lines.append(f"{m:<8} {mean:>9} {std:>9} {st['n']:>4} {st['nan']:>4}")
        # multi-class: the counts are of cases with a class missed / predicted where there is none
        pred_said, gt_said = (("with a class missed", "with a class not in the ground truth") if self.num_classes > 2
                              else ("empty predictions", "empty ground truths"))
        lines.append(
            f"cases: {len(self.rows)}  {pred_said}: {len(self.empty_pred)}  "
            f"{gt_said}: {len(self.empty_gt)}  "
            f"distances in {self.units}"
        )
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)
