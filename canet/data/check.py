"""Check a dataset before training on it: ``canet check-data`` and the trainer's start-up check.

:func:`check_dataset` decodes every case of every split and lists each problem
with the file it is in:

* a listed case whose file does not exist;
* an unreadable or truncated file;
* a missing ``image`` or ``label`` (HDF5 dataset, or datalist entry);
* a label that is not on its image's grid in world space (another shape, or
  shifted or resampled; a label stored in another voxel order than its image,
  with an affine that says so, is fine: it is read in the image's order);
* label values that :mod:`canet.labels` refuses (the rule the trainer and
  the metrics apply: outside ``0..num_classes-1``, or in a binary dataset
  more than one object value; 0/255 masks are fine), above 255, or not whole
  numbers; binary labels of a datalist that leaves ``num_classes`` at its
  default and that mark their object with different values (0/1 beside 0/2,
  one class a case of a label map?; 1 beside 255 is fine);
* an image without any finite value (NaN or inf everywhere); an image with
  some NaN or inf voxels is a warning: they are set to the scan's smallest
  finite value when it is read (:func:`canet.data.dataset.fill_nonfinite`);
* an empty image (a zero-length axis, or one constant value everywhere);
* a case id listed twice, and structural problems (no ``train.list``, an
  unparseable datalist, too few training cases for ``labeled``).

Labels are read for labeled, validation and test cases; unlabeled cases only
need an image. Conditions that do not stop training (a label without any
foreground, one image file listed under two ids, a case (id or image file) both
in training and test, a validation case also in training or test, a label file
shared by two images, training images stored in more than one orientation,
validation images stored in another orientation than the training images, NaN
or inf image voxels, a class of a multi-class dataset that no labeled training
label holds) are *warnings*.
It never raises for a problem of the data; :func:`ensure_clean` turns a report
with problems into a :class:`~canet.errors.DataError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from canet.data.dataset import (
    Case,
    DatasetSpec,
    _reason,
    label_on_image_grid,
    open_dataset,
    read_volume,
)
from canet.errors import DataError, first_names
from canet.labels import label_value_problem, label_values, mixed_object_values


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        problems: one line each, ``"<file>: <what is wrong>"``.
        warnings: the same for conditions that do not stop training.
        summary: counts and ranges (see :func:`check_dataset`).
    """

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    def format(self) -> str:
        """The summary, warnings and problems as printable text."""
        s = self.summary
        kind = f" ({s['kind']})" if s.get("kind") else ""  # unknown when the dataset could not be opened
        lines = [f"dataset: {s.get('source', '?')}{kind}"]
        cases = s.get("cases")
        if cases:
            lines.append(
                "cases: {labeled} labeled, {unlabeled} unlabeled, {validation} validation, {test} test".format(
                    **cases
                )
            )
        if "num_classes" in s:
            lines.append(f"classes: {s['num_classes']} (normalize on load: {s.get('normalize')})")
        if s.get("shape_min") is not None:
            lines.append(f"shape, smallest .. largest per axis: {tuple(s['shape_min'])} .. {tuple(s['shape_max'])}")
        if s.get("spacing_min") is not None:
            lines.append(
                f"spacing, smallest .. largest per axis: {_fmt_vec(s['spacing_min'])} .. {_fmt_vec(s['spacing_max'])} "
                f"{s.get('spacing_unit', '')}".rstrip()
            )
        if s.get("orientations"):
            counts = ", ".join(f"{k} {v}" for k, v in s["orientations"].items())
            lines.append(f"orientation of the training images: {counts}")
        fg = s.get("foreground_fraction")
        if fg:
            lines.append(
                f"foreground fraction: mean {fg['mean']:.4f}, min {fg['min']:.4f}, max {fg['max']:.4f} "
                f"({fg['cases']} labels)"
            )
        it = s.get("intensity")
        if it:
            lines.append(
                f"intensity: {it['min']:.4g} .. {it['max']:.4g} (mean of case means {it['mean']:.4g}, "
                f"mean of case stds {it['std']:.4g})"
            )
        lines.append(f"files read: {s.get('files_read', 0)}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for p in self.problems:
            lines.append(f"problem: {p}")
        lines.append(
            "OK: no problems found" if self.ok else f"FAILED: {len(self.problems)} problem(s)"
        )
        return "\n".join(lines)


def _fmt_vec(v: Iterable[float]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


def ensure_clean(report: CheckReport) -> None:
    """Raise :class:`DataError` listing the problems of ``report`` (nothing if it is clean)."""
    if report.problems:
        n = len(report.problems)
        raise DataError(f"the dataset has {n} problem(s): " + "; ".join(report.problems))


def check_before_training(
    root_or_datalist: str | os.PathLike[str], labeled: int | None = None, log: Callable[[str], None] = print
) -> CheckReport:
    """The trainer's start-up check: :func:`check_dataset`, warnings logged, problems raised.

    Args:
        root_or_datalist, labeled: as for :func:`check_dataset`.
        log: where ``warning: ...`` lines go.

    Returns:
        The report of a dataset without problems.

    Raises:
        DataError: one line naming the first problems, how many there are, and
            how to see them all or skip the check.
    """
    report = check_dataset(root_or_datalist, labeled=labeled)
    for warning in report.warnings:
        log(f"warning: {warning}")
    if report.problems:
        n = len(report.problems)
        shown = "; ".join(report.problems[:3]) + (f"; and {n - 3} more" if n > 3 else "")
        raise DataError(
            f"the dataset has {n} problem(s), training not started: {shown} (`canet check-data "
            f"{root_or_datalist}` lists them; data.check: false or --skip-data-check skips the check)"
        )
    return report


class _Stats:
    """Running ranges over the cases read."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.training_shapes: list[tuple[int, ...]] = []  # of the labeled and unlabeled training images
        self.spacings: list[tuple[float, ...]] = []
        self.fg: list[float] = []
        self.lo = np.inf
        self.hi = -np.inf
        self.means: list[float] = []
        self.stds: list[float] = []
        self.files = 0
        self.units: set[str] = set()
        self.orientations: dict[str, int] = {}
        self.validation_orientations: dict[str, list[str]] = {}  # axis codes -> validation case ids
        self.labeled_read = 0  # labeled training labels whose values passed the rule
        self.labeled_classes: dict[int, int] = {}  # class -> how many of them hold it
        self.object_values: dict[int, str] = {}  # binary labels: object value -> the first case id with it

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"files_read": self.files}
        unit = next(iter(self.units)) if len(self.units) == 1 else "mixed"
        if self.training_shapes:
            out["training_shape_min"] = [int(v) for v in np.asarray(self.training_shapes).min(axis=0)]
        if self.shapes:
            arr = np.asarray(self.shapes)
            out["shape_min"] = [int(v) for v in arr.min(axis=0)]
            out["shape_max"] = [int(v) for v in arr.max(axis=0)]
        if self.spacings:
            arr = np.asarray(self.spacings)
            out["spacing_min"] = [float(v) for v in arr.min(axis=0)]
            out["spacing_max"] = [float(v) for v in arr.max(axis=0)]
            out["spacing_unit"] = unit
        if self.fg:
            out["foreground_fraction"] = {
                "mean": float(np.mean(self.fg)), "min": float(np.min(self.fg)),
                "max": float(np.max(self.fg)), "cases": len(self.fg),
            }
        if self.means:
            out["intensity"] = {
                "min": float(self.lo), "max": float(self.hi),
                "mean": float(np.mean(self.means)), "std": float(np.mean(self.stds)),
            }
        if self.orientations:
            out["orientations"] = dict(self.orientations)
        return out


def _check_case(
    case: Case, need_label: bool, num_classes: int, stats: _Stats, report: CheckReport, training: bool = False,
    validation: bool = False,
) -> None:
    """Read one case fully and record its problems and statistics."""
    try:
        image, geometry = read_volume(case.image, "image")
        spacing = geometry.spacing
        stats.units.add(geometry.unit)
        if training and geometry.axcodes is not None:
            stats.orientations[geometry.axcodes] = stats.orientations.get(geometry.axcodes, 0) + 1
        if validation and geometry.axcodes is not None:
            stats.validation_orientations.setdefault(geometry.axcodes, []).append(case.case_id)
    except DataError as exc:
        report.problems.append(str(exc))
        msg = str(exc)
        if case.label == case.image and "no 'image' dataset" not in msg and "'image' is a group" not in msg:
            return  # a missing or unreadable file is one problem, not two
        image = None
    if image is not None:
        stats.files += 1
        stats.shapes.append(tuple(int(v) for v in image.shape))
        if training:
            stats.training_shapes.append(tuple(int(v) for v in image.shape))
        stats.spacings.append(tuple(float(v) for v in spacing))
        if image.size == 0:
            report.problems.append(f"{case.image}: image is empty (shape {tuple(image.shape)})")
            image = None
        elif not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
            report.problems.append(f"{case.image}: image has non-real dtype {image.dtype}")
            image = None
    if image is not None:
        finite = np.isfinite(image) if np.issubdtype(image.dtype, np.floating) else None
        if finite is not None and not finite.all():
            n_nan = int(np.isnan(image).sum())
            n_inf = int(image.size - finite.sum()) - n_nan
            if finite.any():
                report.warnings.append(
                    f"{case.image}: image holds {n_nan} NaN and {n_inf} inf values (set to the scan's "
                    "smallest finite value when it is read)"
                )
            else:
                report.problems.append(f"{case.image}: every voxel of the image is NaN or infinite")
            values = image[finite]
        else:
            values = image
        if values.size:
            lo, hi = values.min(), values.max()
            if lo == hi:
                report.problems.append(f"{case.image}: image is empty (every voxel is {float(lo):.6g})")
            stats.lo = min(stats.lo, float(lo))
            stats.hi = max(stats.hi, float(hi))
            stats.means.append(float(values.mean(dtype=np.float64)))
            stats.stds.append(float(values.std(dtype=np.float64)))
        elif finite is not None:
            pass  # all NaN / inf: already reported
    if case.label is None:
        if need_label:
            report.problems.append(f"{case.image}: case {case.case_id!r} has no label")
        return
    if not need_label:
        return
    try:
        label, label_geometry = read_volume(case.label, "label")
    except DataError as exc:
        report.problems.append(str(exc))
        return
    stats.files += int(case.label != case.image)
    if image is not None:
        try:
            label = label_on_image_grid(label, label_geometry, geometry, case.label, case.image)
        except DataError as exc:
            report.problems.append(str(exc))
            return
        if label_geometry.oriented != geometry.oriented:
            stated, bare = ("image", "label") if geometry.oriented else ("label", "image")
            report.warnings.append(
                f"{case.label}: its {stated} states an orientation and its {bare} does not, so the label is "
                "taken in the image's stored voxel order: check that they overlay"
            )
    if label.size == 0:
        report.problems.append(f"{case.label}: label is empty (shape {tuple(label.shape)})")
        return
    if not (np.issubdtype(label.dtype, np.number) or label.dtype == np.bool_):
        report.problems.append(f"{case.label}: label has non-numeric dtype {label.dtype}")
        return
    if np.issubdtype(label.dtype, np.floating):
        finite = np.isfinite(label)
        if not finite.all():
            report.problems.append(
                f"{case.label}: label holds {int(label.size - finite.sum())} NaN or inf values"
            )
            return
        fractional = label != np.round(label)
        if fractional.any():
            report.problems.append(
                f"{case.label}: label values must be whole numbers, got {float(label[fractional].ravel()[0])}"
            )
            return
    objects = label_values(label)
    problem = label_value_problem(objects, num_classes)
    if problem is None and objects and objects[-1] > 255:
        problem = f"holds value {objects[-1]}, above 255 (labels are stored as bytes)"
    if problem is not None:
        report.problems.append(f"{case.label}: label {problem}")
        return
    if num_classes == 2 and objects:
        stats.object_values.setdefault(int(objects[0]), case.case_id)
    if training and need_label:
        stats.labeled_read += 1
        for value in objects:
            stats.labeled_classes[value] = stats.labeled_classes.get(value, 0) + 1
    fraction = float(np.count_nonzero(label)) / label.size
    stats.fg.append(fraction)
    if fraction == 0.0:
        report.warnings.append(f"{case.label}: label has no foreground")


def _duplicates(spec: DatasetSpec, report: CheckReport) -> None:
    """Cases listed twice, or in training and test (or validation), by id and by file.

    The files are compared by their real path, so one image listed under two ids, or
    once relative and once absolute, is caught like an id listed twice.
    """
    real = functools.cache(os.path.realpath)  # each file is resolved once, not once per comparison
    seen: dict[str, str] = {}
    files: dict[tuple[str, str], str] = {}  # (group, real path of the image) -> case id
    for split in ("labeled", "unlabeled", "validation", "test"):
        for case in getattr(spec, split):
            group = "train" if split in ("labeled", "unlabeled") else split
            key = f"{group}:{case.case_id}"
            where = (group, real(case.image))
            if key in seen:
                report.problems.append(f"{case.image}: case {case.case_id!r} is listed twice in {group}")
            elif where in files:  # a warning: two annotations of one scan may be meant
                report.warnings.append(
                    f"{case.image}: the image of case {case.case_id!r} is also that of case {files[where]!r} "
                    f"in {group} (one scan listed under two ids)"
                )
            seen[key] = split
            files.setdefault(where, case.case_id)
    train_ids = {c.case_id for c in spec.train}
    test_ids = {c.case_id for c in spec.test}
    train_files: dict[str, str] = {}  # real path of an image -> the first case id with it
    test_files: dict[str, str] = {}
    for by_file, group in ((train_files, spec.train), (test_files, spec.test)):
        for case in group:
            by_file.setdefault(real(case.image), case.case_id)
    for case in spec.test:
        if case.case_id in train_ids:
            report.warnings.append(f"{case.image}: case {case.case_id!r} is in both training and test")
        elif real(case.image) in train_files:
            other = train_files[real(case.image)]
            report.warnings.append(
                f"{case.image}: test case {case.case_id!r} is the image of training case {other!r}"
            )
    for case in spec.validation:  # a checkpoint chosen on such a case is chosen partly on what it saw or is tested on
        for ids, by_file, other in ((train_ids, train_files, "training"), (test_ids, test_files, "test")):
            if case.case_id in ids:
                report.warnings.append(f"{case.image}: case {case.case_id!r} is in both {other} and validation")
            elif real(case.image) in by_file:
                report.warnings.append(
                    f"{case.image}: validation case {case.case_id!r} is the image of {other} case "
                    f"{by_file[real(case.image)]!r}"
                )
    labels: dict[str, tuple[str, str]] = {}  # real path of a label -> (case id, real path of its image)
    for case in [*spec.labeled, *spec.validation, *spec.test]:
        if case.label is None or case.label == case.image:
            continue
        label, image = real(case.label), real(case.image)
        first = labels.setdefault(label, (case.case_id, image))
        if first[1] != image:
            report.warnings.append(
                f"{case.label}: the label of case {case.case_id!r} is also that of case {first[0]!r}, "
                "whose image is another file (a copy-paste slip?)"
            )


def check_dataset(
    root_or_datalist: str | os.PathLike[str], labeled: int | None = None, progress: bool = False
) -> CheckReport:
    """Check every case of a dataset; never raises for a problem of the data.

    Args:
        root_or_datalist: LA folder or datalist (see :func:`canet.data.open_dataset`).
        labeled: as in :func:`~canet.data.open_dataset`; labels of the cases
            it makes unlabeled are not read.
        progress: show a tqdm bar over the cases.

    Returns:
        A :class:`CheckReport`. ``summary`` holds ``source``, ``kind``,
        ``num_classes``, ``normalize``, ``cases`` (counts per split),
        ``files_read``, ``shape_min``/``shape_max``,
        ``spacing_min``/``spacing_max`` (with ``spacing_unit``: ``"voxels"``
        for LA and files that state no voxel size, ``"mm"`` otherwise,
        ``"mixed"`` for both), ``orientations`` (axis codes of the oriented
        training images and how many have each), ``foreground_fraction`` (mean/min/max
        over the labels read) and ``intensity`` (min/max over all images, mean
        of per-case means and stds, of the values as stored).
    """
    report = CheckReport()
    source = Path(os.fspath(root_or_datalist))
    report.summary["source"] = str(source)
    try:
        spec = open_dataset(source, labeled=labeled)
    except DataError as exc:
        report.problems.append(str(exc))
        return report
    except Exception as exc:  # never a traceback from check-data
        report.problems.append(f"{source}: cannot open dataset ({_reason(exc)})")
        return report
    report.summary.update(
        kind=spec.kind, num_classes=spec.num_classes, normalize=spec.normalize,
        cases={"labeled": len(spec.labeled), "unlabeled": len(spec.unlabeled),
               "validation": len(spec.validation), "test": len(spec.test)},
    )
    if not spec.labeled:
        where = spec.datalist if spec.datalist is not None else spec.root / "train.list"
        report.problems.append(f"{where}: no labeled training cases")
    _duplicates(spec, report)
    jobs: list[tuple[Case, bool, bool]] = [(c, True, True) for c in spec.labeled]
    jobs += [(c, False, True) for c in spec.unlabeled]
    jobs += [(c, c.label is not None, False) for c in [*spec.validation, *spec.test]]
    stats = _Stats()
    items: Iterable[tuple[Case, bool, bool]] = jobs
    if progress:
        from tqdm import tqdm

        items = tqdm(jobs, desc="check-data", unit="case")
    validation_ids = {id(c) for c in spec.validation}
    for case, need_label, training in items:
        try:
            _check_case(case, need_label, spec.num_classes, stats, report, training, id(case) in validation_ids)
        except Exception as exc:  # an unforeseen reader failure is still one line
            report.problems.append(f"{case.image}: cannot check case ({_reason(exc)})")
    if len(stats.orientations) > 1:
        where = spec.datalist if spec.datalist is not None else spec.root
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(stats.orientations.items(), key=lambda kv: -kv[1]))
        report.warnings.append(
            f"{where}: training images come in {len(stats.orientations)} orientations ({counts}); the network "
            "sees each in its stored voxel order, so reorient them to one orientation first"
        )
    elif len(stats.orientations) == 1:
        trained = next(iter(stats.orientations))
        other = {k: v for k, v in stats.validation_orientations.items() if k != trained}
        if other:
            where = spec.datalist if spec.datalist is not None else spec.root
            ids = [i for v in other.values() for i in v]
            shown = first_names(ids, 5)
            report.warnings.append(
                f"{where}: {len(ids)} validation image(s) are stored in another orientation "
                f"({', '.join(sorted(other))}) than the training images ({trained}): {shown}; validation "
                "during training sees them in stored voxel order, so reorient them to the training orientation"
            )
    values = stats.object_values
    mixed = mixed_object_values(values) if spec.kind == "datalist" and not spec.num_classes_stated else None
    if mixed is not None:
        (v1, c1), (v2, c2) = mixed
        consecutive = sorted(values) == list(range(1, len(values) + 1))
        classes = (
            f"{max(values) + 1} to learn each value as its own class" if consecutive
            else f"or relabel them as classes 1..{len(values)} and state {len(values) + 1} to learn each as its own"
        )
        report.problems.append(
            f"{spec.datalist}: the labels mark their object with different values ({v1} in case {c1!r}, {v2} in "
            f"case {c2!r}): one structure, or the classes of one label map, one class a case? state num_classes "
            f"in the datalist: 2 to read any non-zero value as the object, {classes}"
        )
    if spec.num_classes > 2 and spec.labeled and stats.labeled_read == len(spec.labeled):
        absent = [c for c in range(1, spec.num_classes) if c not in stats.labeled_classes]
        if absent:
            where = spec.datalist if spec.datalist is not None else spec.root
            shown = ", ".join(str(c) for c in absent)
            report.warnings.append(
                f"{where}: class(es) {shown} of the {spec.num_classes} classes appear in none of the "
                f"{len(spec.labeled)} labeled training labels, so the network never learns them; check "
                "num_classes and which cases are labeled"
            )
    report.summary.update(stats.summary())
    return report
