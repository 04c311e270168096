"""The folder an evaluation or a scoring writes its results into.

``canet evaluate`` and ``canet score`` write ``metrics.csv`` and ``summary.json``
(and ``report.html`` with ``report_slices/``); a training run folder holds a
``metrics.csv`` of its own (the loss log). :func:`prepare_results_folder`
keeps the two apart and makes a fresh evaluation start clean, so a folder
never mixes the results of two evaluations (an old ``report.html`` beside new
metrics, or the old ``summary.json`` left by a new evaluation that was killed).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path

from canet.errors import DataError

__all__ = ["RESULT_FILES", "case_file_stem", "prepare_results_folder", "saved_masks"]

#: What an evaluation or scoring writes into its folder (and removes on a fresh start).
RESULT_FILES: tuple[str, ...] = ("metrics.csv", "summary.json", "report.html")
_SLICES = "report_slices"
#: Suffix of the masks ``evaluate --save-predictions`` writes, one per case.
PREDICTION_SUFFIX = "_pred.nii.gz"


def case_file_stem(case_id: str) -> str:
    """The file-name stem of a case's outputs: its id with characters outside ``[A-Za-z0-9._-]`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id) or "case"


def saved_masks(out: Path) -> list[Path]:
    """The ``<case>_pred.nii.gz`` masks the earlier evaluation in ``out`` saved, by its journal.

    Only an evaluation whose journal says it saved masks (``evaluate --save-predictions``)
    counts, and only the cases it lists: a ``canet score`` folder (no journal) or masks of
    other origin (``canet predict`` outputs, a user's files) are never named here. Read it
    before a new evaluation starts its own journal.
    """
    from canet.metrics.journal import JOURNAL_FILE, read_journal

    try:
        header, entries = read_journal(out / JOURNAL_FILE)
    except (OSError, UnicodeDecodeError, KeyError, TypeError):
        return []  # no journal, or none canet wrote: nothing is known to be its masks
    if not isinstance(header, dict) or not header.get("save_predictions"):
        return []
    masks = (out / f"{case_file_stem(case)}{PREDICTION_SUFFIX}" for case in entries)
    return [mask for mask in masks if mask.is_file()]


def prepare_results_folder(out: Path, fresh: bool, masks: Sequence[Path] = ()) -> None:
    """Check that ``out`` may hold results; with ``fresh``, remove earlier ones.

    ``evaluate`` calls it with ``fresh`` once its first case is scored, ``score``
    once all its cases are, so a start that is refused or killed before then
    leaves the earlier results whole.

    Earlier results are :data:`RESULT_FILES`, the ``.npz`` files of
    ``report_slices/`` and ``masks``: the ``<case>_pred.nii.gz`` files the earlier
    evaluation saved (:func:`saved_masks`, read before the new journal replaced the
    old one), which would otherwise sit beside the new evaluation's metrics; nothing
    else is touched, so masks of other origin in the folder stay.

    Raises:
        DataError: ``out`` is a training run folder (it holds ``config.yaml`` or
            ``checkpoints/``): its ``metrics.csv`` is the run's loss log.
    """
    if (out / "config.yaml").is_file() or (out / "checkpoints").is_dir():
        raise DataError(
            f"{out} is a training run folder (it holds config.yaml or checkpoints/), whose metrics.csv is the "
            f"run's loss log; write the results into a folder of their own, e.g. {out / 'eval'}"
        )
    if not fresh or not out.is_dir():  # a new folder, or a file in the way: the writers say so
        return
    for mask in masks:
        mask.unlink(missing_ok=True)
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    slices = out / _SLICES
    if slices.is_dir():
        for f in slices.glob("*.npz"):
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            slices.rmdir()  # kept if anything else is in it
