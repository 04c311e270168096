"""``canet evaluate``: predict and score the cases of a dataset split, with a checkpoint or a model in memory.

:func:`evaluate_model` predicts labelled volumes with sliding windows
(:func:`~canet.evaluation.oriented.predict_oriented`), scores them
(:class:`~canet.metrics.summary.MetricAccumulator`) and writes ``metrics.csv``,
``summary.json`` and optionally predictions and a report; the trainer's
validation and the demo call it. :func:`evaluate` loads a checkpoint and a
dataset split and gives the network its training preprocessing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn

from canet.data.orientation import axcodes_of
from canet.errors import CanetError, DataError, first_names
from canet.evaluation.checkpoints import (
    checkpoint_selection,
    checkpoint_settings,
    load_for_inference,
    older_checkpoint_note,
)
from canet.evaluation.notes import nonfinite_warning, print_warning, spacing_mismatch
from canet.evaluation.oriented import predict_oriented
from canet.evaluation.results_folder import PREDICTION_SUFFIX, case_file_stem
from canet.inferers.predict import model_device
from canet.inferers.settings import InferenceSettings
from canet.io import file_sha256
from canet.labels import label_values, refuse_mixed_object_values
from canet.metrics.journal import CaseJournal
from canet.metrics.summary import MetricAccumulator
from canet.patch_size import check_patch_size

__all__ = ["SPACING_CHOICES", "SPLITS", "VolumeLike", "evaluate", "evaluate_model"]


SPLITS: tuple[str, ...] = ("test", "validation", "labeled", "unlabeled", "train")
SPACING_CHOICES: tuple[str, ...] = ("auto", "voxels", "mm")


class VolumeLike(Protocol):
    """What :func:`evaluate_model` needs of a case (``canet.data.Volume`` fits)."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]


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
    fingerprint: Callable[[Any], str | None] | None = None,
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
        resume: keep the cases that a killed (or finished) evaluation into
            ``out_dir`` already scored (its ``cases.jsonl``, see
            :mod:`canet.metrics.journal`; refused if it was made with other
            settings) and predict the rest.
        fingerprint: what identifies a volume's files (:func:`case_fingerprint`); it is
            journaled with each case, and ``resume`` scores again, with a warning, a kept
            case whose fingerprint has changed since (None: cases are kept by id only).

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
    cleared = False
    done: dict[str, dict[str, Any]] = {}
    stale_masks: list[Path] = []
    if out is not None:
        from canet.evaluation.results_folder import prepare_results_folder, saved_masks

        prepare_results_folder(out, fresh=False)  # a run folder is refused before any work
        stale_masks = [] if resume else saved_masks(out)  # read before the new journal replaces the old
        header = {
            "settings": {k: v for k, v in s.record().items() if k != "device"},
            "patch_size": list(patch), "num_classes": num_classes, "spacing": spacing,
            "orientation": orientation,
            # what only describes the weights (the sha256 stays): an older journal still matches
            "extra": {k: v for k, v in (extra_summary or {}).items() if k not in DESCRIPTIVE_SUMMARY_KEYS},
        }
        # A resumed evaluation must have written for its kept cases the files it writes for the rest
        # (named only when asked for, so journals of evaluations without them read as before).
        header.update({k: True for k, on in (("save_predictions", save_predictions), ("report", report)) if on})
        journal = CaseJournal(out, header)
        done = journal.open(resume)
    journaled = len(done)  # cases a --resume would keep
    try:
        for vol in items:
            unit = "voxels" if spacing == "voxels" else getattr(vol, "spacing_unit", "mm")
            if units and unit not in units:
                other = next(iter(units))
                raise DataError(
                    f"case {vol.case_id!r} has distances in {unit} but case {units[other]!r} in {other} "
                    "(its file states no voxel size); evaluate with --spacing voxels"
                )
            units.setdefault(unit, vol.case_id)
            files = fingerprint(vol) if fingerprint is not None and journal is not None else None  # journaled only
            if vol.case_id in done and files is not None and done[vol.case_id].get("fingerprint") not in (None, files):
                del done[vol.case_id]  # its image or label is not the one scored: scored again below
                journaled -= 1
                sink(f"case {vol.case_id!r}: its image or label file has changed since it was scored; "
                     "scored again (--resume)")
            if vol.case_id in done:  # scored before a kill: counted again, not predicted
                kept = done[vol.case_id]
                acc.restore(kept)
                warnings.extend(kept.get("warnings", []))
                reoriented += int(bool(kept.get("reoriented", False)))
                names.add(case_file_stem(vol.case_id))
                continue
            if vol.label is None:
                raise DataError(f"case {vol.case_id!r} has no label; evaluation needs ground truth")
            image = np.asarray(vol.image)
            label = np.asarray(vol.label)
            if image.shape[-3:] != label.shape:
                raise DataError(f"case {vol.case_id!r}: image shape {image.shape} and label shape {label.shape} differ")
            oriented = bool(getattr(vol, "oriented", True))
            notes = []
            nonfinite = int(getattr(vol, "nonfinite", 0))
            if nonfinite:
                notes.append(nonfinite_warning(f"case {vol.case_id!r}", nonfinite))
            if orientation is not None and not oriented:
                notes.append(f"case {vol.case_id!r}: the file states no orientation; predicted in its stored voxel order")
            for message in notes:
                warnings.append(message)
                sink(message)
            start = time.perf_counter()
            mask, _, turn = predict_oriented(
                model, image, vol.affine, patch, orientation=orientation, oriented=oriented, settings=s,
            )
            seconds = time.perf_counter() - start
            reoriented += int(turn is not None and not turn.identity)
            if train_spacing is not None and getattr(vol, "spacing_unit", "mm") == "mm":
                seen = turn.spacing if turn is not None else tuple(float(v) for v in vol.spacing)
                message = spacing_mismatch(f"case {vol.case_id!r}", seen, train_spacing)
                if message:
                    notes.append(message)
                    warnings.append(message)
                    sink(message)
            case_spacing = None if unit == "voxels" else tuple(float(s) for s in vol.spacing)
            row = acc.add(vol.case_id, mask, label, spacing=case_spacing, seconds=seconds)
            name = case_file_stem(vol.case_id)
            if name in names:
                raise DataError(f"two cases map to the same file name {name!r}")
            names.add(name)
            if out is not None and not resume and not cleared:
                # The first case of a new evaluation is scored: the last one's results go now (not at the
                # start, so a start that is refused or killed before any case leaves them as they were).
                prepare_results_folder(out, fresh=True, masks=stale_masks)
                cleared = True
            if save_predictions and out is not None:
                from canet.data import save_nifti

                save_nifti(out / f"{name}{PREDICTION_SUFFIX}", mask.astype(np.uint8), vol.affine, oriented=oriented,
                           like=getattr(vol, "source", None))
            if report and out is not None:
                from canet.report import save_case_slices

                save_case_slices(
                    out / "report_slices" / f"{name}.npz", vol.case_id, image if image.ndim == 3 else image[0],
                    label, mask, vol.spacing, row["dice"], axcodes=axcodes_of(vol.affine) if oriented else None,
                )
            if journal is not None:  # last: a case in the journal has its files written too
                # with its warnings and turn, so a resumed evaluation writes the same summary
                moved = bool(turn is not None and not turn.identity)
                journal.add({**acc.entry(vol.case_id), "warnings": notes, "reoriented": moved,
                             **({"fingerprint": files} if files is not None else {})})
                journaled += 1
    except KeyboardInterrupt:
        if journal is None:
            raise
        raise KeyboardInterrupt(
            f"{journaled} case(s) scored are kept in {out}; the same command with --resume goes on from them"
        ) from None
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
            journal.close()
    else:
        summary = acc.summary(**extra)
    summary["rows"] = acc.rows
    summary["table"] = acc.table()
    return summary


def case_fingerprint(case: Any) -> str:
    """The SHA-256 of a case's image file and, where it is another file, of its label file.

    ``case``: a :class:`canet.data.CaseSpec` (``image``, ``label`` paths). Two hex digests
    joined by ``+`` when the label is its own file.
    """
    parts = [file_sha256(case.image)]
    if case.label is not None and os.path.realpath(case.label) != os.path.realpath(case.image):
        parts.append(file_sha256(case.label))
    return "+".join(parts)


def _refuse_mixed_object_values(cases: Sequence[Any], datalist: Any, split: str) -> None:
    """Refuse binary ground truths of a datalist that does not state num_classes and whose masks mark
    their object with different values beyond 1 and 255 (0/1 beside 0/2), before any prediction:
    ``check-data``, training and ``canet score`` ask which is meant, so evaluate does too."""
    from canet.data.dataset import as_label, read_volume

    seen: dict[int, str] = {}
    for case in cases:
        values = label_values(as_label(read_volume(case.label, "label")[0], case.label))
        if len(values) != 1:
            continue  # empty, or a label map: scoring refuses or handles it case by case
        seen.setdefault(int(values[0]), f"case {case.case_id!r}")
        refuse_mixed_object_values(
            seen, f"{datalist}: the labels of split {split!r}", "one structure, or classes of one label map? "
            "state num_classes: 2 in the datalist to score any non-zero value as the object",
        )


def _trained_labeled(
    payload: dict[str, Any], data: str | os.PathLike[str], split: str, warn: Callable[[str], None]
) -> int | None:
    """How many training cases the checkpoint's run took as labeled, for the labeled/unlabeled splits.

    Those splits are the run's own only on the data it was trained on (the same
    folder or datalist); elsewhere the dataset's own split is used, with a warning.
    """
    if split not in ("labeled", "unlabeled"):
        return None
    trained = ((payload.get("config") or {}).get("data") or {}) if isinstance(payload.get("config"), dict) else {}
    labeled, root = trained.get("labeled"), trained.get("root")
    if labeled is None:
        return None
    if root is not None and Path(os.path.expanduser(str(root))).resolve() == Path(os.path.expanduser(str(data))).resolve():
        return int(labeled)
    warn(f"the checkpoint's run took the first {labeled} training cases of {root} as labeled; {data} is not that "
         f"data, so its {split!r} split is the dataset's own")
    return None


#: summary.json keys that describe the checkpoint without deciding the scores: not part of the
#: journal's header, so an evaluation journaled before they existed still resumes.
DESCRIPTIVE_SUMMARY_KEYS: frozenset[str] = frozenset({"checkpoint_iteration"})


def _iteration(payload: dict[str, Any]) -> int | None:
    """The training iteration a checkpoint was saved at (None for imported or hand-made ones)."""
    value = payload.get("iteration")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


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
    # What the scores belong to: a resumed evaluation refuses cases scored with other weights
    # under the same path (a run that went on training rewrites its last.pt).
    weights = file_sha256(checkpoint) if Path(checkpoint).is_file() else None
    model, payload = load_for_inference(checkpoint, device)
    recorded = checkpoint_settings(payload)
    from canet.data import load_case, open_dataset

    if split not in SPLITS:
        raise CanetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    spec = open_dataset(data, labeled=_trained_labeled(payload, data, split, warn or print_warning))
    cases = spec.split(split)
    if max_cases is not None:
        cases = cases[:max_cases]
    if not cases:
        raise DataError(f"split {split!r} of {data} has no cases")
    bare = [c.case_id for c in cases if c.label is None]
    if bare:  # refused before the first prediction, not after the cases before it
        shown = first_names(repr(c) for c in bare)
        raise DataError(
            f"{len(bare)} of the {len(cases)} cases of split {split!r} of {data} "
            f"{'has' if len(bare) == 1 else 'have'} no label ({shown}); "
            "evaluation needs ground truth (canet predict segments scans without one)"
        )
    num_classes = int(getattr(spec, "num_classes", recorded["num_classes"]))
    if num_classes != recorded["num_classes"]:
        raise DataError(
            f"the dataset has {num_classes} classes but the checkpoint's model predicts {recorded['num_classes']}"
        )
    if num_classes == 2 and spec.kind == "datalist" and not spec.num_classes_stated:
        _refuse_mixed_object_values(cases, spec.datalist, split)
    if spacing == "mm" and getattr(spec, "kind", None) == "la":
        raise DataError(f"--spacing mm: the LA volumes of {data} state no voxel size, so distances can only be in "
                        "voxels; use --spacing voxels (or auto)")
    if spacing == "auto":
        spacing = "voxels" if getattr(spec, "kind", None) == "la" else "mm"
    use_lcc = bool(spec.lcc) if s.lcc is None else bool(s.lcc)
    # LA .h5 images were z-scored when they were made: always used as stored.
    normalize = None if spec.kind == "la" else recorded["normalize"]
    applied = "as stored" if spec.kind == "la" else (
        "zscore" if (normalize if normalize is not None else spec.normalize) else "none"
    )

    note = older_checkpoint_note(str(checkpoint), recorded, applied != "none", use_lcc)
    if note:
        (warn or print_warning)(note)
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

    by_id = {c.case_id: c for c in cases}
    return evaluate_model(
        model, _Lazy(), recorded["patch_size"], out_dir=out_dir, num_classes=num_classes,
        settings=s.replace(lcc=use_lcc, device=str(device)), spacing=spacing, save_predictions=save_predictions,
        report=report, progress=progress, orientation=recorded["orientation"], train_spacing=recorded["spacing"],
        warn=warn, resume=resume, fingerprint=lambda vol: case_fingerprint(by_id[vol.case_id]),
        extra_summary={
            "checkpoint": os.path.abspath(checkpoint), "checkpoint_sha256": weights,
            # last.pt is rewritten as a run goes on: the report says which iteration was scored
            "checkpoint_iteration": _iteration(payload),
            "data": os.path.abspath(data), "split": split,
            "lcc_from": "dataset" if s.lcc is None else "option", "normalize": applied,
            "preprocessing_from": recorded["source"], "preprocessing_note": note,
            **selection,
        },
    )
