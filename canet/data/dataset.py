"""Cases, volumes and datasets: the LA benchmark layout and users' datalists.

Two kinds of dataset are understood by :func:`open_dataset`:

* **LA layout** (``kind="la"``): a folder holding ``train.list``, optionally
  ``test.list`` and ``val.list`` (one case id a line), and
  ``2018LA_Seg_Training Set/<id>/mri_norm2.h5`` files whose ``image``
  (float32, already z-scored) and ``label`` (uint8) datasets have the same
  shape. The first ``labeled`` ids of ``train.list`` are labeled, the rest
  unlabeled. LA volumes carry no geometry: their affine is the identity and
  their spacing ``(1, 1, 1)``, i.e. distances are in **voxels**, which is how
  the literature reports HD95 and ASD on this benchmark (the scans' true
  spacing is 0.625 mm isotropic).
* **Datalist** (``kind="datalist"``): a JSON or YAML file in the style of the
  Medical Segmentation Decathlon's ``dataset.json``::

      {"num_classes": 2, "normalize": true, "postprocess": {"lcc": false},
       "training":   [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}, ...],
       "unlabeled":  [{"image": "imagesUn/b.nrrd"}, ...],
       "validation": [{"image": ..., "label": ...}, ...],
       "test":       ["imagesTs/c.nii.gz", {"image": ..., "label": ...}, ...]}

  Paths are relative to the datalist's folder (absolute paths are kept).
  Images may be NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or
  HDF5 (``.h5``, ``.hdf5`` with an ``image`` / ``label`` dataset). Unlabeled
  entries need no label. ``num_classes`` defaults to 2 and ``normalize`` (z-score
  each image over the whole volume when it is loaded) to true.
  ``postprocess: {lcc: true}`` keeps only the largest connected component of
  each predicted class when the dataset is evaluated (default false: right for
  structures in several parts; the LA layout always uses it, as the literature).
  Other top-level keys are refused (:data:`DATALIST_KEYS`), except the
  descriptive ones of the Decathlon's and nnU-Net's ``dataset.json``
  (:data:`DESCRIPTIVE_KEYS`); an entry's own extra keys are read past unless they
  look like a misspelt :data:`ENTRY_KEYS` key.

Geometry convention: every :class:`Volume` carries a 4 x 4 voxel-to-world
affine in **RAS+ millimetres**, the convention of NIfTI and nibabel. NIfTI
files give it directly (the sform, else the qform, converted to mm from the
header's spatial unit). NRRD files state their frame in the
``space`` field, usually ``left-posterior-superior`` (LPS, the DICOM / ITK /
Slicer convention); their ``space directions`` (one row per voxel axis) and
``space origin`` are converted to RAS by negating the first two world
coordinates, so an NRRD volume gets exactly the affine nibabel reports for the
same volume saved as NIfTI by ITK or Slicer. Predictions written with
:func:`save_nifti` and that affine therefore overlay the source scan.

Files that do not state their geometry: LA ``.h5`` files and NRRD files
without ``space directions`` (and without ``spacings``) have no voxel size, so
their distances are in **voxels** (:attr:`Geometry.unit` / ``Volume.spacing_unit``
is ``"voxels"``); they, and NRRD files with only ``spacings``, also have no
orientation (:attr:`Geometry.oriented` is False) and are always used in stored
voxel order; so are NRRD files whose ``space`` is not anatomical
(``scanner-xyz``, ``3D-right-handed``, ...). NIfTI files are oriented when their
sform or qform code is set and that matrix places voxels (not singular).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from canet.errors import DataError
from canet.io import atomic_path

LA_CASES_DIR = "2018LA_Seg_Training Set"
LA_FILE_NAME = "mri_norm2.h5"
#: Every image file canet reads (:func:`read_volume`): NIfTI, NRRD (also a detached
#: ``.nhdr`` header) and HDF5 with an ``image`` / ``label`` dataset. Datalists,
#: ``canet predict`` and ``canet score`` take the same files.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".h5", ".hdf5")
#: The formats of :data:`IMAGE_SUFFIXES`, as messages name them.
IMAGE_FORMATS = "NIfTI, NRRD or HDF5"
DATALIST_SUFFIXES: tuple[str, ...] = (".json", ".yaml", ".yml")

# Matrices taking coordinates of an NRRD "space" to RAS+ (None: left as written).
_SPACE_TO_RAS: dict[str, tuple[float, float, float]] = {
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
}


@dataclass(frozen=True)
class Case:
    """One case of a dataset: where its image and (optional) label live.

    Attributes:
        case_id: unique name of the case within its dataset.
        image: image file (NIfTI, NRRD or HDF5 with an ``image`` dataset).
        label: label file, or ``None`` for a case without one. For the LA
            layout it is the same ``.h5`` file as ``image`` (its ``label``
            dataset); the training loader never reads it for cases it treats
            as unlabeled.
        normalize: whether :func:`load_case` z-scores the image by default
            (``False`` for LA ``.h5`` files, which are already z-scored;
            ``True`` for datalists unless the datalist says otherwise).
    """

    case_id: str
    image: Path
    label: Path | None = None
    normalize: bool = True


@dataclass
class Volume:
    """A decoded case.

    Attributes:
        case_id: the case's id.
        image: ``X x Y x Z`` float32 array.
        label: ``X x Y x Z`` uint8 array (class indices), or ``None``.
        affine: 4 x 4 float64 voxel-to-world matrix, RAS+ mm (identity for LA).
        spacing: voxel size per axis in mm (``(1.0, 1.0, 1.0)`` = voxels for LA).
        spacing_unit: ``"mm"``, or ``"voxels"`` when the file states no voxel
            size (LA ``.h5``, NRRD without space directions).
        oriented: whether the file states its orientation (False for LA
            ``.h5`` and NRRD without space directions: stored voxel order).
        nonfinite: how many NaN or infinite image voxels were set to the
            scan's smallest finite value when it was read (:func:`fill_nonfinite`).
        source: the image file it was read from (``None`` when made in memory);
            outputs on its grid copy a NIfTI source's header geometry (:func:`save_nifti`).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]
    spacing_unit: Literal["mm", "voxels"] = "mm"
    oriented: bool = True
    nonfinite: int = 0
    source: Path | None = None


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels are, as its file states it.

    Attributes:
        shape: ``(X, Y, Z)``.
        affine: 4 x 4 float64 voxel-to-world matrix, RAS+ mm (identity when
            the file states none).
        spacing: voxel size per axis (``(1, 1, 1)`` when unknown).
        unit: ``"mm"``, or ``"voxels"`` when the file states no voxel size.
        oriented: whether the file states its orientation.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    unit: Literal["mm", "voxels"] = "mm"
    oriented: bool = True

    @property
    def axcodes(self) -> str | None:
        """Orientation as three axis codes (``"RAS"``, ``"LPS"``, ...), None when not oriented."""
        if not self.oriented:
            return None
        import nibabel as nib

        return "".join(str(c) for c in nib.aff2axcodes(self.affine))


@dataclass
class DatasetSpec:
    """The splits of a dataset, as :func:`open_dataset` finds them.

    Attributes:
        root: the LA folder, or the folder holding the datalist.
        labeled, unlabeled, validation, test: the cases of each split.
        num_classes: classes including background (2 for binary tasks).
        normalize: default z-scoring of its images (see :class:`Case`).
        kind: ``"la"`` or ``"datalist"``.
        datalist: the datalist file (``None`` for the LA layout).
        lcc: largest-connected-component post-processing by default when the
            dataset is evaluated (True for LA; a datalist's ``postprocess.lcc``,
            default False).
        num_classes_stated: the datalist states ``num_classes`` (not the
            default 2); ``check-data`` then lets binary labels mark their object
            with different values.
    """

    root: Path
    labeled: list[Case]
    unlabeled: list[Case]
    validation: list[Case] = field(default_factory=list)
    test: list[Case] = field(default_factory=list)
    num_classes: int = 2
    normalize: bool = False
    kind: Literal["la", "datalist"] = "la"
    datalist: Path | None = None
    lcc: bool = True
    num_classes_stated: bool = False

    @property
    def train(self) -> list[Case]:
        """Labeled then unlabeled cases."""
        return [*self.labeled, *self.unlabeled]

    def split(self, name: str) -> list[Case]:
        """Cases of split ``name`` (``labeled``, ``unlabeled``, ``train``, ``validation``, ``test``)."""
        splits = {
            "labeled": self.labeled,
            "unlabeled": self.unlabeled,
            "train": self.train,
            "validation": self.validation,
            "test": self.test,
        }
        if name not in splits:
            raise DataError(f"split must be one of {', '.join(splits)}, got {name!r}")
        return list(splits[name])


# --------------------------------------------------------------------------- file readers


def _reason(exc: BaseException) -> str:
    """One line describing ``exc`` (its first message line, or its type)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def file_format(path: str | os.PathLike[str]) -> Literal["nifti", "nrrd", "h5"]:
    """The reader for ``path`` from its extension; DataError for an unknown one."""
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    raise DataError(f"{path}: not a {IMAGE_FORMATS} file (expected one of {', '.join(IMAGE_SUFFIXES)})")


#: What joins the folders of a case id made from its image's path (when several images share a name).
PATH_ID_JOIN = "__"


def strip_suffix(name: str) -> str:
    """``name`` without its image extension (``a.nii.gz`` -> ``a``)."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_voxel_dtype(dtype: np.dtype[Any], path: str | os.PathLike[str], what: str = "image") -> None:
    """DataError unless ``dtype`` holds one real number per voxel (bool, integer or float).

    Complex values (numpy would drop the imaginary part with only a warning), RGB(A)
    NIfTI (a structured dtype), strings and objects are refused.
    """
    if dtype.kind == "c":
        raise DataError(f"{path}: {what} holds complex values ({dtype}); canet reads real-valued volumes")
    if dtype.kind not in "biuf":
        raise DataError(f"{path}: {what} has dtype {dtype}, not one number per voxel "
                        "(an RGB or multi-field image?); canet reads single-channel real-valued volumes")


def _to_3d(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Drop trailing axes of length 1; DataError unless the result is 3D and real-valued."""
    check_voxel_dtype(array.dtype, path, what)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{path}: {what} is {array.ndim}D with shape {tuple(array.shape)}; expected a 3D volume")
    return array


def _nrrd_space(header: dict[str, Any]) -> str:
    """The header's ``space``, lower case, without the time axis of a 4D frame (``-time``, or
    the ``T`` of the short names ``RAST``, ``LAST``, ``LPST``)."""
    space = str(header.get("space", "")).strip().lower()
    if space in ("rast", "last", "lpst"):
        return space[:3]
    return space[: -len("-time")] if space.endswith("-time") else space


def _nrrd_states(header: dict[str, Any]) -> tuple[bool, bool]:
    """``(has voxel size, has orientation)`` of an NRRD header.

    Oriented means ``space directions`` in an anatomical ``space`` (RAS, LAS, LPS,
    also their ``-time`` forms); a frame without anatomical meaning
    (``scanner-xyz``, ``3D-right-handed``, ``3D-left-handed``, or only ``space
    dimension``) gives voxel sizes but no orientation.
    """
    directions = header.get("space directions")
    rows = 0
    if directions is not None:
        for row in directions:
            if row is None:
                continue
            vec = np.asarray(row, dtype=np.float64).ravel()
            rows += int(vec.size >= 3 and bool(np.all(np.isfinite(vec[:3]))))
    if rows >= 3:
        return True, _nrrd_space(header) in _SPACE_TO_RAS
    spacings = header.get("spacings")
    if spacings is not None:
        steps = np.asarray(spacings, dtype=np.float64).ravel()[:3]
        if steps.size == 3 and bool(np.all(np.isfinite(steps))):
            return True, False
    return False, False


def nrrd_affine(header: dict[str, Any]) -> np.ndarray:
    """The RAS+ voxel-to-world affine of an NRRD header (see the module docstring).

    ``space directions`` gives one row per voxel axis (the world step of one
    voxel along that axis, in the frame named by ``space``); ``space origin``
    the world position of voxel (0, 0, 0). Both are turned into RAS by
    negating the axes that the frame points the other way (x and y for LPS).
    Without ``space directions`` the per-axis ``spacings`` give a diagonal
    matrix; without either the affine is the identity. Lengths are turned into
    mm from ``space units`` (with ``space directions``) or ``units`` (with
    ``spacings``): m, cm, mm, um or micron; none named is mm.

    Returns:
        4 x 4 float64 matrix.

    Raises:
        DataError: a length unit canet does not know.
    """
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        rows = []
        for row in directions:
            if row is None:
                continue
            vec = np.asarray(row, dtype=np.float64).ravel()
            if vec.size >= 3 and np.all(np.isfinite(vec[:3])):
                rows.append(vec[:3])
        if len(rows) >= 3:
            # column i: the step along voxel axis i; "space units": one per world axis
            affine[:3, :3] = np.stack(rows[:3], axis=1) * np.asarray(_nrrd_mm(header, "space units"))[:, None]
    elif header.get("spacings") is not None:
        steps = [float(s) for s in np.asarray(header["spacings"], dtype=np.float64).ravel()[:3]]
        if len(steps) == 3 and all(np.isfinite(steps)):
            affine[:3, :3] = np.diag(steps) * np.asarray(_nrrd_mm(header, "units"))[None, :]
    origin = header.get("space origin")
    if origin is not None:
        vec = np.asarray(origin, dtype=np.float64).ravel()
        if vec.size >= 3 and np.all(np.isfinite(vec[:3])):
            affine[:3, 3] = vec[:3] * np.asarray(_nrrd_mm(header, "space units"))
    flips = _SPACE_TO_RAS.get(_nrrd_space(header))
    if flips is not None:
        affine = np.diag([*flips, 1.0]) @ affine
    return affine


#: Millimetres per length unit named in an NRRD header (``space units``, ``units``); an empty name is mm.
#: (pynrrd drops non-ASCII characters, so "µm" arrives as "m": :func:`_nrrd_units_ascii` refuses it.)
_NRRD_MM: dict[str, float] = {
    "": 1.0, "mm": 1.0, "millimeter": 1.0, "millimeters": 1.0, "millimetre": 1.0, "millimetres": 1.0,
    "m": 1000.0, "meter": 1000.0, "meters": 1000.0, "metre": 1000.0, "metres": 1000.0,
    "cm": 10.0, "centimeter": 10.0, "centimeters": 10.0,
    "um": 0.001, "micron": 0.001, "microns": 0.001, "micrometer": 0.001, "micrometers": 0.001,
}


def _nrrd_mm(header: dict[str, Any], field: str) -> tuple[float, float, float]:
    """Millimetres per unit of the first three entries of ``field`` (1 where the header names none).

    Raises:
        DataError: a unit canet does not know (a distance in it would be off by its factor).
    """
    raw = header.get(field)
    if raw is None:
        return (1.0, 1.0, 1.0)
    names = raw.split() if isinstance(raw, str) else list(raw)
    if len(names) < 3:
        raise DataError(f"NRRD {field} names {len(names)} unit(s) for 3 axes: {names!r}")
    factors = []
    for name in names[:3]:
        key = str(name).strip().strip('"').lower()
        if key in ("none", "???"):  # the NRRD spec's placeholders for an axis without a unit
            key = ""
        if key not in _NRRD_MM:
            raise DataError(f"NRRD {field} {str(name)!r} is not a length unit canet knows "
                            "(mm, cm, m, um or micron)")
        factors.append(_NRRD_MM[key])
    return (factors[0], factors[1], factors[2])


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size per axis: the lengths of the affine's first three columns."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def read_array(
    path: str | os.PathLike[str], key: str = "image"
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read one 3D array with its geometry.

    Args:
        path: NIfTI, NRRD or HDF5 file.
        key: dataset to read from an HDF5 file (``"image"`` or ``"label"``);
            ignored for NIfTI and NRRD, which hold one array.

    Returns:
        ``(array, affine, spacing)``: the ``X x Y x Z`` array in its stored
        dtype, the 4 x 4 RAS+ affine (identity for HDF5) and the spacing
        (``(1, 1, 1)`` for HDF5). :func:`read_volume` also says whether the
        spacing and orientation are known.

    Raises:
        DataError: missing, unreadable or truncated file, missing dataset, not 3D.
    """
    array, geometry = read_volume(path, key)
    return array, geometry.affine, geometry.spacing


#: Millimetres per spatial unit of a NIfTI header: the low three bits of ``xyzt_units``
#: (1 meter, 2 mm, 3 micron); 0 ("unknown") and codes NIfTI does not define are taken as mm.
_NIFTI_MM: dict[int, float] = {1: 1000.0, 2: 1.0, 3: 0.001}


def _usable(affine: np.ndarray | None) -> bool:
    """A voxel-to-world matrix that places voxels: finite, with a non-singular 3 x 3 part.

    Singular is judged relative to the columns' lengths, so the test does not depend on
    the unit or the voxel size (0.05 mm voxels written in meters are fine).
    """
    if affine is None or not np.all(np.isfinite(affine)):
        return False
    block = np.asarray(affine, dtype=np.float64)[:3, :3]
    scale = float(np.prod(np.linalg.norm(block, axis=0)))
    return scale > 0 and abs(float(np.linalg.det(block))) > 1e-6 * scale


def _nifti_geometry(img: Any, shape: tuple[int, ...]) -> Geometry:
    """A NIfTI file's geometry in mm; the voxel size is that of the affine that places its voxels.

    The sform is used when its code is set and it is usable, else the qform
    (the order nibabel and ITK use). A header whose coded matrices are both
    degenerate (all zero, say) states no usable orientation: the file is then
    unoriented, like one with both codes 0, and placed by its ``pixdim``.
    Positions and sizes are converted to millimetres from the header's spatial
    unit (``meter``, ``micron``; ``unknown`` is taken as mm). The header's
    ``pixdim`` is used only where the affine gives no usable size: a file whose
    sform scales its axes otherwise than its ``pixdim`` says (a stale
    ``pixdim``) is placed by the sform, so its distances are measured with the
    sform's sizes too.
    """
    header = img.header
    to_mm = _NIFTI_MM.get(int(header["xyzt_units"]) & 7, 1.0)  # the raw byte: nibabel refuses codes it lacks
    coded = [np.asarray(m, dtype=np.float64) for m, code in (header.get_sform(coded=True),
                                                              header.get_qform(coded=True)) if code]
    placed = [m for m in coded if _usable(m)]
    zooms = tuple(abs(float(z)) for z in header.get_zooms()[:3])
    if placed:
        affine, oriented = placed[0].copy(), True
    else:  # nibabel's fallback for a header without orientation: pixdim, centred
        affine, oriented = np.asarray(header.get_base_affine(), dtype=np.float64), False
    affine[:3, :] *= to_mm
    spacing = spacing_of(affine)
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        spacing = tuple(z * to_mm for z in zooms)
    return Geometry(tuple(shape[:3]), affine, spacing, "mm", oriented)  # type: ignore[arg-type]


def _nrrd_units_ascii(path: Path, header: dict[str, Any]) -> None:
    """DataError when the file's ``space units`` or ``units`` line holds non-ASCII bytes.

    The NRRD reader drops such characters, so ``"µm"`` would be read as ``"m"``: a
    distance a million times too long.
    """
    if header.get("space units") is None and header.get("units") is None:
        return
    with open(path, "rb") as fh:
        head = fh.read(1 << 20).split(b"\n\n", 1)[0]  # the header ends at its first blank line
    for line in head.splitlines():
        name = line.split(b":", 1)[0].strip().lower()
        if name in (b"space units", b"units") and any(b >= 0x80 for b in line):
            text = line.decode("utf-8", errors="replace").split(":", 1)[1].strip()
            raise DataError(f"NRRD {name.decode()} {text} holds a non-ASCII unit that the NRRD reader drops "
                            "(µm would be read as m); write it in ASCII, e.g. um")


def _nrrd_geometry(header: dict[str, Any], shape: tuple[int, ...], path: Path) -> Geometry:
    has_size, oriented = _nrrd_states(header)
    try:
        _nrrd_units_ascii(path, header)
        affine = nrrd_affine(header)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    spacing = spacing_of(affine)
    if not has_size or min(spacing) <= 0:
        return Geometry(tuple(shape[:3]), affine, (1.0, 1.0, 1.0), "voxels", False)  # type: ignore[arg-type]
    return Geometry(tuple(shape[:3]), affine, spacing, "mm", oriented)  # type: ignore[arg-type]


def read_geometry(path: str | os.PathLike[str], key: str = "image") -> Geometry:
    """The :class:`Geometry` of a volume file from its header only (cheap).

    Raises:
        DataError: missing or unreadable file, unknown extension, not 3D.
    """
    p = Path(path)
    fmt = file_format(p)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        if fmt == "h5":
            import h5py

            with h5py.File(p, "r") as fh:
                if key not in fh or not isinstance(fh[key], h5py.Dataset):
                    held = ", ".join(sorted(fh.keys())) or "nothing"
                    raise DataError(f"{p}: no '{key}' dataset (the file holds: {held})")
                shape = tuple(int(v) for v in fh[key].shape)
            geometry = None
        elif fmt == "nifti":
            import nibabel as nib

            img = nib.load(str(p))
            shape = tuple(int(v) for v in img.shape)
            geometry = _nifti_geometry(img, shape)
        else:
            import nrrd

            header = nrrd.read_header(str(p))
            shape = tuple(int(v) for v in header["sizes"])
            geometry = _nrrd_geometry(header, shape, p)
    except DataError:
        raise
    except Exception as exc:  # any reader failure means a bad file
        raise DataError(f"{p}: cannot read header ({_reason(exc)})") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise DataError(f"{p}: {key} is {len(shape)}D with shape {shape}; expected a 3D volume")
    if geometry is None:
        return Geometry(shape, np.eye(4), (1.0, 1.0, 1.0), "voxels", False)  # type: ignore[arg-type]
    return Geometry(shape, geometry.affine, geometry.spacing, geometry.unit, geometry.oriented)  # type: ignore[arg-type]


def read_volume(path: str | os.PathLike[str], key: str = "image") -> tuple[np.ndarray, Geometry]:
    """Read one 3D array and its :class:`Geometry` (see :func:`read_array`).

    Raises:
        DataError: missing, unreadable or truncated file, missing dataset, not 3D.
    """
    p = Path(path)
    fmt = file_format(p)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    if fmt == "h5":
        import h5py

        try:
            with h5py.File(p, "r") as fh:
                if key not in fh:
                    held = ", ".join(sorted(fh.keys())) or "nothing"
                    raise DataError(f"{p}: no '{key}' dataset (the file holds: {held})")
                node = fh[key]
                if not isinstance(node, h5py.Dataset):
                    raise DataError(f"{p}: '{key}' is a group, not a dataset")
                array = np.asarray(node[()])
        except DataError:
            raise
        except Exception as exc:  # any reader failure means a bad file
            raise DataError(f"{p}: cannot read HDF5 file ({_reason(exc)})") from None
        array = _to_3d(array, p, key)
        return array, Geometry(array.shape, np.eye(4), (1.0, 1.0, 1.0), "voxels", False)  # type: ignore[arg-type]
    if fmt == "nifti":
        import nibabel as nib

        try:
            img = nib.load(str(p))
            array = np.asarray(img.dataobj)
            geometry = _nifti_geometry(img, array.shape)
        except Exception as exc:
            raise DataError(f"{p}: cannot read NIfTI file ({_reason(exc)})") from None
        array = _to_3d(array, p, key)
        return array, geometry
    import nrrd

    try:
        array, header = nrrd.read(str(p))
    except Exception as exc:
        raise DataError(f"{p}: cannot read NRRD file ({_reason(exc)})") from None
    array = _to_3d(np.asarray(array), p, key)
    return array, _nrrd_geometry(header, array.shape, p)


def as_label(array: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """``array`` as a uint8 label map; DataError unless its values are integers in 0..255."""
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.size == 0:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{path}: label holds NaN or inf values")
        if not np.array_equal(arr, np.round(arr)):
            bad = arr[arr != np.round(arr)].ravel()[0]
            raise DataError(f"{path}: label values must be integers, got {float(bad)}")
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi > 255:
        raise DataError(f"{path}: label values must be in 0..255, got {lo if lo < 0 else hi}")
    return arr.astype(np.uint8)


def fill_nonfinite(image: np.ndarray, what: str | os.PathLike[str] = "image") -> tuple[np.ndarray, int]:
    """``image`` as float32 with its NaN and infinite voxels set to its smallest finite value.

    Padding outside a scanner's field of view is often stored as NaN; one such
    voxel would make the z-score of the whole volume NaN (and every prediction
    background). Setting them to the scan's minimum treats them as the darkest
    background, before any normalisation.

    Args:
        image: the volume as read (any real dtype).
        what: how an error names it (usually its file).

    Returns:
        ``(image, count)``: float32 (a copy only when voxels were replaced) and
        how many voxels were replaced.

    Raises:
        DataError: every voxel is NaN or infinite (nothing to fill them with).
    """
    arr = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(arr)
    if finite.all():
        return arr, 0
    count = int(arr.size - np.count_nonzero(finite))
    if count == arr.size:
        raise DataError(f"{what}: every voxel of the image is NaN or infinite")
    out = arr.copy()
    out[~finite] = arr[finite].min()
    return out, count


def label_on_image_grid(
    label: np.ndarray, label_geometry: Geometry, image_geometry: Geometry,
    label_path: str | os.PathLike[str], image_path: str | os.PathLike[str],
) -> np.ndarray:
    """``label`` in its image's voxel order, read from both files' geometry.

    A label may be stored in another voxel order than its image (flipped or
    permuted, with an affine that says so); it is brought into the image's
    order when both grids hold the same voxels in world space
    (:func:`canet.data.orientation.grid_transform`). When either file states
    no orientation, the two are taken in stored order and need the same shape.

    Raises:
        DataError: the shapes differ (unoriented files), or the label's grid is
            not the image's in world space (shifted, resampled, other shape).
    """
    arr = np.asarray(label)
    if not (label_geometry.oriented and image_geometry.oriented):
        if arr.shape != tuple(image_geometry.shape):
            raise DataError(
                f"{label_path}: label shape {tuple(arr.shape)} differs from image shape {tuple(image_geometry.shape)}"
            )
        return arr
    from canet.data.orientation import placement_gap, to_grid

    moved = to_grid(arr, label_geometry.affine, image_geometry.affine, image_geometry.shape)
    if moved is not None:
        return moved
    if arr.shape == tuple(image_geometry.shape):
        gap = placement_gap(label_geometry.affine, image_geometry.affine, arr.shape)
        where = f"its affine places a corner {gap:.3g} mm away from the image's"
    else:
        where = (f"shape {tuple(arr.shape)} in {label_geometry.axcodes} order does not match the image's "
                 f"{tuple(image_geometry.shape)} in {image_geometry.axcodes} order")
    raise DataError(
        f"{label_path}: the label is not on the grid of its image {Path(image_path).name} ({where}); "
        "resample it onto the image"
    )


def zscore(image: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` over the whole volume, as float32.

    Statistics are accumulated in float64. A constant image (std 0) is only
    centred, so it becomes all zeros rather than NaN.
    """
    arr = np.asarray(image, dtype=np.float32)
    mean = float(arr.mean(dtype=np.float64)) if arr.size else 0.0
    std = float(arr.std(dtype=np.float64)) if arr.size else 0.0
    out = arr - np.float32(mean)
    if std > 0 and np.isfinite(std):
        out /= np.float32(std)
    return out.astype(np.float32, copy=False)


#: The NIfTI header fields that place voxels in the world (with ``pixdim[0:4]`` and the spatial unit).
_PLACEMENT_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                     "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z")


def _same_grid_nifti_header(like: str | os.PathLike[str] | None, shape: tuple[int, ...],
                            affine: np.ndarray) -> Any | None:
    """The header of the NIfTI file ``like`` when it holds ``shape`` placed by ``affine``, else None."""
    if like is None or not str(like).lower().endswith((".nii", ".nii.gz")):
        return None
    import nibabel as nib

    try:
        img = nib.load(str(like))
        stored = tuple(int(v) for v in img.shape)
    except Exception:  # the source was read before; a file changed since is simply not copied
        return None
    while len(stored) > 3 and stored[-1] == 1:
        stored = stored[:-1]
    if stored != tuple(shape):
        return None
    header = img.header
    if not all(_usable(np.asarray(m, dtype=np.float64)) for m, code in (header.get_sform(coded=True),
                                                                         header.get_qform(coded=True)) if code):
        return None  # a coded matrix that places nothing is not passed on (the output claims no orientation)
    placed = _nifti_geometry(img, stored).affine
    if not np.allclose(placed, affine, rtol=0.0, atol=1e-6 * max(1.0, float(np.abs(affine).max()))):
        return None
    return header


def _copy_placement(source: Any, target: Any) -> None:
    """Copy the fields of NIfTI header ``source`` that place voxels into header ``target``."""
    for key in _PLACEMENT_FIELDS:
        target[key] = source[key]
    pixdim = np.array(target["pixdim"], dtype=np.float32)
    pixdim[:4] = np.asarray(source["pixdim"], dtype=np.float32)[:4]
    target["pixdim"] = pixdim
    target["xyzt_units"] = (int(source["xyzt_units"]) & 7) | (int(target["xyzt_units"]) & ~7 & 0xFF)


def save_nifti(
    path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray | None = None, oriented: bool = True,
    like: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``array`` as NIfTI with ``affine`` (RAS+, as in :class:`Volume`) atomically.

    Both the sform and the qform are set (code 1, scanner) so every viewer
    places it where the source scan is; the spatial unit is mm. ``oriented=False`` (a source NIfTI
    whose header states no orientation: sform and qform codes 0) writes codes 0
    as well, with the affine's voxel sizes as ``pixdim``, so the output claims
    no more than its source did and readers place the two alike.

    ``like``: the source image. When it is a NIfTI file of the same grid (its
    shape, and canet's affine of it equal to ``affine``), its header's sform,
    qform, their codes, ``pixdim`` and spatial unit are copied as they are, so
    that a reader places the output wherever it places the source, even when
    the source's qform or ``pixdim`` disagree with its sform (canet and nibabel
    use the sform; ITK-based viewers may use the qform or ``pixdim``). Otherwise
    the output is written as above. Returns the path written.
    """
    import nibabel as nib

    target = Path(path)
    matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    source = _same_grid_nifti_header(like, np.shape(array)[:3], matrix)
    if source is not None:
        img = nib.Nifti1Image(np.asarray(array), None)
        _copy_placement(source, img.header)
    elif oriented:
        img = nib.Nifti1Image(np.asarray(array), matrix)
        img.set_sform(matrix, code=1)
        img.set_qform(matrix, code=1)
    else:  # no affine in memory: nibabel would write it as an sform (code 2) on saving
        img = nib.Nifti1Image(np.asarray(array), None)
        img.header.set_zooms(spacing_of(matrix) + tuple(img.header.get_zooms()[3:]))
    if source is None:
        img.header.set_xyzt_units(xyz="mm")  # the affine is in mm (see _nifti_geometry)
    suffix = ".nii.gz" if target.name.lower().endswith(".gz") else ".nii"
    with atomic_path(target, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
    return target


def load_case(case: Case, with_label: bool = True, normalize: bool | None = None) -> Volume:
    """Decode one case.

    Args:
        case: the case.
        with_label: read the label (when the case has one). ``False`` never
            opens the label file or the HDF5 ``label`` dataset.
        normalize: z-score the image over the whole volume; ``None`` (default)
            uses ``case.normalize``.

    NaN and infinite image voxels are set to the scan's smallest finite value
    before normalising (:func:`fill_nonfinite`; ``Volume.nonfinite`` counts
    them). A label stored in another voxel order than its image is brought
    into the image's order (:func:`label_on_image_grid`).

    Returns:
        A :class:`Volume`: image ``X x Y x Z`` float32, label ``X x Y x Z``
        uint8 (in the image's voxel order) or ``None``, the image file's
        affine, spacing, spacing unit, whether it is oriented and how many
        voxels were not finite.

    Raises:
        DataError: a missing or unreadable file, not 3D, an image without any
            finite voxel, a label not on the image's grid or with values that
            are not class indices.
    """
    raw_image, geometry = read_volume(case.image, "image")
    image, nonfinite = fill_nonfinite(raw_image, case.image)
    do_norm = case.normalize if normalize is None else bool(normalize)
    if do_norm:
        image = zscore(image)
    label = None
    if with_label and case.label is not None:
        raw, label_geometry = read_volume(case.label, "label")
        raw = label_on_image_grid(raw, label_geometry, geometry, case.label, case.image)
        label = as_label(raw, case.label)
    return Volume(
        case.case_id, image, label, geometry.affine, geometry.spacing, geometry.unit, geometry.oriented,
        nonfinite, Path(case.image),
    )


# --------------------------------------------------------------------------- datasets


def _read_list(path: Path) -> list[str]:
    """Ids of a ``*.list`` file: one a line, blank lines and ``#`` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list ({_reason(exc)})") from None
    ids = []
    for line in text.splitlines():
        item = line.strip()
        if item and not item.startswith("#"):
            ids.append(item)
    return ids


def _check_labeled(labeled: int | None, available: int, source: Path) -> int:
    if labeled is None:
        return available
    if isinstance(labeled, bool) or not isinstance(labeled, (int, np.integer)):
        raise DataError(f"labeled must be a whole number of cases, got {labeled!r}")
    if labeled < 1:
        raise DataError(f"labeled must be at least 1, got {labeled}")
    if labeled > available:
        raise DataError(f"labeled={labeled} exceeds the {available} training cases of {source}")
    return int(labeled)


def _open_la(root: Path, labeled: int | None) -> DatasetSpec:
    train_list = root / "train.list"
    if not train_list.is_file():
        raise DataError(f"{root}: not an LA dataset folder (no train.list)")
    cases_dir = root / LA_CASES_DIR

    def case(case_id: str) -> Case:
        h5 = cases_dir / case_id / LA_FILE_NAME
        return Case(case_id, h5, h5, normalize=False)

    train = [case(i) for i in _read_list(train_list)]
    n = _check_labeled(labeled, len(train), train_list)
    split_files = {name: root / f"{name}.list" for name in ("val", "test")}
    validation = [case(i) for i in _read_list(split_files["val"])] if split_files["val"].is_file() else []
    test = [case(i) for i in _read_list(split_files["test"])] if split_files["test"].is_file() else []
    return DatasetSpec(
        root=root, labeled=train[:n], unlabeled=train[n:], validation=validation, test=test,
        num_classes=2, normalize=False, kind="la", datalist=None, lcc=True,
    )


def _load_datalist_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read datalist ({_reason(exc)})") from None
    from canet.parsing import DuplicateKeyError, parse_json, parse_yaml

    try:
        # YAML 1.1 scalars: an id written 12e45 stays the string "12e45", and ids are read as
        # their text (010 is "010", not 8)
        if path.suffix.lower() == ".json":
            return parse_json(text)
        return parse_yaml(text, exponent_floats=False, as_written=("id", "case_id"))
    except DuplicateKeyError as exc:  # a second "training" list would drop the first one's cases
        raise DataError(f"{path}: {exc}") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot parse datalist ({_reason(exc)})") from None


#: What a datalist's top level may hold: canet's keys, then the descriptive keys of the
#: Medical Segmentation Decathlon's and nnU-Net's ``dataset.json`` (read past, not used).
DATALIST_KEYS: tuple[str, ...] = (
    "training", "unlabeled", "validation", "test", "num_classes", "normalize", "postprocess",
)
DESCRIPTIVE_KEYS: frozenset[str] = frozenset({
    "name", "description", "reference", "licence", "license", "release", "tensorImageSize", "modality",
    "labels", "numTraining", "numTest", "channel_names", "file_ending", "overwrite_image_reader_writer",
})
#: What a datalist entry uses; other keys (a subject's age, a note) are read past, unless
#: they look like a misspelling of one of these.
ENTRY_KEYS: tuple[str, ...] = ("image", "label", "id", "case_id")


def _misspelt(key: str, known: Sequence[str]) -> str | None:
    """The known key that ``key`` looks like a misspelling of (``unlabelled`` -> ``unlabeled``), or None."""
    import difflib

    close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.8)
    return close[0] if close else None


def _check_datalist_keys(data: dict[Any, Any], path: Path) -> None:
    """Refuse a top-level key canet does not know: a misspelt ``unlabeled`` would drop every unlabeled case."""
    for key in data:
        name = str(key)
        if name in DATALIST_KEYS or name in DESCRIPTIVE_KEYS:
            continue
        near = _misspelt(name, DATALIST_KEYS)
        hint = f"did you mean {near!r}? " if near else ""
        raise DataError(f"{path}: unknown datalist key {name!r} ({hint}known: {', '.join(DATALIST_KEYS)})")


def _entry_paths(
    entry: Any, where: str, path: Path, need_label: bool
) -> tuple[str, str | None, str | None]:
    """(image, label, explicit id) of one datalist entry."""
    if isinstance(entry, str):
        entry = {"image": entry}
    if not isinstance(entry, dict):
        raise DataError(f"{path}: {where} must be a path or a mapping with 'image', got {entry!r}")
    for key in entry:
        near = _misspelt(str(key), ENTRY_KEYS) if key not in ENTRY_KEYS else None
        if near is not None:
            raise DataError(f"{path}: {where} has a key {str(key)!r}: did you mean {near!r}?")
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        raise DataError(f"{path}: {where} has no 'image' path")
    label = entry.get("label")
    if label is not None and (not isinstance(label, str) or not label):
        raise DataError(f"{path}: {where} has a 'label' that is not a path: {label!r}")
    if need_label and label is None:
        raise DataError(f"{path}: {where} has no 'label' path (labeled cases need one)")
    cid = entry.get("id", entry.get("case_id"))
    if cid is not None and (isinstance(cid, bool) or not isinstance(cid, (str, int))):
        # a JSON 1.10 is the float 1.1, true is no name: what was written is lost
        raise DataError(f"{path}: {where} has the id {cid!r}, which is not text; write it as a string "
                        f"(in quotes)")
    return image, label, (str(cid) if cid is not None else None)


def _open_datalist(path: Path, labeled: int | None) -> DatasetSpec:
    data = _load_datalist_file(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: a datalist must be a mapping with a 'training' list")
    _check_datalist_keys(data, path)
    if "training" not in data:
        raise DataError(f"{path}: no 'training' list")
    base = path.parent

    def resolve(p: str) -> Path:
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else base / q

    num_classes = data.get("num_classes", 2)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DataError(f"{path}: num_classes must be an integer >= 2, got {num_classes!r}")
    if num_classes > 256:
        raise DataError(f"{path}: num_classes must be at most 256 (labels are read as values 0..255), got {num_classes}")
    normalize = data.get("normalize", True)
    if not isinstance(normalize, bool):
        raise DataError(f"{path}: normalize must be true or false, got {normalize!r}")
    post = data.get("postprocess") or {}
    if not isinstance(post, dict):
        raise DataError(f"{path}: postprocess must be a mapping such as {{lcc: true}}, got {post!r}")
    unknown = sorted(str(k) for k in post if k != "lcc")
    if unknown:
        raise DataError(f"{path}: unknown postprocess key {unknown[0]!r} (known: lcc)")
    lcc = post.get("lcc", False)
    if not isinstance(lcc, bool):
        raise DataError(f"{path}: postprocess.lcc must be true or false, got {lcc!r}")

    raw: dict[str, list[tuple[str, Path, Path | None]]] = {}
    for key, need_label in (("training", True), ("unlabeled", False), ("validation", False), ("test", False)):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise DataError(f"{path}: '{key}' must be a list, got {type(items).__name__}")
        rows = []
        for i, entry in enumerate(items):
            image, label, cid = _entry_paths(entry, f"{key}[{i}]", path, need_label)
            if key == "unlabeled":
                label = None  # an unlabeled case's label is never used
            rows.append((cid or "", resolve(image), resolve(label) if label else None))
        raw[key] = rows

    # Ids: explicit ones, else the image name without extension; clashes fall
    # back to the path relative to the datalist folder.
    stems = [strip_suffix(r[1].name) for rows in raw.values() for r in rows if not r[0]]

    def case_id(row: tuple[str, Path, Path | None]) -> str:
        if row[0]:
            return row[0]
        stem = strip_suffix(row[1].name)
        if stems.count(stem) == 1:
            return stem
        try:  # an absolute entry inside the datalist's folder gets the same id as a relative one
            rel = Path(os.path.abspath(row[1])).relative_to(os.path.abspath(base))
        except ValueError:
            rel = row[1]
        return strip_suffix(rel.as_posix()).replace("/", PATH_ID_JOIN)

    cases = {
        key: [Case(case_id(r), r[1], r[2], normalize=normalize) for r in rows]
        for key, rows in raw.items()
    }
    n = _check_labeled(labeled, len(cases["training"]), path)
    return DatasetSpec(
        root=base, labeled=cases["training"][:n],
        unlabeled=[*cases["training"][n:], *cases["unlabeled"]],
        validation=cases["validation"], test=cases["test"], num_classes=num_classes,
        normalize=normalize, kind="datalist", datalist=path, lcc=lcc,
        num_classes_stated="num_classes" in data,
    )


def open_dataset(root_or_datalist: str | os.PathLike[str], labeled: int | None = None) -> DatasetSpec:
    """Find the cases of a dataset (nothing is decoded).

    Args:
        root_or_datalist: an LA folder (holding ``train.list``) or a datalist
            file (``.json``, ``.yaml``, ``.yml``); see the module docstring.
        labeled: how many training cases are labeled: the first ``labeled``
            ids of ``train.list`` (or entries of ``training``); the others join
            the unlabeled split. ``None`` (default): all of them.

    Returns:
        The :class:`DatasetSpec`.

    Raises:
        DataError: a missing path, a folder without ``train.list``, an
            unparseable datalist or entry, ``labeled`` < 1 or more than the
            training cases.
    """
    path = Path(os.path.expanduser(os.fspath(root_or_datalist)))
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        return _open_la(path, labeled)
    if path.name.lower().endswith(DATALIST_SUFFIXES):
        return _open_datalist(path, labeled)
    raise DataError(
        f"{path}: expected an LA folder or a datalist ({', '.join(DATALIST_SUFFIXES)})"
    )


def write_list(path: str | os.PathLike[str], ids: Sequence[str]) -> Path:
    """Write case ids one a line (a ``train.list`` / ``test.list``), atomically."""
    from canet.io import atomic_write_text

    target = Path(path)
    atomic_write_text(target, "".join(f"{i}\n" for i in ids))
    return target


def write_case_h5(path: str | os.PathLike[str], image: np.ndarray, label: np.ndarray) -> Path:
    """Write an ``mri_norm2.h5``-style file (gzip ``image`` float32, ``label`` uint8), atomically."""
    import h5py

    target = Path(path)
    with atomic_path(target, suffix=".h5") as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("image", data=np.asarray(image, dtype=np.float32), compression="gzip",
                          compression_opts=1)
        fh.create_dataset("label", data=np.asarray(label, dtype=np.uint8), compression="gzip",
                          compression_opts=1)
    return target
