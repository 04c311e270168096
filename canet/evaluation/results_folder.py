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
import csv
import re
from pathlib import Path

from canet.errors import DataError

__all__ = ["RESULT_FILES", "case_file_stem", "prepare_results_folder"]

#: What an evaluation or scoring writes into its folder (and removes on a fresh start).
RESULT_FILES: tuple[str, ...] = ("metrics.csv", "summary.json", "report.html")
_SLICES = "report_slices"
#: Suffix of the masks ``evaluate --save-predictions`` writes, one per case.
PREDICTION_SUFFIX = "_pred.nii.gz"


def case_file_stem(case_id: str) -> str:
    """The file-name stem of a case's outputs: its id with characters outside ``[A-Za-z0-9._-]`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id) or "case"


def _listed_cases(metrics_csv: Path) -> list[str]:
    """The case ids of an earlier ``metrics.csv`` (none when it is missing or unreadable)."""
    try:
        with open(metrics_csv, newline="", encoding="utf-8", errors="replace") as fh:
            return [row["case"] for row in csv.DictReader(fh) if row.get("case")]
    except (OSError, csv.Error, KeyError):
        return []


def prepare_results_folder(out: Path, fresh: bool) -> None:
    """Check that ``out`` may hold results; with ``fresh``, remove earlier ones.

    ``evaluate`` calls it with ``fresh`` once its first case is scored, ``score``
    once all its cases are, so a start that is refused or killed before then
    leaves the earlier results whole.

    Earlier results are :data:`RESULT_FILES`, the ``.npz`` files of
    ``report_slices/`` and the saved masks ``<case>_pred.nii.gz`` of the cases the
    earlier ``metrics.csv`` lists (a new evaluation of other weights would otherwise
    sit beside the old one's masks); nothing else is touched, so masks of other
    origin in the folder stay.

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
    for case in _listed_cases(out / "metrics.csv"):
        (out / f"{case_file_stem(case)}{PREDICTION_SUFFIX}").unlink(missing_ok=True)
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    slices = out / _SLICES
    if slices.is_dir():
        for f in slices.glob("*.npz"):
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            slices.rmdir()  # kept if anything else is in it
