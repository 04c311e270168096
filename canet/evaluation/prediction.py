"""``canet predict``: segment NIfTI / NRRD / HDF5 scans with a checkpoint and write NIfTI masks in place."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from canet.data.dataset import (
    strip_suffix,
)
from canet.errors import DataError, first_names
from canet.evaluation.checkpoints import (
    checkpoint_settings,
    load_for_inference,
    older_checkpoint_note,
)
from canet.evaluation.files import (
    OUTPUT_STEM_ENDINGS,
    describe_unread,
    find_image_files,
    image_file_shape,
)
from canet.evaluation.notes import nonfinite_warning, print_warning, spacing_mismatch
from canet.evaluation.oriented import predict_oriented
from canet.inferers.settings import InferenceSettings
from canet.io import atomic_write_text, file_sha256, make_folder

__all__ = ["predict_files"]


#: What ``out_dir`` keeps of how its masks were made (checkpoint SHA-256, settings) and of which
#: scans are finished, for ``--resume``.
PREDICT_RECORD = "predict.json"


def _kept_by_resume(
    out: Path, record: dict[str, Any], files: Sequence[Path], stems: Sequence[str], probabilities: bool,
    sink: Callable[[str], None],
) -> dict[str, str]:
    """The scans an earlier run with the same ``record`` finished in ``out`` (their files still there).

    Only scans the record lists as finished count: a mask of an older run with other weights,
    not yet segmented again when the last run was killed, is not kept. Nor is the mask of a
    scan whose file is no longer the one segmented (its SHA-256 differs): that scan is
    segmented again, and ``sink`` says so.

    Returns:
        ``{stem: SHA-256 of its scan file}`` for the scans kept.

    Raises:
        DataError: ``out`` holds no record, or one of another checkpoint or other settings.
    """
    path = out / PREDICT_RECORD
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--resume: {out} holds no {PREDICT_RECORD} of an earlier predict run; run without "
                        "--resume") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--resume: cannot read {path} ({exc})") from None
    saved = saved if isinstance(saved, dict) else {}
    finished = saved.get("finished")
    if {k: v for k, v in saved.items() if k != "finished"} != record or not isinstance(finished, (dict, list)):
        differ = [k for k in record if saved.get(k) != record[k]] or ["its contents"]
        names = {"checkpoint_sha256": "another checkpoint", "settings": "other inference settings",
                 "probabilities": "another --probabilities choice"}
        raise DataError(
            f"--resume: the masks in {out} were made with {' and '.join(names.get(k, k) for k in differ)}; "
            "run without --resume to segment every scan again, or write into another -o"
        )
    if isinstance(finished, list):  # an earlier canet's record: which file each mask is of is unknown
        if finished:
            sink(f"--resume: {path} does not say which files its {len(finished)} mask(s) were made from "
                 "(an earlier canet wrote it); segmenting every scan again")
        return {}
    suffixes = ("_pred", "_prob") if probabilities else ("_pred",)
    kept: dict[str, str] = {}
    changed: list[str] = []
    for f, stem in zip(files, stems):
        if stem not in finished or not all((out / f"{stem}{s}.nii.gz").is_file() for s in suffixes):
            continue
        digest = file_sha256(f)
        if finished[stem] == digest:
            kept[stem] = digest
        else:
            changed.append(f.name)
    if changed:
        sink(f"--resume: {len(changed)} scan(s) are not the files the earlier run segmented under their names "
             f"({first_names(changed)}); segmenting them again")
    return kept


def ignores_letter_case(folder: Path) -> bool:
    """Whether the file system ``folder`` is on (or would be: its nearest existing parent) takes
    ``Case1`` and ``case1`` for one name, as macOS's and Windows' do by default.

    Found by writing a probe file; a folder that cannot be written to counts as telling them
    apart (predict stops on writing there anyway).
    """
    import tempfile

    base = folder
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        return False
    try:
        handle, probe = tempfile.mkstemp(prefix=".canet-LetterCase-", dir=base)
    except OSError:
        return False
    os.close(handle)
    try:
        return os.path.exists(os.path.join(base, os.path.basename(probe).lower()))
    finally:
        os.unlink(probe)


def _refuse_shared_output_names(files: Sequence[Path], stems: Sequence[str], out: Path) -> None:
    """Refuse two inputs whose outputs would be one file in ``out`` (the second would replace the first).

    Raises:
        DataError: two inputs of one name (``a.nii.gz``, ``a.nrrd``), or of names that differ only in
            letter case where ``out``'s file system does not tell them apart.
    """
    exact = Counter(stems)
    clash = next((i for i, stem in enumerate(stems) if exact[stem] > 1), None)
    if clash is not None:
        first, second = [f for f, stem in zip(files, stems) if stem == stems[clash]][:2]
        raise DataError(f"two inputs would write the same output name {stems[clash]!r}: {first} and {second}")
    folded = [stem.casefold() for stem in stems]
    counts = Counter(folded)
    clash = next((i for i, key in enumerate(folded) if counts[key] > 1), None)
    if clash is not None and ignores_letter_case(out):
        first, second = [f for f, key in zip(files, folded) if key == folded[clash]][:2]
        raise DataError(
            f"two inputs would write output names that differ only in letter case, which the file system of "
            f"{out} takes for one name: {first} and {second}"
        )


def predict_files(
    checkpoint: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    probabilities: bool = False,
    settings: InferenceSettings | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    resume: bool = False,
    **changes: Any,
) -> list[Path]:
    """Segment NIfTI / NRRD / HDF5 volumes and write NIfTI masks beside each other in ``out_dir``.

    Each input ``<name>.<ext>`` gives ``<name>_pred.nii.gz`` (uint8 mask with the
    input's affine, in the input's voxel order) and, with ``probabilities``,
    ``<name>_prob.nii.gz`` (float32: the foreground probability, or a 4D
    ``X x Y x Z x K`` map for multi-class; with ``decision="relu"`` the mean
    ReLU(logit) the authors' rule thresholds at 0.5, not a probability). An
    output name that is one of the inputs is refused before anything is written; a folder's
    files named like these outputs are left out (with a warning), and so are its entries that
    look like scans canet does not read (a warning names them). An earlier
    ``<name>_prob.nii.gz`` in ``out_dir`` is removed before ``<name>_pred`` is written, so a mask
    never sits beside another run's map (a warning names those not replaced); masks of other
    scans already in ``out_dir`` are named in a warning. Two inputs whose outputs would be one
    file are refused: the same name, or names that differ only in letter case where the file
    system of ``out_dir`` does not tell them apart (:func:`ignores_letter_case`). NaN and
    infinite voxels are set to the scan's smallest finite value (with a warning naming their
    count).
    Images are z-scored over the whole volume when the network was trained on
    z-scored images, and predicted in the training orientation (see the module
    docstring for checkpoints without that record). ``settings`` (an
    :class:`~canet.inferers.settings.InferenceSettings`, or its fields as
    keyword ``changes``) says how: its ``lcc`` None (default) takes the
    training dataset's post-processing default from the checkpoint (on for
    checkpoints without it); the device defaults to ``auto``.

    ``out_dir/predict.json`` records the checkpoint's SHA-256, the settings and the scans
    finished, each with its file's SHA-256; with ``resume`` (``canet predict --resume``) the
    scans whose outputs an earlier run with the same record wrote into ``out_dir`` (a killed
    run) are kept, not segmented again, unless the scan's file is no longer the one segmented
    (another record: :class:`~canet.errors.DataError`).

    Returns:
        The mask files written, in input order (not those kept by ``resume``).
    """
    s = InferenceSettings.make(settings, **changes)
    skipped: list[Path] = []
    unread: list[tuple[Path, str]] = []
    files = find_image_files(inputs, skipped, unread)
    stems = [strip_suffix(f.name) for f in files]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():  # found now, not after the network has run on every scan
        raise DataError(f"cannot write into {out}: {out} is a file, not a folder")
    _refuse_shared_output_names(files, stems, out)
    suffixes = ("_pred", "_prob") if probabilities else ("_pred",)
    inputs_at = {f.resolve(): f for f in (*files, *skipped)}  # an earlier output left out is still not overwritten
    for stem in stems:  # never write over a scan being segmented (out_dir may be the input folder)
        for suffix in suffixes:
            target = out / f"{stem}{suffix}.nii.gz"
            if target.resolve() in inputs_at:
                raise DataError(
                    f"{target} is one of the inputs and would be overwritten by the {suffix[1:]} output of "
                    f"{stem!r}; write to another folder (-o) or leave earlier outputs out of the inputs"
                )
    for f in files:  # fail on a bad file before any long work starts
        image_file_shape(f)
    from canet.data import fill_nonfinite, read_volume, save_nifti, zscore

    device = s.run_device()
    model, payload = load_for_inference(checkpoint, device)
    recorded = checkpoint_settings(payload)
    normalize = recorded["normalize"] is not False
    use_lcc = (recorded["lcc"] if recorded["lcc"] is not None else True) if s.lcc is None else bool(s.lcc)
    s = s.replace(lcc=use_lcc, device=str(device))
    sink = warn or print_warning
    if skipped:
        shown = first_names(f.name for f in skipped)
        sink(f"left out {len(skipped)} file(s) named like canet's outputs (*_pred, *_prob): {shown}; "
             "name such a file on its own to segment it")
    if unread:
        sink(f"left out {len(unread)} entr{'y' if len(unread) == 1 else 'ies'} of the input folder(s) that "
             f"canet does not read: {describe_unread(unread)}")
    named_like_outputs = [f for f in files if strip_suffix(f.name).endswith(OUTPUT_STEM_ENDINGS)]
    if named_like_outputs:  # a shell glob names an earlier run's masks one by one
        shown = first_names(f.name for f in named_like_outputs)
        sink(f"segmenting {len(named_like_outputs)} file(s) named like canet's outputs as scans: {shown}")
    if out.is_dir():  # masks of other scans, from an earlier run: `canet score` of the folder would take them too
        ours = {stem.casefold() for stem in stems}
        others = sorted(f.name for f in out.iterdir() if f.name.endswith("_pred.nii.gz")
                        and f.name[: -len("_pred.nii.gz")].casefold() not in ours)
        if others:
            shown = first_names(others)
            sink(f"{out} already holds {len(others)} mask(s) of scans this run does not segment ({shown}); "
                 "a score of the folder would count them too")
    note = older_checkpoint_note(str(checkpoint), recorded, normalize, use_lcc)
    if note:
        sink(note)
    record = {"checkpoint_sha256": file_sha256(checkpoint), "settings": {
        k: v for k, v in s.record().items() if k != "device"}, "probabilities": probabilities}
    kept = _kept_by_resume(out, record, files, stems, probabilities, sink) if resume else {}
    if kept:
        sink(f"kept {len(kept)} mask(s) an earlier run with the same checkpoint and settings wrote into {out} "
             f"(--resume); segmenting the other {len(stems) - len(kept)}")
    make_folder(out)
    finished = dict(kept)  # stem -> SHA-256 of the scan file its mask was made from

    def keep_record() -> None:  # rewritten after every scan: what a --resume may keep
        atomic_write_text(out / PREDICT_RECORD, json.dumps({**record, "finished": finished}, indent=2) + "\n")

    keep_record()
    written: list[Path] = []
    removed: list[str] = []  # earlier runs' probability maps of the scans segmented again
    skip = set(kept)
    items: Iterable[tuple[Path, str]] = [(f, stem) for f, stem in zip(files, stems) if stem not in skip]
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="predict", unit="case")
    for path, stem in items:
        array, geometry = read_volume(path, "image")
        filled, nonfinite = fill_nonfinite(array, path)
        if nonfinite:
            sink(nonfinite_warning(str(path), nonfinite))
        if filled.size and float(filled.min()) == float(filled.max()):
            sink(f"{path}: the image is constant (every voxel is {float(filled.min()):.6g}): "
                 "it holds nothing to segment; the mask written says only what the network makes of a blank")
        image = zscore(filled) if normalize else filled
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
        # An earlier run's probability map of this scan goes first: beside the new mask it would
        # be another model's (or, after a kill between the two writes, another run's).
        stale = out / f"{stem}_prob.nii.gz"
        if stale.is_file() and stale.resolve() not in inputs_at:
            stale.unlink()
            removed.append(stale.name)
        # A source that states no orientation (NIfTI codes 0, an NRRD without an anatomical
        # space, HDF5) gives outputs without one too (codes 0, its voxel size as pixdim).
        # A NIfTI source's own header placement is copied, so viewers that read its qform place both alike.
        target = save_nifti(out / f"{stem}_pred.nii.gz", mask, geometry.affine, oriented=geometry.oriented, like=path)
        if probabilities:
            prob_out = probs if probs.ndim == 3 else np.moveaxis(probs, 0, -1)
            save_nifti(out / f"{stem}_prob.nii.gz", prob_out.astype(np.float32), geometry.affine,
                       oriented=geometry.oriented, like=path)
        written.append(target)
        finished[stem] = file_sha256(path)
        keep_record()
    if removed and not probabilities:  # with --probabilities each was replaced by this run's
        shown = first_names(removed)
        sink(f"removed {len(removed)} probability map(s) of an earlier run from {out} ({shown}): they were "
             "not of the masks now beside them (--probabilities writes this run's)")
    return written
