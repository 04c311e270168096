"""Evaluate a checkpoint on a dataset split, segment new scans, score prediction folders.

The three functions behind ``canet evaluate``, ``canet predict`` and ``canet score``:

- :func:`evaluate` predicts every case of a split with sliding windows
  (:func:`canet.inferers.predict_volume`) and writes ``metrics.csv``
  (``case,dice,jaccard,hd95,asd,seconds``) and ``summary.json`` (see
  :mod:`canet.metrics.summary`). :func:`evaluate_model` does the same for a
  model already in memory (the trainer and the demo use it).
- :func:`predict_files` segments NIfTI / NRRD / HDF5 files and writes NIfTI
  masks with each input's affine, in each input's voxel order.
- :func:`score` computes the same metrics for masks made elsewhere.

How volumes are predicted (mode, windows, TTA, LCC, device, bf16 autocast) is
one :class:`~canet.inferers.settings.InferenceSettings`, given to each
function as ``settings`` (or field by field as keyword arguments); the device
defaults to ``auto`` (CUDA where available). ``summary.json`` records the
settings used (:meth:`~canet.inferers.settings.InferenceSettings.record`).

Distances are in voxels for the LA benchmark (as published) and in mm (from the
volumes' headers) for other data, unless asked otherwise (``spacing``); a file
that states no voxel size (an NRRD without space directions) is scored in
voxels, and ``summary.json`` says which in ``"distance_unit"``.

Checkpoints written by the trainer record how the training data looked
(``"preprocessing"``, see :mod:`canet.data.preprocessing`). ``predict`` and
``evaluate`` give the network the same kind of input: z-scored or raw
intensities as in training, and each volume turned (flips and transposes,
no resampling) into the training orientation, the prediction turned back into
the volume's own voxel order; they warn when a volume's voxel size differs
from the training data's median by more than 20 %. Checkpoints without the
record (older ones, or made outside the trainer) keep the earlier behaviour:
z-scoring unless their config says ``normalize: false``, volumes in stored
voxel order, no spacing check, largest-connected-component on in ``predict``.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from canet.data.dataset import (
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    file_format,
    read_geometry,
    strip_suffix,
)
from canet.device import select_device
from canet.errors import CanetError, CheckpointError, DataError
from canet.inferers.predict import model_device, predict_volume
from canet.inferers.settings import InferenceSettings
from canet.metrics.journal import CaseJournal
from canet.metrics.summary import MetricAccumulator
from canet.patch_size import check_patch_size

DEFAULT_PATCH_SIZE: tuple[int, int, int] = (112, 112, 80)
SPLITS: tuple[str, ...] = ("test", "validation", "labeled", "unlabeled", "train")
SPACING_CHOICES: tuple[str, ...] = ("auto", "voxels", "mm")
#: A volume whose voxel size differs from the training data's by more than this fraction is warned about.
SPACING_TOLERANCE = 0.2
#: Prediction and ground truth are placed alike when no corner of the volume moves by more than
#: this fraction of the smallest voxel size between their affines.
AFFINE_TOLERANCE = 0.01

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "checkpoint_settings",
    "evaluate",
    "evaluate_model",
    "find_image_files",
    "find_score_pairs",
    "image_file_shape",
    "predict_files",
    "predict_oriented",
    "print_warning",
    "score",
    "spacing_mismatch",
    "strip_suffix",
]


class VolumeLike(Protocol):
    """What :func:`evaluate_model` needs of a case (``canet.data.Volume`` fits)."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]


# --------------------------------------------------------------------------- files


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.startswith(".")


def find_image_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``inputs`` (files, or folders whose images are taken, sorted).

    Raises:
        DataError: an input does not exist, or no image file was found.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if _is_image(f)))
        elif p.is_file():
            if not p.name.lower().endswith(IMAGE_SUFFIXES):
                raise DataError(f"not a {IMAGE_FORMATS} file ({', '.join(IMAGE_SUFFIXES)}): {p}")
            files.append(p)
        else:
            raise DataError(f"input not found: {p}")
    if not files:
        raise DataError(f"no {IMAGE_FORMATS} files matched {', '.join(str(i) for i in inputs)}")
    return files


def image_file_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Shape of a NIfTI / NRRD / HDF5 volume from its header only (cheap; checks it is 3D).

    Raises:
        DataError: missing or unreadable file, unknown extension, or not 3D.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"image not found: {p}")
    fmt = file_format(p)
    try:
        if fmt == "nifti":
            import nibabel as nib

            shape = tuple(int(s) for s in nib.load(str(p)).shape)
        elif fmt == "nrrd":
            import nrrd

            shape = tuple(int(s) for s in nrrd.read_header(str(p))["sizes"])
        else:
            shape = read_geometry(p, "image").shape
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read image header of {p}: {text}") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise DataError(f"{p} holds a {len(shape)}D image of shape {shape}; expected a 3D volume")
    return shape  # type: ignore[return-value]


# --------------------------------------------------------------------------- checkpoints


def _find_key(config: Any, key: str) -> Any:
    """``config[key]``, else the first ``config[section][key]`` one level down, else None."""
    if not isinstance(config, dict):
        return None
    if key in config:
        return config[key]
    for value in config.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def checkpoint_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """Inference settings of a loaded checkpoint.

    Returns:
        ``{"patch_size", "num_classes", "normalize", "orientation", "spacing",
        "lcc", "recorded"}``: the patch size from ``config["patch_size"]`` (or
        one section down), else the model's ``patch_size`` argument, else
        ``(112, 112, 80)``; the number of classes from the model arguments
        (default 2). The rest come from the checkpoint's ``"preprocessing"``
        record (:mod:`canet.data.preprocessing`; ``recorded`` says whether it
        has one): ``normalize`` (bool: whether the network's input images were
        z-scored), ``orientation`` (axis codes or None: stored voxel order),
        ``spacing`` (median training voxel size in mm or None) and ``lcc``
        (the training dataset's post-processing default). Without the record
        ``normalize`` comes from a ``normalize`` key of the config (None when
        it has none) and the others are None.
    """
    config = payload.get("config")
    kwargs = (payload.get("model") or {}).get("kwargs") or {}
    patch = _find_key(config, "patch_size")
    if patch is None:
        patch = kwargs.get("patch_size", DEFAULT_PATCH_SIZE)
    try:
        patch_size = check_patch_size(patch)
    except CanetError:
        raise CheckpointError(f"checkpoint has a bad patch size {patch!r}") from None
    num_classes = kwargs.get("num_classes", _find_key(config, "num_classes") or 2)
    record = payload.get("preprocessing")
    if not isinstance(record, dict):
        normalize = _find_key(config, "normalize")
        return {
            "patch_size": patch_size,
            "num_classes": int(num_classes),
            "normalize": None if normalize is None else bool(normalize),
            "orientation": None,
            "spacing": None,
            "lcc": None,
            "recorded": False,
        }
    mode = record.get("normalize")
    if mode not in ("zscore", "none"):
        raise CheckpointError(f"checkpoint records an unknown normalisation {mode!r}")
    orientation = record.get("orientation")
    if orientation is not None:
        from canet.data.orientation import check_axcodes

        try:
            orientation = check_axcodes(orientation)
        except DataError:
            raise CheckpointError(f"checkpoint records a bad orientation {orientation!r}") from None
    spacing = record.get("spacing")
    if spacing is not None:
        try:
            spacing = tuple(float(v) for v in spacing)
        except (TypeError, ValueError):
            spacing = ()
        if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise CheckpointError(f"checkpoint records a bad spacing {record.get('spacing')!r}")
    lcc = record.get("lcc")
    return {
        "patch_size": patch_size,
        "num_classes": int(num_classes),
        "normalize": mode == "zscore",
        "orientation": orientation,
        "spacing": spacing,
        "lcc": None if lcc is None else bool(lcc),
        "recorded": True,
    }


def _load(checkpoint: str | os.PathLike[str], device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    from canet.checkpoint import load_checkpoint
    from canet.models import build_generator

    payload = load_checkpoint(checkpoint, map_location="cpu")
    model = build_generator(payload)
    try:
        select_device(device)  # cuda:N becomes the current device: no context on GPU 0
        model = model.to(device)
    except (RuntimeError, AssertionError) as exc:  # e.g. "Torch not compiled with CUDA enabled"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CanetError(f"device {str(device)!r} is not available: {first}") from None
    return model.eval(), payload


# --------------------------------------------------------------------------- evaluate


def _safe_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id) or "case"


def print_warning(message: str) -> None:
    """Default warning sink of :func:`evaluate` and :func:`predict_files`: one ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _fmt_spacing(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


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


def predict_oriented(
    model: nn.Module,
    image: np.ndarray,
    affine: np.ndarray,
    patch_size: Sequence[int],
    orientation: str | None = None,
    oriented: bool = True,
    settings: InferenceSettings | None = None,
    **changes: Any,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """:func:`canet.inferers.predict_volume` in the training orientation, results in stored order.

    Args:
        model, patch_size, settings, changes: as for :func:`~canet.inferers.predict_volume`.
        image: ``X x Y x Z`` (or ``C x X x Y x Z``) as stored in the file.
        affine: the file's voxel-to-world matrix (RAS+).
        orientation: the training orientation's axis codes; None keeps the
            stored voxel order.
        oriented: whether the file states its orientation (False: stored order).

    Returns:
        ``(mask, probabilities, reorientation)``: mask and probabilities in the
        stored voxel order (as :func:`~canet.inferers.predict_volume` returns
        them), and the :class:`~canet.data.orientation.Reorientation` used (None
        when the volume stayed in stored order).
    """
    arr = np.asarray(image)
    if orientation is None or not oriented:
        mask, probs = predict_volume(model, arr, patch_size, settings, **changes)
        return mask, probs, None
    from canet.data.orientation import reorientation

    turn = reorientation(affine, arr.shape[-3:], orientation)
    mask, probs = predict_volume(model, turn.forward(arr), patch_size, settings, **changes)
    return turn.backward(mask), turn.backward(probs), turn


def evaluate_model(
    model: nn.Module,
    volumes: Iterable[VolumeLike],
    patch_size: Sequence[int],
    out_dir: str | os.PathLike[str] | None = None,
    num_classes: int = 2,
    settings: InferenceSettings | None = None,
    spacing: str = "mm",
    save_predictions: bool = False,
    report: bool = False,
    progress: bool = False,
    extra_summary: dict[str, Any] | None = None,
    orientation: str | None = None,
    train_spacing: Sequence[float] | None = None,
    warn: Callable[[str], None] | None = None,
    resume: bool = False,
    **changes: Any,
) -> dict[str, Any]:
    """Predict and score labelled volumes with a model in memory.

    Args:
        model: generator (``SegOutput`` or logits); run in eval mode, mode restored.
        volumes: objects with ``case_id``, ``image`` (``X x Y x Z`` normalised
            float), ``label``, ``affine`` and ``spacing`` (``canet.data.Volume``;
            its ``spacing_unit`` and ``oriented`` are read when present).
        patch_size: sliding-window size.
        out_dir: where ``metrics.csv``/``summary.json`` go (None: write nothing).
        num_classes: classes including the background (2 = binary: any one
            non-zero label value is the object).
        settings: how volumes are predicted
            (:class:`~canet.inferers.settings.InferenceSettings`; ``lcc`` None
            counts as on); ``changes``: its fields to change for this call
            (``mode="reference"``, ``device="cuda"``, ...).
        spacing: ``"mm"`` (each volume's spacing; voxels for volumes whose
            files state none) or ``"voxels"``.
        save_predictions: write ``<case>_pred.nii.gz`` with the volume's affine.
        report: keep three orthogonal slices per case in ``report_slices/`` and
            write ``report.html``.
        progress: show a tqdm bar over cases.
        extra_summary: keys added to the summary.
        orientation: training orientation (axis codes); oriented volumes are
            predicted in it and their masks turned back (None: stored order).
        train_spacing: median training voxel size (mm, training orientation);
            a volume more than 20 % off on an axis gets a warning.
        warn: where warnings go (default: ``warning: ...`` on stderr); they are
            also listed in the summary's ``"warnings"``.
        resume: keep the cases that a killed evaluation into ``out_dir``
            already scored (its ``cases.jsonl``, see :mod:`canet.metrics.journal`;
            refused if it was made with other settings) and predict the rest.

    Returns:
        The summary dict (also written to ``summary.json``), with ``"rows"``
        holding the per-case rows; it records the settings
        (:meth:`~canet.inferers.settings.InferenceSettings.record`: mode, TTA,
        LCC, amp, batch, device, fast-mode overlap and weighting).

    Raises:
        DataError: a case without label, shapes that differ, label values the
            number of classes cannot score, or cases whose distances would mix
            mm and voxels.
        CanetError: a bad setting, or a device (or bf16 autocast) that is not available.
    """
    s = InferenceSettings.make(settings, **changes)
    if s.lcc is None:
        s = s.replace(lcc=True)
    run_device = s.run_device(model_device(model))
    s = s.replace(device=str(run_device))
    patch = check_patch_size(patch_size)
    if spacing not in ("mm", "voxels"):
        raise CanetError(f"spacing must be 'mm' or 'voxels', got {spacing!r}")
    out = Path(out_dir) if out_dir is not None else None
    if (save_predictions or report) and out is None:
        raise CanetError("save_predictions and report need an output folder")
    sink = warn or print_warning
    warnings: list[str] = []
    acc = MetricAccumulator(num_classes=num_classes)
    items: Iterable[VolumeLike] = volumes
    if progress:
        from tqdm import tqdm

        total = len(volumes) if hasattr(volumes, "__len__") else None  # type: ignore[arg-type]
        items = tqdm(volumes, desc="evaluate", unit="case", total=total)
    names: set[str] = set()
    units: dict[str, str] = {}
    reoriented = 0
    journal = None
    done: dict[str, dict[str, Any]] = {}
    if out is not None:
        header = {
            "settings": {k: v for k, v in s.record().items() if k != "device"},
            "patch_size": list(patch), "num_classes": num_classes, "spacing": spacing,
            "orientation": orientation, "extra": extra_summary or {},
        }
        journal = CaseJournal(out, header)
        done = journal.open(resume)
    for vol in items:
        if vol.case_id in done:
            row = acc.restore(done[vol.case_id])
            units.setdefault("voxels" if spacing == "voxels" else getattr(vol, "spacing_unit", "mm"), vol.case_id)
            names.add(_safe_name(vol.case_id))
            continue
        if vol.label is None:
            raise DataError(f"case {vol.case_id!r} has no label; evaluation needs ground truth")
        image = np.asarray(vol.image)
        label = np.asarray(vol.label)
        if image.shape[-3:] != label.shape:
            raise DataError(f"case {vol.case_id!r}: image shape {image.shape} and label shape {label.shape} differ")
        unit = "voxels" if spacing == "voxels" else getattr(vol, "spacing_unit", "mm")
        if units and unit not in units:
            other = next(iter(units))
            raise DataError(
                f"case {vol.case_id!r} has distances in {unit} but case {units[other]!r} in {other} "
                "(its file states no voxel size); evaluate with --spacing voxels"
            )
        units.setdefault(unit, vol.case_id)
        start = time.perf_counter()
        mask, _, turn = predict_oriented(
            model, image, vol.affine, patch, orientation=orientation,
            oriented=bool(getattr(vol, "oriented", True)), settings=s,
        )
        seconds = time.perf_counter() - start
        reoriented += int(turn is not None and not turn.identity)
        if train_spacing is not None and getattr(vol, "spacing_unit", "mm") == "mm":
            seen = turn.spacing if turn is not None else tuple(float(v) for v in vol.spacing)
            message = spacing_mismatch(f"case {vol.case_id!r}", seen, train_spacing)
            if message:
                warnings.append(message)
                sink(message)
        case_spacing = None if unit == "voxels" else tuple(float(s) for s in vol.spacing)
        row = acc.add(vol.case_id, mask, label, spacing=case_spacing, seconds=seconds)
        if journal is not None:
            journal.add(acc.entry(vol.case_id))
        name = _safe_name(vol.case_id)
        if name in names:
            raise DataError(f"two cases map to the same file name {name!r}")
        names.add(name)
        if save_predictions and out is not None:
            from canet.data import save_nifti

            save_nifti(out / f"{name}_pred.nii.gz", mask.astype(np.uint8), vol.affine)
        if report and out is not None:
            from canet.report import save_case_slices

            save_case_slices(
                out / "report_slices" / f"{name}.npz", vol.case_id, image if image.ndim == 3 else image[0],
                label, mask, vol.spacing, row["dice"],
            )
    if not acc.rows:
        raise DataError("no cases to evaluate")
    extra: dict[str, Any] = {**s.record(run_device), "patch_size": list(patch)}
    extra.update(distance_unit=acc.units, orientation=orientation, reoriented=reoriented, warnings=warnings)
    extra.update(extra_summary or {})
    if out is not None:
        acc.write_csv(out / "metrics.csv")
        summary = acc.write_summary(out / "summary.json", **extra)
        if report:
            from canet.report import write_report

            write_report(out)
        if journal is not None:
            journal.close(remove=True)
    else:
        summary = acc.summary(**extra)
    summary["rows"] = acc.rows
    summary["table"] = acc.table()
    return summary


def checkpoint_selection(payload: dict[str, Any], split: str) -> dict[str, Any]:
    """How a checkpoint was chosen, for the summary of scoring it on ``split``.

    ``best_val.pt`` of a run records ``selected_on`` (the split whose Dice picked
    it); ``last.pt`` and older checkpoints record none.

    Returns:
        ``{"selected_on": split name or None, "selected_on_data": the training
        data root or None, "selected_on_scored_split": bool}``; the last is True
        when the checkpoint was picked on a split of the same name as ``split``
        (also when the data folders differ: a copy of the same set cannot be
        told apart, and a needless warning costs less than a silent one).
    """
    selected = payload.get("selected_on")
    root = ((payload.get("config") or {}).get("data") or {}).get("root") if selected else None
    return {
        "selected_on": selected,
        "selected_on_data": root,
        "selected_on_scored_split": selected is not None and selected == split,
    }


def evaluate(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    split: str = "test",
    settings: InferenceSettings | None = None,
    out_dir: str | os.PathLike[str] = "eval",
    save_predictions: bool = False,
    report: bool = False,
    spacing: str = "auto",
    max_cases: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    resume: bool = False,
    **changes: Any,
) -> dict[str, Any]:
    """Evaluate a checkpoint on one split of a dataset and write the results.

    Args:
        checkpoint: canet checkpoint file.
        data: LA root folder or a datalist (see ``canet.data.open_dataset``).
        split: ``test`` (default), ``validation``, ``labeled``, ``unlabeled`` or ``train``.
        settings: how volumes are predicted
            (:class:`~canet.inferers.settings.InferenceSettings`: ``mode``
            ``"fast"`` (default) or ``"reference"`` (the literature's protocol),
            windows, TTA, device (default ``auto``), ``amp``); its ``lcc`` None
            (default) takes the dataset's default (on for the LA layout, a
            datalist's ``postprocess.lcc`` otherwise, default off).
        out_dir: output folder for ``metrics.csv``, ``summary.json`` (and
            predictions / report).
        save_predictions: write ``<case>_pred.nii.gz`` per case.
        report: write ``report.html`` (and ``report_slices/``).
        spacing: ``"auto"`` (voxels for LA, as published; mm otherwise),
            ``"voxels"`` or ``"mm"``.
        max_cases: evaluate only the first N cases of the split.
        progress: tqdm bar over cases.
        warn: where warnings go (see :func:`evaluate_model`).
        resume: keep the cases a killed evaluation into ``out_dir`` already
            scored (see :func:`evaluate_model`).
        changes: fields of ``settings`` to change (``mode="reference"``, ``lcc=False``, ...).

    Images get the checkpoint's recorded normalisation (LA ``.h5`` volumes are
    used as stored: they were z-scored when made) and are predicted in its
    recorded orientation (see the module docstring).

    Returns:
        The summary (see :func:`evaluate_model`); it records ``lcc``,
        ``normalize`` and ``orientation`` as applied, and how the checkpoint
        was selected (:func:`checkpoint_selection`): a checkpoint picked on the
        split it is scored on gets ``selected_on_scored_split: true`` and a warning.
    """
    s = InferenceSettings.make(settings, **changes)
    if spacing not in SPACING_CHOICES:
        raise CanetError(f"spacing must be one of {', '.join(SPACING_CHOICES)}, got {spacing!r}")
    if max_cases is not None and max_cases < 1:
        raise CanetError(f"max_cases must be at least 1, got {max_cases}")
    device = s.run_device()
    model, payload = _load(checkpoint, device)
    recorded = checkpoint_settings(payload)
    from canet.data import load_case, open_dataset

    spec = open_dataset(data)
    if split not in SPLITS:
        raise CanetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    cases = spec.split(split)
    if max_cases is not None:
        cases = cases[:max_cases]
    if not cases:
        raise DataError(f"split {split!r} of {data} has no cases")
    num_classes = int(getattr(spec, "num_classes", recorded["num_classes"]))
    if num_classes != recorded["num_classes"]:
        raise DataError(
            f"the dataset has {num_classes} classes but the checkpoint's model predicts {recorded['num_classes']}"
        )
    if spacing == "auto":
        spacing = "voxels" if getattr(spec, "kind", None) == "la" else "mm"
    use_lcc = bool(spec.lcc) if s.lcc is None else bool(s.lcc)
    # LA .h5 images were z-scored when they were made: always used as stored.
    normalize = None if spec.kind == "la" else recorded["normalize"]
    applied = "as stored" if spec.kind == "la" else (
        "zscore" if (normalize if normalize is not None else spec.normalize) else "none"
    )

    selection = checkpoint_selection(payload, split)
    if selection["selected_on_scored_split"]:
        (warn or print_warning)(
            f"{checkpoint} was selected on the {split!r} split it is scored on (best validation Dice "
            "during training): these scores are optimistic"
        )

    class _Lazy:
        """Loads one case at a time (memory stays at one volume) and knows its length."""

        def __len__(self) -> int:
            return len(cases)

        def __iter__(self) -> Iterator[Any]:
            for case in cases:
                yield load_case(case, with_label=True, normalize=normalize)

    return evaluate_model(
        model, _Lazy(), recorded["patch_size"], out_dir=out_dir, num_classes=num_classes,
        settings=s.replace(lcc=use_lcc, device=str(device)), spacing=spacing, save_predictions=save_predictions,
        report=report, progress=progress, orientation=recorded["orientation"], train_spacing=recorded["spacing"],
        warn=warn, resume=resume,
        extra_summary={
            "checkpoint": str(checkpoint), "data": str(data), "split": split,
            "lcc_from": "dataset" if s.lcc is None else "option", "normalize": applied,
            **selection,
        },
    )


# --------------------------------------------------------------------------- predict


def predict_files(
    checkpoint: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    probabilities: bool = False,
    settings: InferenceSettings | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    **changes: Any,
) -> list[Path]:
    """Segment NIfTI / NRRD / HDF5 volumes and write NIfTI masks beside each other in ``out_dir``.

    Each input ``<name>.<ext>`` gives ``<name>_pred.nii.gz`` (uint8 mask with the
    input's affine, in the input's voxel order) and, with ``probabilities``,
    ``<name>_prob.nii.gz`` (float32: the foreground probability, or a 4D
    ``X x Y x Z x K`` map for multi-class). Images are z-scored over the whole
    volume when the network was trained on z-scored images (and, for a
    checkpoint without that record, unless its config sets ``normalize:
    false``), and predicted in the training orientation (see the module
    docstring). ``settings`` (an
    :class:`~canet.inferers.settings.InferenceSettings`, or its fields as
    keyword ``changes``) says how: its ``lcc`` None (default) takes the
    training dataset's post-processing default from the checkpoint (on for
    checkpoints without it); the device defaults to ``auto``.

    Returns:
        The mask files written, in input order.
    """
    s = InferenceSettings.make(settings, **changes)
    files = find_image_files(inputs)
    stems = [strip_suffix(f.name) for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise DataError(f"two inputs would write the same output name: {dupes[0]!r}")
    for f in files:  # fail on a bad file before any long work starts
        image_file_shape(f)
    from canet.data import read_volume, save_nifti, zscore

    device = s.run_device()
    model, payload = _load(checkpoint, device)
    recorded = checkpoint_settings(payload)
    normalize = recorded["normalize"] is not False
    use_lcc = (recorded["lcc"] if recorded["lcc"] is not None else True) if s.lcc is None else bool(s.lcc)
    s = s.replace(lcc=use_lcc, device=str(device))
    sink = warn or print_warning
    out = Path(out_dir)
    written: list[Path] = []
    items: Iterable[tuple[Path, str]] = list(zip(files, stems))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="predict", unit="case")
    for path, stem in items:
        array, geometry = read_volume(path, "image")
        image = zscore(array) if normalize else np.asarray(array, dtype=np.float32)
        if recorded["orientation"] is not None and not geometry.oriented:
            sink(f"{path}: the file states no orientation; predicted in its stored voxel order")
        mask, probs, turn = predict_oriented(
            model, image, geometry.affine, recorded["patch_size"], orientation=recorded["orientation"],
            oriented=geometry.oriented, settings=s,
        )
        if geometry.unit == "mm":
            seen = turn.spacing if turn is not None else geometry.spacing
            message = spacing_mismatch(str(path), seen, recorded["spacing"])
            if message:
                sink(message)
        target = save_nifti(out / f"{stem}_pred.nii.gz", mask, geometry.affine)
        if probabilities:
            prob_out = probs if probs.ndim == 3 else np.moveaxis(probs, 0, -1)
            save_nifti(out / f"{stem}_prob.nii.gz", prob_out.astype(np.float32), geometry.affine)
        written.append(target)
    return written


# --------------------------------------------------------------------------- score


def find_score_pairs(
    pred: str | os.PathLike[str], gt: str | os.PathLike[str] | None = None
) -> list[tuple[str, Path, Path]]:
    """Match predictions with ground truths: ``[(case, pred_file, gt_file), ...]``.

    With ``gt``: two folders whose image files match by name (a ``_pred`` /
    ``_gt`` ending before the extension is ignored). Without: one folder of
    ``<case>_pred.<ext>`` / ``<case>_gt.<ext>`` pairs.

    Raises:
        DataError: a folder is missing, nothing matched, or a file has no partner.
    """
    pred_dir = Path(pred)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder not found: {pred_dir}")

    def index(folder: Path, strip: Sequence[str]) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            if not _is_image(f):
                continue
            key = strip_suffix(f.name)
            for tail in strip:
                if key.endswith(tail) and len(key) > len(tail):
                    key = key[: -len(tail)]
                    break
            if key in found:
                raise DataError(f"two files in {folder} stand for case {key!r}: {found[key].name}, {f.name}")
            found[key] = f
        return found

    if gt is None:
        preds: dict[str, Path] = {}
        gts: dict[str, Path] = {}
        for f in sorted(pred_dir.iterdir()):
            if not _is_image(f):
                continue
            stem = strip_suffix(f.name)
            if stem.endswith("_pred"):
                preds[stem[: -len("_pred")]] = f
            elif stem.endswith("_gt"):
                gts[stem[: -len("_gt")]] = f
        where = f"{pred_dir} (<case>_pred / <case>_gt pairs)"
    else:
        gt_dir = Path(gt)
        if not gt_dir.is_dir():
            raise DataError(f"ground-truth folder not found: {gt_dir}")
        preds = index(pred_dir, ("_pred",))
        gts = index(gt_dir, ("_gt",))
        where = f"{pred_dir} and {gt_dir}"
    if not preds and not gts:
        raise DataError(f"no {IMAGE_FORMATS} files matched in {where}")
    lonely_pred = sorted(set(preds) - set(gts))
    lonely_gt = sorted(set(gts) - set(preds))
    if lonely_pred:
        raise DataError(f"prediction {preds[lonely_pred[0]].name} has no ground truth in {where} ({len(lonely_pred)} unmatched)")
    if lonely_gt:
        raise DataError(f"ground truth {gts[lonely_gt[0]].name} has no prediction in {where} ({len(lonely_gt)} unmatched)")
    return [(case, preds[case], gts[case]) for case in sorted(preds)]


def _read_label(path: Path) -> tuple[np.ndarray, Any]:
    """A label map (uint8 values, as stored) and its :class:`~canet.data.Geometry` from a NIfTI / NRRD / HDF5 file."""
    from canet.data import read_volume
    from canet.data.dataset import as_label

    array, geometry = read_volume(path, "label")
    return as_label(array, path), geometry


def placement_gap(a: np.ndarray, b: np.ndarray, shape: Sequence[int]) -> float:
    """How far apart two affines place a volume of ``shape``: the largest corner displacement (world units)."""
    corners = np.array(
        [[x, y, z, 1.0] for x in (0, shape[0] - 1) for y in (0, shape[1] - 1) for z in (0, shape[2] - 1)]
    )
    diff = (corners @ np.asarray(a, dtype=np.float64).T - corners @ np.asarray(b, dtype=np.float64).T)[:, :3]
    return float(np.linalg.norm(diff, axis=1).max())


def _infer_num_classes(pairs: Sequence[tuple[str, Path, Path]]) -> int:
    """2 when the ground truths hold one object value (0/1, 0/255, ...), else the largest label + 1."""
    from canet.metrics import label_values

    values: set[int] = set()
    for _, _, gt_file in pairs:
        arr, _ = _read_label(gt_file)
        values.update(label_values(arr))
    return 2 if len(values) <= 1 else max(values) + 1


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
            ground truths: masks whose only non-zero value is one number
            (0/1, 0/255, ...) are binary (any non-zero voxel is object),
            otherwise the largest label + 1. A binary scoring refuses a mask
            with two or more non-zero values.
        progress: tqdm bar over cases.
        on_case: called with each row as it is scored.
        ignore_affine: score pairs whose affines place them differently
            (refused otherwise: a flipped or shifted prediction would be
            scored in the wrong place) in stored voxel order.

    Returns:
        The summary dict with ``"rows"`` and ``"table"`` added.
    """
    from canet.data import read_geometry
    from canet.metrics import check_label_values, label_values

    if spacing_from not in ("gt", "pred"):
        raise CanetError(f"spacing_from must be 'gt' or 'pred', got {spacing_from!r}")
    if num_classes is not None and num_classes < 2:
        raise CanetError(f"num_classes must be at least 2, got {num_classes}")
    pairs = find_score_pairs(pred, gt)
    units: dict[str, Path] = {}
    for case, pred_file, gt_file in pairs:  # fail on bad headers before any long work starts
        p_geo, g_geo = read_geometry(pred_file, "label"), read_geometry(gt_file, "label")
        if p_geo.shape != g_geo.shape:
            raise DataError(
                f"case {case!r}: prediction shape {p_geo.shape} differs from ground truth shape {g_geo.shape}"
            )
        gap = placement_gap(p_geo.affine, g_geo.affine, g_geo.shape)
        if not ignore_affine and gap > AFFINE_TOLERANCE * min(g_geo.spacing):
            raise DataError(
                f"case {case!r}: {pred_file.name} and {gt_file.name} are placed differently in space (their "
                f"affines move a corner by {gap:.3g} {g_geo.unit}: a flipped, permuted or shifted volume?); "
                "pass --ignore-affine to score them in stored voxel order"
            )
        source = g_geo if spacing_from == "gt" else p_geo
        units.setdefault("voxels" if voxels else source.unit, gt_file if spacing_from == "gt" else pred_file)
    if len(units) > 1:
        raise DataError(
            f"{units['voxels']} states no voxel size but {units['mm']} does; distances would mix voxels "
            "and mm: pass --voxels"
        )
    if num_classes is None:
        num_classes = _infer_num_classes(pairs)
    acc = MetricAccumulator(num_classes=num_classes)
    items: Iterable[tuple[str, Path, Path]] = pairs
    if progress:
        from tqdm import tqdm

        items = tqdm(pairs, desc="score", unit="case")
    for case, pred_file, gt_file in items:
        p_arr, p_geo = _read_label(pred_file)
        g_arr, g_geo = _read_label(gt_file)
        if p_arr.shape != g_arr.shape:
            raise DataError(
                f"case {case!r}: prediction shape {p_arr.shape} differs from ground truth shape {g_arr.shape}"
            )
        for arr, f in ((g_arr, gt_file), (p_arr, pred_file)):
            check_label_values(label_values(arr), num_classes, str(f))
        source = g_geo if spacing_from == "gt" else p_geo
        sp = None if voxels or source.unit == "voxels" else source.spacing
        row = acc.add(case, p_arr, g_arr, spacing=sp, seconds=math.nan)
        if on_case is not None:
            on_case(row)
    out = Path(out_dir)
    acc.write_csv(out / "metrics.csv")
    summary = acc.write_summary(
        out / "summary.json", pred=str(pred), gt=None if gt is None else str(gt),
        spacing_from=None if acc.units == "voxels" else spacing_from, distance_unit=acc.units,
        ignore_affine=ignore_affine,
    )
    summary["rows"] = acc.rows
    summary["table"] = acc.table()
    return summary
