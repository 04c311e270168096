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
from pathlib import Path

from canet.errors import DataError

__all__ = ["RESULT_FILES", "prepare_results_folder"]

#: What an evaluation or scoring writes into its folder (and removes on a fresh start).
RESULT_FILES: tuple[str, ...] = ("metrics.csv", "summary.json", "report.html")
_SLICES = "report_slices"


def prepare_results_folder(out: Path, fresh: bool) -> None:
    """Check that ``out`` may hold results; with ``fresh``, remove earlier ones.

    ``evaluate`` calls it with ``fresh`` once its first case is scored, ``score``
    once all its cases are, so a start that is refused or killed before then
    leaves the earlier results whole.

    Earlier results are :data:`RESULT_FILES` and the ``.npz`` files of
    ``report_slices/``; nothing else is touched (saved ``*_pred.nii.gz`` masks
    are overwritten case by case when masks are saved again).

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
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    slices = out / _SLICES
    if slices.is_dir():
        for f in slices.glob("*.npz"):
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            slices.rmdir()  # kept if anything else is in it
