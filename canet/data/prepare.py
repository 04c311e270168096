"""``canet prepare-la``: the 2018 challenge's raw NRRD files to the LA h5 layout.

The raw layout is ``RAW_DIR/<id>/lgemri.nrrd`` (the LGE-MRI scan) and
``RAW_DIR/<id>/laendo.nrrd`` (the atrium mask, 255 = atrium; another single
value such as 1 is taken as atrium too, but a mask with two non-zero values, or
masks that mark the atrium with different values beyond 1 and 255, are refused).
Each case is converted as the published
``mri_norm2.h5`` files were made:

1. z-score the image over the **whole** scan (float64 statistics, float32 result);
2. find the atrium's bounding box and widen it in x and y by a margin drawn
   per side from ``margin`` (default 10..20 voxels, inclusive) by
   ``default_rng([seed, h(id)])`` (``h``: a stable 64-bit hash of the id, so
   a case's margins do not depend on which other cases are converted); z is
   kept whole;
3. clip the box to the scan; where it is shorter than the training patch
   along an axis, widen it (evenly, shifted back inside the scan at an edge)
   to the patch size; where the scan itself is shorter, zero-pad the crop
   (evenly before and after);
4. write ``OUT_DIR/2018LA_Seg_Training Set/<id>/mri_norm2.h5`` (gzip
   ``image`` float32 and ``label`` uint8).

``OUT_DIR/prepare_la.json`` records the seed, the settings and, per case, the
source shape and spacing, the atrium box, the margins drawn, the crop box and
the padding, so the conversion can be audited and repeated; the same seed
gives the same files.

The mask is read from its own header: one stored in another voxel order than
its scan (flipped or permuted, with a header that says so) is brought into the
scan's order, and one on another grid is refused, as everywhere in canet. NaN or
infinite scan voxels are set to the scan's smallest finite value before the
z-score (with a warning; counted in the record as ``nonfinite_voxels``).
``OUT_DIR`` must be new or empty. The cases are written into
``OUT_DIR/.prepare-la.partial`` and moved into place once every case is
converted, so a failed or killed conversion leaves no half-made LA folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from canet.data.dataset import (
    LA_CASES_DIR,
    LA_FILE_NAME,
    _read_list,
    fill_nonfinite,
    label_on_image_grid,
    read_volume,
    write_case_h5,
    write_list,
    zscore,
)
from canet.errors import DataError, first_names
from canet.io import atomic_write_text, make_folder
from canet.labels import label_value_problem, label_values, refuse_mixed_object_values
from canet.patch_size import check_patch_size

RAW_IMAGE = "lgemri.nrrd"
RAW_LABEL = "laendo.nrrd"
#: Where the cases are written until every one is converted (inside ``OUT_DIR``).
STAGING = ".prepare-la.partial"



def _atrium(mask: np.ndarray, path: Path) -> tuple[np.ndarray, int | None]:
    """The atrium of a raw mask as uint8 0/1 (every nonzero voxel) and the value that marks it.

    NaN compares as nonzero and a fractional value is an interpolated mask, so both
    are refused rather than counted as atrium; so is a mask with two or more non-zero
    values (a label map: merging its classes into one atrium would be silent).

    Returns:
        ``(label, value)``: ``value`` is the mask's one non-zero value (None for an empty mask).
    """
    arr = np.asarray(mask)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{path}: the mask holds NaN or infinite values")
        fractional = arr != np.round(arr)
        if fractional.any():
            raise DataError(f"{path}: mask values must be integers (any nonzero one is atrium), "
                            f"got {float(arr[fractional].ravel()[0])}")
    values = label_values(arr)
    if len(values) > 1:  # reading a label map's classes as one atrium would merge them silently
        raise DataError(f"{path}: the mask holds values {{{first_names(values, 6)}}}, not one atrium value; "
                        "prepare-la makes the binary atrium set: give masks with one value (such as 255 or 1)")
    problem = label_value_problem(values, 2)
    if problem is not None:
        raise DataError(f"{path}: the mask {problem}")
    return (arr != 0).astype(np.uint8), (int(values[0]) if values else None)

def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _fit_axis(lo: int, hi: int, size: int, patch: int) -> tuple[int, int, tuple[int, int]]:
    """Clip ``[lo, hi)`` to ``[0, size)`` and widen it to ``patch``; returns (lo, hi, padding)."""
    lo, hi = max(lo, 0), min(hi, size)
    need = patch - (hi - lo)
    if need > 0:
        lo -= need // 2
        hi += need - need // 2
        if lo < 0:
            hi, lo = hi - lo, 0
        if hi > size:
            lo, hi = max(lo - (hi - size), 0), size
    short = max(patch - (hi - lo), 0)
    return lo, hi, (short // 2, short - short // 2)


def crop_case(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    patch_size: Sequence[int] = (112, 112, 80),
    margin: Sequence[int] = (10, 20),
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Crop a (z-scored) scan around its atrium (steps 2-3 of the module docstring).

    Args:
        image: ``X x Y x Z`` float32 image.
        label: ``X x Y x Z`` uint8 mask (1 = atrium), same shape.
        rng: draws the four margins (x low, x high, y low, y high), in that order.
        patch_size: the training patch the crop must hold.
        margin: ``(lowest, highest)`` margin in voxels, both inclusive.

    Returns:
        ``(image crop, label crop, record)`` with ``record`` holding
        ``bbox``, ``margins``, ``crop`` (``[start, stop)`` per axis in the
        source) and ``pad`` (``[before, after]`` per axis).

    Raises:
        DataError: an empty mask.
    """
    patch = check_patch_size(patch_size)
    m_lo, m_hi = int(margin[0]), int(margin[1])
    nz = [np.nonzero(label.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    if any(len(v) == 0 for v in nz):
        raise DataError("the atrium mask is empty")
    bbox = [[int(v[0]), int(v[-1]) + 1] for v in nz]
    draws = [int(v) for v in rng.integers(m_lo, m_hi + 1, size=4)]
    margins = [[draws[0], draws[1]], [draws[2], draws[3]], [0, 0]]
    boxes, pads = [], []
    for ax in range(3):
        if ax < 2:
            lo, hi = bbox[ax][0] - margins[ax][0], bbox[ax][1] + margins[ax][1]
        else:
            lo, hi = 0, label.shape[2]
        lo, hi, pad = _fit_axis(lo, hi, label.shape[ax], patch[ax])
        boxes.append([lo, hi])
        pads.append(list(pad))
    window = tuple(slice(lo, hi) for lo, hi in boxes)
    img, lab = image[window], label[window]
    if any(p[0] or p[1] for p in pads):
        img = np.pad(img, pads, mode="constant", constant_values=0)
        lab = np.pad(lab, pads, mode="constant", constant_values=0)
    record = {"bbox": bbox, "margins": margins[:2], "crop": boxes, "pad": pads}
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab, dtype=np.uint8), record


def _case_ids(raw: Path, train_ids: list[str] | None, test_ids: list[str] | None) -> list[str]:
    if train_ids is None and test_ids is None:
        ids = sorted(p.name for p in raw.iterdir() if (p / RAW_IMAGE).is_file())
        scanless = sorted(p.name for p in raw.iterdir() if (p / RAW_LABEL).is_file() and p.name not in ids)
        if scanless:
            raise DataError(f"{raw / scanless[0] / RAW_IMAGE}: file not found (the case has a {RAW_LABEL})")
        if not ids:
            raise DataError(f"{raw}: no <id>/{RAW_IMAGE} found")
        return ids
    ids: list[str] = []
    for i in [*(train_ids or []), *(test_ids or [])]:
        if i not in ids:
            ids.append(i)
    if not ids:
        raise DataError("the split lists name no case")
    return ids


def prepare_la(
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    patch_size: Sequence[int] = (112, 112, 80),
    margin: Sequence[int] = (10, 20),
    train_list: str | os.PathLike[str] | None = None,
    test_list: str | os.PathLike[str] | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert raw challenge cases to the LA h5 layout (see the module docstring).

    Args:
        raw_dir: folder of ``<id>/lgemri.nrrd`` + ``<id>/laendo.nrrd``.
        out_dir: the LA root to write.
        seed: seed of the margins (>= 0).
        patch_size: training patch the crops must hold (default 112 x 112 x 80).
        margin: ``(lowest, highest)`` margin per side in x and y, inclusive.
        train_list, test_list: files of case ids; when given, only their cases
            are converted and they are written as ``train.list`` / ``test.list``.
            Otherwise every case of ``raw_dir`` is converted and no list is written.
        progress: tqdm bar over the cases.
        warn: where warnings go (NaN voxels); default one ``warning:`` line on stderr.

    Returns:
        The record written to ``OUT_DIR/prepare_la.json``.

    Raises:
        DataError: missing folders or files, unreadable NRRD, a mask not on its
            scan's grid, an empty mask, a scan without finite voxels, an ``OUT_DIR``
            that is not empty, bad settings.
    """
    warn = warn or _print_warning
    raw = Path(raw_dir)
    out = Path(out_dir)
    if not raw.is_dir():
        raise DataError(f"raw folder not found: {raw}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a whole number >= 0, got {seed!r}")
    patch = check_patch_size(patch_size)
    margin = tuple(margin) if isinstance(margin, (list, tuple)) else (margin,)
    if (
        len(margin) != 2
        or not all(isinstance(m, (int, np.integer)) and not isinstance(m, bool) for m in margin)
        or not 0 <= margin[0] <= margin[1]
    ):
        raise DataError(f"margin must be two whole numbers 0 <= low <= high, got {list(margin)!r}")
    lists: dict[str, list[str] | None] = {}
    for name, file in (("train", train_list), ("test", test_list)):
        if file is None:
            lists[name] = None
            continue
        if not Path(file).is_file():
            raise DataError(f"{name} list not found: {file}")
        lists[name] = _read_list(Path(file))
        repeated = sorted({c for c in lists[name] if lists[name].count(c) > 1})
        if repeated:
            raise DataError(f"{file}: case {repeated[0]!r} is listed twice")
    if lists["train"] is not None and lists["test"] is not None:
        shared = sorted(set(lists["train"]) & set(lists["test"]))
        if shared:  # a case trained on and tested on: every score of it would be optimistic
            raise DataError(f"case {shared[0]!r} is in both {train_list} and {test_list} "
                            f"({len(shared)} shared case(s)); training and test cases must differ")
    ids = _case_ids(raw, lists["train"], lists["test"])
    for case_id in ids:
        for name in (RAW_IMAGE, RAW_LABEL):
            if not (raw / case_id / name).is_file():
                raise DataError(f"{raw / case_id / name}: file not found")

    staging = _staging_folder(out)
    record: dict[str, Any] = {
        "seed": int(seed), "patch_size": list(patch), "margin": [int(margin[0]), int(margin[1])],
        "source": str(raw), "cases": {},
    }
    items: Iterable[str] = ids
    if progress:
        from tqdm import tqdm

        items = tqdm(ids, desc="prepare-la", unit="case")
    object_values: dict[int, str] = {}  # the value marking the atrium -> the first case with it ("case 'a'")
    try:
        for case_id in items:
            image_path, label_path = raw / case_id / RAW_IMAGE, raw / case_id / RAW_LABEL
            image, geometry = read_volume(image_path, "image")
            mask, mask_geometry = read_volume(label_path, "label")
            mask = label_on_image_grid(mask, mask_geometry, geometry, label_path, image_path)
            image, nonfinite = fill_nonfinite(image, image_path)
            if nonfinite:
                warn(f"{image_path}: {nonfinite} NaN or infinite voxel(s) set to the scan's smallest finite "
                     "value before the z-score")
            label, value = _atrium(mask, label_path)
            if value is not None:
                object_values.setdefault(value, f"case {case_id!r}")
                refuse_mixed_object_values(
                    object_values, "the masks", "one structure, or classes of one label map? give masks with one "
                    "atrium value (0/1 beside 0/255 is fine)", marked="the atrium",
                )
            stats = np.asarray(image, dtype=np.float64)
            mean, std = float(stats.mean()), float(stats.std())
            del stats
            rng = np.random.default_rng([int(seed), _stable_hash(case_id)])
            try:
                img, lab, crop = crop_case(zscore(image), label, rng, patch, margin)
            except DataError as exc:
                raise DataError(f"{label_path}: {exc}") from None
            write_case_h5(staging / LA_CASES_DIR / case_id / LA_FILE_NAME, img, lab)
            record["cases"][case_id] = {
                "source_shape": [int(v) for v in image.shape],
                "spacing": [float(v) for v in geometry.spacing],
                "intensity_mean": mean,
                "intensity_std": std,
                "nonfinite_voxels": int(nonfinite),
                **crop,
                "shape": [int(v) for v in img.shape],
            }
        for name in ("train", "test"):
            if lists[name] is not None:
                write_list(staging / f"{name}.list", lists[name] or [])
        atomic_write_text(staging / "prepare_la.json", json.dumps(record, indent=2) + "\n")
        for entry in sorted(staging.iterdir()):
            os.replace(entry, out / entry.name)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def _staging_folder(out: Path) -> Path:
    """``OUT_DIR``'s staging folder, made empty; ``OUT_DIR`` itself must be new or empty.

    A staging folder left by a killed conversion is removed (it never held a finished LA folder).

    Raises:
        DataError: ``OUT_DIR`` holds anything else.
        OutputPathError: ``OUT_DIR`` cannot be created (a file stands in its way).
    """
    make_folder(out)
    staging = out / STAGING
    held = sorted(p.name for p in out.iterdir() if p.name != STAGING)
    if held:
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        raise DataError(f"{out} is not empty (it holds {held[0]}{more}); give a new or empty folder")
    shutil.rmtree(staging, ignore_errors=True)
    return make_folder(staging)
