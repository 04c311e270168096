"""``canet score``: score segmentation files made elsewhere against ground truths.

Each prediction is read in its ground truth's voxel order when both lie on the
same grid in world space (:func:`canet.data.orientation.grid_transform`); grids
that differ are refused in one line. The number of classes is decided case by
case (a 0/k mask is binary).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from canet.errors import CanetError, DataError, first_names
from canet.evaluation.files import find_score_pairs
from canet.labels import refuse_mixed_object_values
from canet.metrics.summary import MetricAccumulator

__all__ = ["score"]


def _read_label(path: Path) -> tuple[np.ndarray, Any]:
    """A label map (uint8 values, as stored) and its :class:`~canet.data.Geometry` from a NIfTI / NRRD / HDF5 file."""
    from canet.data import read_volume
    from canet.data.dataset import as_label

    array, geometry = read_volume(path, "label")
    return as_label(array, path), geometry


def _refuse_mixed_object_values(seen: dict[int, str], masks: str) -> None:
    """Refuse binary ``masks`` that mark their object with different values beyond :data:`~canet.labels.BINARY_CONVENTIONS`.

    Args:
        seen: object value -> where it was first seen (``"case 'a'"``, ``"the prediction of case 'b'"``).
        masks: what the masks are, for the message (``"ground truths"``, ``"masks"``).

    Raises:
        DataError: two such values, e.g. 1 and 2: one structure, or two classes of one label map?
    """
    refuse_mixed_object_values(
        seen, f"the {masks}", "binary masks, or classes of one label map? pass --num-classes 2 to score them as "
        f"binary masks, or --num-classes {max(seen, default=0) + 1} to score each value as its own class",
    )


def _infer_num_classes(pairs: Sequence[tuple[str, Path, Path]]) -> int:
    """The number of classes of a set of ground truths, decided case by case.

    A ground truth with one object value (0/1, 0/255, ...) is a binary mask; one
    with two or more object values is a label map. All binary: 2 classes. With
    label maps: the largest label + 1, and a binary case must hold one of those
    classes (a 0/1 case beside 0/1/2 maps is a map where class 2 is absent).

    Raises:
        DataError: a binary mask whose object value is no class of the label
            maps (0/255 beside 0/1/2): the set mixes binary and multi-class ground truths;
            or all are binary but mark their object with different values beyond
            :data:`~canet.labels.BINARY_CONVENTIONS` (0/1 beside 0/2): which is meant cannot be told.
    """
    from canet.metrics import label_values

    binary: dict[int, str] = {}
    multi: dict[str, list[int]] = {}
    for case, _, gt_file in pairs:
        arr, _ = _read_label(gt_file)
        values = label_values(arr)
        if len(values) > 1:
            multi[case] = values
        elif values:
            binary.setdefault(values[0], case)
    if not multi:
        _refuse_mixed_object_values({v: f"case {c!r}" for v, c in binary.items()}, "ground truths")
        return 2
    classes = max(max(v) for v in multi.values()) + 1
    for value, case in sorted(binary.items()):
        if value >= classes:
            first = next(iter(multi))
            shown = first_names(multi[first], 6)
            raise DataError(
                f"case {case!r}'s ground truth is a binary mask (object value {value}) but case {first!r}'s "
                f"holds the classes {{{shown}}}: the set mixes binary and multi-class ground truths; "
                "score them apart or pass --num-classes"
            )
    return classes


def _prediction_placement(
    case: str, pred_file: Path, gt_file: Path, p_geo: Any, g_geo: Any, ignore_affine: bool
) -> np.ndarray | None:
    """How to read a prediction in its ground truth's voxel order (header check before any scoring).

    Returns:
        The orientation transform for :func:`~canet.data.orientation.apply_transform`
        (also when it is the identity), or None: stored voxel order (``ignore_affine``
        with grids that differ in space, or a file that states no orientation).

    Raises:
        DataError: the grids differ in space (unless ``ignore_affine``) or the shapes
            cannot be matched; ``--ignore-affine`` is suggested only where the stored
            voxel orders can agree (same shape and axis directions, or a prediction
            whose header states no orientation).
    """
    from canet.data.orientation import grid_transform, placement_gap

    same_shape = tuple(p_geo.shape) == tuple(g_geo.shape)
    if not (p_geo.oriented and g_geo.oriented):
        # A header that states no orientation cannot say that its voxels lie in another order
        # (nibabel's fallback affine for it is LAS, centred, which may look like a flip of a centred
        # oriented grid): stored order, as evaluate and training read such labels.
        if same_shape:
            return None
        unstated = pred_file.name if not p_geo.oriented else gt_file.name
        raise DataError(
            f"case {case!r}: prediction shape {tuple(p_geo.shape)} differs from ground truth shape "
            f"{tuple(g_geo.shape)}, and {unstated} states no orientation to put its voxels in the other's order"
        )
    transform = grid_transform(p_geo.affine, p_geo.shape, g_geo.affine, g_geo.shape)
    if transform is not None:
        return transform
    if ignore_affine and same_shape:
        return None
    if not same_shape:
        raise DataError(
            f"case {case!r}: prediction shape {tuple(p_geo.shape)} differs from ground truth shape "
            f"{tuple(g_geo.shape)}, also when its voxels are put in the ground truth's order"
        )
    gap = placement_gap(p_geo.affine, g_geo.affine, g_geo.shape)
    unlabelled_header = not p_geo.oriented or bool(np.allclose(p_geo.affine, np.eye(4)))
    message = (
        f"case {case!r}: prediction {pred_file.name} and ground truth {gt_file.name} lie on different grids in space (their affines "
        f"put a corner {gap:.3g} {g_geo.unit} apart, in {p_geo.axcodes or 'unstated'} and "
        f"{g_geo.axcodes or 'unstated'} voxel order)"
    )
    if unlabelled_header or p_geo.axcodes == g_geo.axcodes:
        message += (
            "; if the prediction's header is wrong and its voxels are stored in the ground truth's order, "
            "pass --ignore-affine"
        )
    else:
        message += "; resample the prediction onto the ground truth's grid"
    raise DataError(message)


def score(
    pred: str | os.PathLike[str],
    gt: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    spacing_from: str = "gt",
    voxels: bool = False,
    num_classes: int | None = None,
    progress: bool = True,
    on_case: Callable[[dict[str, Any]], None] | None = None,
    ignore_affine: bool = False,
) -> dict[str, Any]:
    """Score segmentation files made elsewhere against ground truths.

    Args:
        pred: folder of predictions (or of ``_pred``/``_gt`` pairs when ``gt`` is None).
        gt: folder of ground truths with matching names, or None.
        out_dir: where ``metrics.csv`` and ``summary.json`` go.
        spacing_from: ``"gt"`` (default) or ``"pred"``: whose header gives the spacing.
        voxels: report distances in voxels instead of mm (files that state no
            voxel size are always scored in voxels).
        num_classes: classes including the background. None infers it from the
            ground truths case by case: a mask whose only non-zero value is one
            number (0/1, 0/255, ...) is binary (any non-zero voxel is object); a
            map with two or more labels gives ``largest label + 1`` classes; a
            set mixing binary masks with maps whose classes do not include
            their object value is refused, and so is a binary set whose masks
            (ground truths or predictions) mark their object with values other
            than 1 and 255 side by side (a 0/1 prediction of a 0/2 ground truth).
            A binary scoring refuses a mask with two or more non-zero values.
        progress: tqdm bar over cases.
        on_case: called with each row as it is scored.
        ignore_affine: score pairs whose grids differ in space in stored voxel
            order (refused otherwise: a shifted or resampled prediction would be
            scored in the wrong place). A prediction on the ground truth's grid
            but stored in another voxel order (flipped or permuted, with an
            affine that says so) is always moved into the ground truth's order.
            A pair where either file states no orientation (NIfTI codes 0, an
            NRRD without an anatomical space, HDF5) is scored in stored voxel
            order and needs the same shape (``summary.json``: ``"unoriented"``;
            one warning line counts the pairs where only one file states one).

    Returns:
        The summary dict with ``"rows"`` and ``"table"`` added; it counts the
        predictions moved into the ground truth's voxel order (``"reoriented"``).
    """
    from canet.data import read_geometry
    from canet.data.orientation import apply_transform
    from canet.metrics import check_label_values, label_values

    if spacing_from not in ("gt", "pred"):
        raise CanetError(f"spacing_from must be 'gt' or 'pred', got {spacing_from!r}")
    if num_classes is not None and num_classes < 2:
        raise CanetError(f"num_classes must be at least 2, got {num_classes}")
    if num_classes is not None and num_classes > 256:  # as a datalist's num_classes
        raise CanetError(f"num_classes must be at most 256 (masks are read as values 0..255), got {num_classes}")
    if gt is not None and Path(pred).resolve() == Path(gt).resolve():
        raise DataError(f"the predictions and the ground truths are the same folder ({gt}); every case would score Dice 1")
    pairs = find_score_pairs(pred, gt)
    for case, pred_file, gt_file in pairs:
        if pred_file.resolve() == gt_file.resolve():
            raise DataError(f"case {case!r}: the prediction and the ground truth are the same file ({gt_file})")
    from canet.evaluation.results_folder import prepare_results_folder

    out = Path(out_dir)
    prepare_results_folder(out, fresh=False)  # a run folder is refused now; earlier results go when these are ready
    units: dict[str, Path] = {}
    plans: dict[str, np.ndarray | None] = {}
    unstated = one_sided = 0
    for case, pred_file, gt_file in pairs:  # fail on bad headers before any long work starts
        p_geo, g_geo = read_geometry(pred_file, "label"), read_geometry(gt_file, "label")
        plans[case] = _prediction_placement(case, pred_file, gt_file, p_geo, g_geo, ignore_affine)
        unstated += int(not (p_geo.oriented and g_geo.oriented))
        one_sided += int(p_geo.oriented != g_geo.oriented)
        source = g_geo if spacing_from == "gt" else p_geo
        units.setdefault("voxels" if voxels else source.unit, gt_file if spacing_from == "gt" else pred_file)
    if len(units) > 1:
        raise DataError(
            f"{units['voxels']} states no voxel size but {units['mm']} does; distances would mix voxels "
            "and mm: pass --voxels"
        )
    if one_sided:
        from canet.evaluation.notes import print_warning

        print_warning(f"{one_sided} of {len(pairs)} case(s): only one of the prediction and the ground truth "
                      "states an orientation, so the pair is scored in stored voxel order: check that they overlay")
    inferred_binary = False
    if num_classes is None:
        num_classes = _infer_num_classes(pairs)
        inferred_binary = num_classes == 2
    # object value -> the first mask that marks its object with it (inferred binary scoring only)
    object_values: dict[int, str] = {}
    acc = MetricAccumulator(num_classes=num_classes)
    items: Iterable[tuple[str, Path, Path]] = pairs
    if progress:
        from tqdm import tqdm

        items = tqdm(pairs, desc="score", unit="case")
    reoriented = 0
    identity = np.array([[0, 1], [1, 1], [2, 1]])
    for case, pred_file, gt_file in items:
        p_arr, p_geo = _read_label(pred_file)
        g_arr, g_geo = _read_label(gt_file)
        p_spacing = tuple(p_geo.spacing)
        transform = plans[case]
        if transform is not None and not np.array_equal(transform, identity):
            p_arr = apply_transform(p_arr, transform)
            order = np.argsort(transform[:, 0])  # new axis j holds stored axis order[j]
            p_spacing = tuple(p_geo.spacing[int(i)] for i in order)
            reoriented += 1
        if p_arr.shape != g_arr.shape:
            raise DataError(
                f"case {case!r}: prediction shape {p_arr.shape} differs from ground truth shape {g_arr.shape}"
            )
        for arr, f, what in ((g_arr, gt_file, "ground truth"), (p_arr, pred_file, "prediction")):
            values = label_values(arr)
            check_label_values(values, num_classes, str(f))
            if inferred_binary and values:
                object_values.setdefault(int(values[0]), f"the {what} of case {case!r}")
        # 0/2 predictions beside 0/1 ground truths: scored as binary masks, a prediction that
        # names the wrong class would score Dice 1
        _refuse_mixed_object_values(object_values, "masks")
        source_unit = g_geo.unit if spacing_from == "gt" else p_geo.unit
        sp = None if voxels or source_unit == "voxels" else (g_geo.spacing if spacing_from == "gt" else p_spacing)
        row = acc.add(case, p_arr, g_arr, spacing=sp, seconds=math.nan)
        if on_case is not None:
            on_case(row)
    prepare_results_folder(out, fresh=True)  # every case scored: now the last scoring's results may go
    acc.write_csv(out / "metrics.csv")
    summary = acc.write_summary(
        out / "summary.json", pred=os.path.abspath(pred), gt=os.path.abspath(pred if gt is None else gt),
        spacing_from=None if acc.units == "voxels" else spacing_from, distance_unit=acc.units,
        ignore_affine=ignore_affine, reoriented=reoriented, unoriented=unstated,
    )
    summary["rows"] = acc.rows
    summary["table"] = acc.table()
    return summary
