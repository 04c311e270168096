"""Which files ``canet predict`` and ``canet score`` read: image files in folders, prediction / ground-truth pairs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from canet.data.dataset import (
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    check_voxel_dtype,
    file_format,
    read_geometry,
    strip_suffix,
)
from canet.errors import DataError

__all__ = ["find_image_files", "find_score_pairs", "image_file_shape"]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.startswith(".")


#: Stem endings of the files ``canet predict`` writes; a folder's files with them are outputs, not scans.
OUTPUT_STEM_ENDINGS: tuple[str, ...] = ("_pred", "_prob")

#: Endings of medical image files canet does not read: a folder's files with them are named
#: when they are left out, so that a scan in another format is not dropped without a word.
OTHER_IMAGE_SUFFIXES: tuple[str, ...] = (
    ".mha", ".mhd", ".dcm", ".ima", ".nii.bz2", ".nii.zst", ".hdr", ".img", ".mnc", ".mgz", ".mgh",
)


def _left_out(entry: Path) -> str | None:
    """Why a folder entry that looks like a scan is not read (``None``: it is read, or is no scan)."""
    name = entry.name.lower()
    if name.startswith("."):
        return None
    if entry.is_symlink() and not entry.exists():
        return "a broken link" if name.endswith(IMAGE_SUFFIXES) else None
    if entry.is_dir():  # a folder of scans (or a DICOM series), not one of canet's own outputs
        try:
            holds = any(
                (_is_image(f) and not strip_suffix(f.name).endswith(OUTPUT_STEM_ENDINGS))
                or f.name.lower().endswith(OTHER_IMAGE_SUFFIXES)
                for f in entry.iterdir()
            )
        except OSError:
            return None
        return "a sub-folder: its files are not searched" if holds else None
    if entry.is_file() and name.endswith(OTHER_IMAGE_SUFFIXES):
        return f"not a {IMAGE_FORMATS} file"
    return None


def find_image_files(
    inputs: Sequence[str | os.PathLike[str]], skipped: list[Path] | None = None,
    unread: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """Image files named by ``inputs`` (files, or folders whose images are taken, sorted).

    A folder is not searched below its own files, and its files named like canet's
    outputs (``<name>_pred.*``, ``<name>_prob.*``: masks of an earlier run into the same
    folder) are left out and appended to ``skipped``; a file named on its own is always taken.
    A folder's entries that look like scans canet does not read (a broken link, a
    ``.mha`` / ``.mhd`` / DICOM / ... file, a sub-folder holding such files or images) are
    appended to ``unread`` with the reason. A path named twice (or also through its folder)
    is taken once; two names of one file (links) are two inputs.

    Raises:
        DataError: an input does not exist, or no image file was found.
    """
    files: list[Path] = []
    seen: set[str] = set()

    def take(f: Path) -> None:
        where = os.path.abspath(f)  # not the link's target: two links of one scan are two cases
        if where not in seen:
            seen.add(where)
            files.append(f)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if not _is_image(f):
                    why = _left_out(f) if unread is not None else None
                    if why is not None and unread is not None:
                        unread.append((f, why))
                    continue
                if strip_suffix(f.name).endswith(OUTPUT_STEM_ENDINGS):
                    if skipped is not None:
                        skipped.append(f)
                    continue
                take(f)
        elif p.is_file():
            if not p.name.lower().endswith(IMAGE_SUFFIXES):
                raise DataError(f"not a {IMAGE_FORMATS} file ({', '.join(IMAGE_SUFFIXES)}): {p}")
            take(p)
        else:
            raise DataError(f"input not found: {p}")
    if not files:
        outputs = " (only files named like canet's outputs, *_pred / *_prob, which are left out)" if skipped else ""
        others = f" (left out: {describe_unread(unread)})" if unread else ""
        raise DataError(
            f"no {IMAGE_FORMATS} files matched {', '.join(str(i) for i in inputs)}{outputs}{others}; "
            "a folder's own files are taken, not those of its sub-folders"
        )
    return files


def describe_unread(unread: Sequence[tuple[Path, str]], shown: int = 3) -> str:
    """``"f.mha (not a NIfTI, NRRD or HDF5 file), sub (a sub-folder: ...), ..."``: the first few entries."""
    text = ", ".join(f"{p.name} ({why})" for p, why in unread[:shown])
    return text + (f" and {len(unread) - shown} more" if len(unread) > shown else "")


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

            img = nib.load(str(p))
            check_voxel_dtype(img.get_data_dtype(), p)  # an RGB file is refused before any case is predicted
            shape = tuple(int(s) for s in img.shape)
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


def _probability_map(key: str, path: Path, preds: dict[str, Path], gts: dict[str, Path]) -> bool:
    """Whether prediction ``path`` (case ``key``) is `canet predict`'s probability map of another
    prediction: ``<case>_prob`` beside ``<case>_pred``, itself not a ``_pred`` file, and no
    ground truth of its own name."""
    if not key.lower().endswith("_prob") or key in gts or strip_suffix(path.name).lower().endswith("_pred"):
        return False
    mask = preds.get(key[: -len("_prob")])
    return mask is not None and strip_suffix(mask.name).lower().endswith("_pred")


def _refuse_broken_link(entry: Path) -> None:
    """Refuse a link named like a mask whose target is gone: scoring without it would drop its case
    (or call it a case without partner) without saying why."""
    if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_symlink() and not entry.exists():
        raise DataError(f"{entry} is a broken link (its target {os.readlink(entry)} does not exist)")


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

    def add(found: dict[str, Path], key: str, f: Path, folder: Path) -> None:
        if key in found:  # a.nii.gz and a.nrrd: which one is the case's cannot be told
            raise DataError(f"two files in {folder} stand for case {key!r}: {found[key].name}, {f.name}")
        found[key] = f

    def index(folder: Path, strip: Sequence[str]) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            _refuse_broken_link(f)
            if not _is_image(f):
                continue
            key = strip_suffix(f.name)
            for tail in strip:  # _pred, _PRED and _Pred alike
                if key.lower().endswith(tail) and len(key) > len(tail):
                    key = key[: -len(tail)]
                    break
            add(found, key, f, folder)
        return found

    if gt is None:
        preds: dict[str, Path] = {}
        gts: dict[str, Path] = {}
        for f in sorted(pred_dir.iterdir()):
            _refuse_broken_link(f)
            if not _is_image(f):
                continue
            stem = strip_suffix(f.name)
            for tail, found in (("_pred", preds), ("_gt", gts)):  # any letter case, as in two-folder mode
                if stem.lower().endswith(tail) and len(stem) > len(tail):
                    add(found, stem[: -len(tail)], f, pred_dir)
                    break
        where = f"{pred_dir} (<case>_pred / <case>_gt pairs)"
    else:
        gt_dir = Path(gt)
        if not gt_dir.is_dir():
            raise DataError(f"ground-truth folder not found: {gt_dir}")
        preds = index(pred_dir, ("_pred",))
        gts = index(gt_dir, ("_gt",))
        # `canet predict --probabilities` writes <case>_prob beside <case>_pred: the map of the mask scored
        preds = {k: f for k, f in preds.items() if not _probability_map(k, f, preds, gts)}
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
