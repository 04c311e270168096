"""check_dataset / `canet check-data`: every problem of the issue, listed with its file, on broken copies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from canet.cli.main import main
from canet.data import LA_CASES_DIR, LA_FILE_NAME, check_dataset, ensure_clean
from canet.errors import DataError


def _h5(root: Path, index: int = 1) -> Path:
    case_id = (root / "train.list").read_text().split()[index]
    return root / LA_CASES_DIR / case_id / LA_FILE_NAME


def _rewrite(path: Path, image: np.ndarray | None = None, label: np.ndarray | None = None) -> None:
    with h5py.File(path, "r+") as fh:
        for key, value in (("image", image), ("label", label)):
            if value is not None:
                del fh[key]
                fh.create_dataset(key, data=value)


def _edit(path: Path, key: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    with h5py.File(path, "r") as fh:
        arr = fh[key][()]
    _rewrite(path, **{key: fn(arr)})


def _set(arr: np.ndarray, value: float) -> np.ndarray:
    arr = arr.copy()
    arr[3, 4, 5] = value
    return arr


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _delete_dataset(path: Path, key: str) -> None:
    with h5py.File(path, "r+") as fh:
        del fh[key]


BREAKS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing file": (lambda p: p.unlink(), "file not found"),
    "truncated file": (_truncate, "cannot read HDF5 file"),
    "not an h5 file": (lambda p: p.write_bytes(b"\x00garbage" * 64), "cannot read HDF5 file"),
    "missing image": (lambda p: _delete_dataset(p, "image"), "no 'image' dataset"),
    "missing label": (lambda p: _delete_dataset(p, "label"), "no 'label' dataset"),
    "shape mismatch": (lambda p: _edit(p, "label", lambda a: a[:, :, :-1]), "label shape .* differs from image shape"),
    "label outside classes": (lambda p: _edit(p, "label", lambda a: _set(a, 3)), r"label holds values \{1, 3\}, but the task is binary"),
    "negative label": (lambda p: _edit(p, "label", lambda a: _set(a.astype(np.int16), -1)), r"label holds negative values \{-1\}"),
    "fractional label": (lambda p: _edit(p, "label", lambda a: _set(a.astype(np.float32), 0.5)), "label values must be whole numbers, got 0.5"),
    "all nan": (lambda p: _edit(p, "image", lambda a: np.full_like(a, np.nan)), "every voxel of the image is NaN or infinite"),
    "constant image": (lambda p: _edit(p, "image", np.zeros_like), r"image is empty \(every voxel is 0\)"),
    "zero-size image": (lambda p: _rewrite(p, np.zeros((0, 40, 24), np.float32), np.zeros((0, 40, 24), np.uint8)), "image is empty"),
    "2D image": (lambda p: _edit(p, "image", lambda a: a[:, :, 0]), "image is 2D"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_problem_is_listed_with_its_file(synth_copy: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = _h5(synth_copy)
    damage, pattern = BREAKS[name]
    damage(target)
    report = check_dataset(synth_copy)
    assert not report.ok
    expected = 2 if name == "zero-size image" else 1  # its label is empty as well
    assert len(report.problems) == expected, report.problems
    assert all(p.startswith(f"{target}: ") for p in report.problems)
    assert re.search(pattern, report.problems[0]), report.problems[0]
    assert report.summary["cases"] == {"labeled": 8, "unlabeled": 0, "validation": 0, "test": 2}
    with pytest.raises(DataError, match=f"the dataset has {expected} problem"):
        ensure_clean(report)

    assert main(["check-data", str(synth_copy), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert f"problem: {target}: " in out and f"FAILED: {expected} problem(s)" in out
    assert "Traceback" not in out + err


def test_clean_dataset_summary_and_exit_code(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = check_dataset(synth_root, labeled=3)
    assert report.ok and report.problems == [] and report.warnings == []
    ensure_clean(report)  # no exception
    s = report.summary
    assert s["kind"] == "la" and s["num_classes"] == 2
    assert s["cases"] == {"labeled": 3, "unlabeled": 5, "validation": 0, "test": 2}
    assert s["shape_min"] == s["shape_max"] == [40, 40, 24]
    assert s["spacing_min"] == [1.0, 1.0, 1.0] and s["spacing_unit"] == "voxels"
    assert s["files_read"] == 10
    assert s["foreground_fraction"]["cases"] == 5  # 3 labeled + 2 test labels read
    assert 0.01 < s["foreground_fraction"]["min"] <= s["foreground_fraction"]["max"] < 0.3
    assert abs(s["intensity"]["mean"]) < 1e-3 and abs(s["intensity"]["std"] - 1) < 1e-3  # z-scored

    js = tmp_path / "report.json"
    assert main(["check-data", str(synth_root), "--labeled", "3", "--no-progress", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "cases: 3 labeled, 5 unlabeled, 0 validation, 2 test" in out and "OK: no problems found" in out
    payload = json.loads(js.read_text())
    assert payload["ok"] is True and payload["summary"]["cases"]["labeled"] == 3


def test_check_data_json_never_replaces_the_datalist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}]}))
    before = path.read_text()
    assert main(["check-data", str(path), "--no-progress", "--json", str(path)]) == 2
    assert capsys.readouterr().err == f"error: --json {path} is the datalist being checked; name another file for the report\n"
    assert path.read_text() == before


def test_unlabeled_labels_are_not_required(synth_copy: Path) -> None:
    ids = (synth_copy / "train.list").read_text().split()
    _delete_dataset(_h5(synth_copy, 6), "label")  # case 6 is unlabeled with labeled=4
    assert check_dataset(synth_copy, labeled=4).ok
    report = check_dataset(synth_copy)  # all labeled: now it is a problem
    assert report.problems == [f"{_h5(synth_copy, 6)}: no 'label' dataset (the file holds: image)"]
    assert ids[6] in report.problems[0]


def test_structural_problems(synth_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = (synth_copy / "train.list").read_text().split()
    (synth_copy / "train.list").write_text("\n".join([*ids, ids[2]]) + "\n")
    report = check_dataset(synth_copy)
    assert report.problems == [f"{_h5(synth_copy, 2)}: case {ids[2]!r} is listed twice in train"]

    test_ids = (synth_copy / "test.list").read_text().split()
    (synth_copy / "train.list").write_text("\n".join([*ids, test_ids[0]]) + "\n")
    report = check_dataset(synth_copy)
    assert report.ok and any("in both training and test" in w for w in report.warnings)

    # a validation case that is also trained on (or tested on): a checkpoint chosen on it is chosen on seen data
    (synth_copy / "train.list").write_text("\n".join(ids) + "\n")
    (synth_copy / "val.list").write_text(f"{ids[1]}\n{test_ids[1]}\n")
    leaks = [w for w in check_dataset(synth_copy).warnings if "and validation" in w]
    assert leaks == [f"{_h5(synth_copy, 1)}: case {ids[1]!r} is in both training and validation",
                     f"{synth_copy / '2018LA_Seg_Training Set' / test_ids[1] / 'mri_norm2.h5'}: case "
                     f"{test_ids[1]!r} is in both test and validation"]
    (synth_copy / "val.list").unlink()
    (synth_copy / "train.list").write_text("\n".join([*ids, test_ids[0]]) + "\n")

    assert check_dataset(synth_copy, labeled=50).problems == [
        f"labeled=50 exceeds the 9 training cases of {synth_copy / 'train.list'}"
    ]
    (synth_copy / "train.list").unlink()
    assert check_dataset(synth_copy).problems == [f"{synth_copy}: not an LA dataset folder (no train.list)"]
    missing = tmp_path / "absent"
    assert main(["check-data", str(missing), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert f"problem: dataset not found: {missing}" in out and "Traceback" not in out + err


def test_empty_label_is_a_warning(synth_copy: Path) -> None:
    _edit(_h5(synth_copy, 0), "label", np.zeros_like)
    report = check_dataset(synth_copy)
    assert report.ok and report.warnings == [f"{_h5(synth_copy, 0)}: label has no foreground"]


def test_datalist_problems(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(12, 12, 8)).astype(np.float32)
    lab = (img > 1).astype(np.uint8)
    grid = np.diag([0.8, 0.8, 2.0, 1.0])  # the labels of image a lie on its grid
    nib.save(nib.Nifti1Image(img, grid), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(lab, grid), str(tmp_path / "a_seg.nii.gz"))
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / "b.nii.gz"))
    (tmp_path / "c.nii.gz").write_bytes(b"\x1f\x8b\x08not really gzip")
    nib.save(nib.Nifti1Image(lab * 4, grid), str(tmp_path / "d_seg.nii.gz"))
    two = lab.copy()
    two[0, 0, 0] = 4
    two[1, 1, 1] = 2
    nib.save(nib.Nifti1Image(two, grid), str(tmp_path / "e_seg.nii.gz"))
    datalist = {
        "training": [
            {"image": "a.nii.gz", "label": "a_seg.nii.gz"},
            {"image": "b.nii.gz", "label": "b_seg.nii.gz"},  # label file absent
            {"image": "a.nii.gz", "label": "d_seg.nii.gz", "id": "d"},  # 0 and 4: binary, object = 4
            {"image": "a.nii.gz", "label": "e_seg.nii.gz", "id": "e"},  # 0, 1, 2 and 4: not binary
        ],
        "unlabeled": [{"image": "c.nii.gz"}],  # unreadable image
    }
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(datalist))
    report = check_dataset(path)
    assert report.problems[0] == f"{tmp_path / 'b_seg.nii.gz'}: file not found"
    assert report.problems[1] == (
        f"{tmp_path / 'e_seg.nii.gz'}: label holds values {{1, 2, 4}}, but the task is binary (num_classes 2: "
        "one non-zero value, such as 1 or 255, marks the object); give the number of classes it has"
    )
    assert report.problems[2].startswith(f"{tmp_path / 'c.nii.gz'}: cannot read NIfTI file (")
    # case a's object is 1, case d's 4, and the datalist leaves num_classes at 2: which is meant?
    assert report.problems[3].startswith(f"{path}: the labels mark their object with different values (1 in case "
                                         "'a', 4 in case 'd')")
    assert len(report.problems) == 4
    assert report.summary["spacing_unit"] == "mm" and report.summary["spacing_max"] == [1.0, 1.0, 2.0]
    datalist["num_classes"] = 5
    path.write_text(json.dumps(datalist))
    assert len(check_dataset(path).problems) == 2  # 2 and 4 are classes now

    datalist["training"][0].pop("label")
    path.write_text(json.dumps(datalist))
    assert check_dataset(path).problems == [f"{path}: training[0] has no 'label' path (labeled cases need one)"]


def test_real_la_copy_is_clean(la_small: Path) -> None:
    report = check_dataset(la_small, labeled=2)
    assert report.ok, report.problems
    assert report.summary["cases"] == {"labeled": 2, "unlabeled": 1, "validation": 0, "test": 1}
    assert report.summary["shape_min"][2] == report.summary["shape_max"][2] == 88
    assert 0.02 < report.summary["foreground_fraction"]["mean"] < 0.3


def test_binary_labels_with_one_object_value_are_clean(tmp_path: Path) -> None:
    """A 0/255 mask (as the LA challenge stores the atrium) is a binary label, not 256 classes."""
    img = np.random.default_rng(1).normal(size=(12, 12, 8)).astype(np.float32)
    lab = np.zeros((12, 12, 8), np.uint8)
    lab[3:8, 3:8, 2:6] = 255
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(tmp_path / "a_seg.nii.gz"))
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}]}))
    report = check_dataset(path)
    assert report.ok, report.problems
    assert report.summary["foreground_fraction"]["mean"] == pytest.approx(5 * 5 * 4 / (12 * 12 * 8))


def test_training_images_in_several_orientations_are_a_warning(tmp_path: Path) -> None:
    img = np.random.default_rng(2).normal(size=(12, 12, 8)).astype(np.float32)
    lab = (img > 1).astype(np.uint8)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    for name, affine in (("a", np.eye(4)), ("b", np.eye(4)), ("c", flipped)):
        nib.save(nib.Nifti1Image(img, affine), str(tmp_path / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, affine), str(tmp_path / f"{name}_seg.nii.gz"))
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": [{"image": f"{n}.nii.gz", "label": f"{n}_seg.nii.gz"} for n in "abc"]}))
    report = check_dataset(path)
    assert report.ok
    assert report.warnings == [
        f"{path}: training images come in 2 orientations (RAS: 2, LAS: 1); the network sees each "
        "in its stored voxel order, so reorient them to one orientation first"
    ]
    assert report.summary["orientations"] == {"RAS": 2, "LAS": 1}
    assert "orientation of the training images: RAS 2, LAS 1" in report.format()
    assert "shape, smallest .. largest per axis: (12, 12, 8) .. (12, 12, 8)" in report.format()
    assert report.format().startswith(f"dataset: {path} (datalist)\n")


def test_validation_images_in_another_orientation_are_a_warning(tmp_path: Path) -> None:
    # training in RAS, one validation case stored LAS: the validation of a training run reads it in
    # stored voxel order, mirrored with respect to what the network learnt; a test case is reoriented
    # by evaluate, so a LAS test case is fine
    img = np.random.default_rng(3).normal(size=(12, 12, 8)).astype(np.float32)
    lab = (img > 1).astype(np.uint8)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    for name, affine in (("a", np.eye(4)), ("b", np.eye(4)), ("v", flipped), ("w", np.eye(4)), ("t", flipped)):
        nib.save(nib.Nifti1Image(img, affine), str(tmp_path / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, affine), str(tmp_path / f"{name}_seg.nii.gz"))

    def entries(names: str) -> list[dict[str, str]]:
        return [{"image": f"{n}.nii.gz", "label": f"{n}_seg.nii.gz"} for n in names]

    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": entries("ab"), "validation": entries("vw"), "test": entries("t")}))
    report = check_dataset(path)
    assert report.ok
    assert report.warnings == [
        f"{path}: 1 validation image(s) are stored in another orientation (LAS) than the training images (RAS): v; "
        "validation during training sees them in stored voxel order, so reorient them to the training orientation"
    ]
    path.write_text(json.dumps({"training": entries("ab"), "validation": entries("w"), "test": entries("t")}))
    assert check_dataset(path).warnings == []


@pytest.mark.parametrize(("value", "said"), [(np.nan, "1 NaN and 0 inf"), (np.inf, "0 NaN and 1 inf")])
def test_some_nonfinite_voxels_are_a_warning_naming_the_count(synth_copy: Path, value: float, said: str) -> None:
    target = _h5(synth_copy)
    _edit(target, "image", lambda a: _set(a, value))
    report = check_dataset(synth_copy)
    assert report.ok, report.problems
    assert report.warnings == [
        f"{target}: image holds {said} values (set to the scan's smallest finite value when it is read)"
    ]


def test_class_absent_from_the_labeled_training_labels_is_a_warning(tmp_path: Path) -> None:
    img = np.random.default_rng(1).normal(size=(12, 12, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / "a.nii.gz"))

    def label(name: str, values: list[int]) -> str:
        lab = np.zeros(img.shape, np.uint8)
        for i, v in enumerate(values):
            lab[1 + 3 * i : 3 + 3 * i, 2:5, 2:5] = v
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(tmp_path / name))
        return name

    datalist = {
        "num_classes": 4,
        "training": [{"image": "a.nii.gz", "label": label("a_seg.nii.gz", [1, 2]), "id": "a"},
                     {"image": "a.nii.gz", "label": label("b_seg.nii.gz", [2]), "id": "b"}],
        "test": [{"image": "a.nii.gz", "label": label("t_seg.nii.gz", [1, 2, 3]), "id": "t"}],
    }
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(datalist))
    report = check_dataset(path)
    assert report.problems == []
    absent = [w for w in report.warnings if "labeled training labels" in w]
    # class 3 is only in the test label; classes 1 and 2 are in a labeled one
    assert absent == [f"{path}: class(es) 3 of the 4 classes appear in none of the 2 labeled training labels, so "
                      "the network never learns them; check num_classes and which cases are labeled"]
    # labeled=1 keeps case a labeled only: class 3 still absent, 1 and 2 present
    assert [w for w in check_dataset(path, labeled=1).warnings if "class(es) 3 of" in w]

    datalist["training"][1]["label"] = label("b_seg.nii.gz", [3])
    path.write_text(json.dumps(datalist))
    assert not [w for w in check_dataset(path).warnings if "labeled training labels" in w]
    # binary data: no such warning (an empty label has its own)
    datalist["num_classes"] = 2
    datalist["training"] = [{"image": "a.nii.gz", "label": label("c_seg.nii.gz", []), "id": "c"}]
    path.write_text(json.dumps(datalist))
    warnings = check_dataset(path).warnings
    assert not [w for w in warnings if "labeled training labels" in w]
    assert f"{tmp_path / 'c_seg.nii.gz'}: label has no foreground" in warnings


def _binary_set(root: Path, values: dict[str, int]) -> list[dict[str, str]]:
    """One 12 x 12 x 8 image and binary label per case; ``values``: case -> the label's object value."""
    rng = np.random.default_rng(4)
    entries = []
    for name, value in values.items():
        img = rng.normal(size=(12, 12, 8)).astype(np.float32)
        lab = np.zeros(img.shape, np.uint8)
        lab[3:8, 3:8, 2:6] = value
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(root / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / f"{name}_seg.nii.gz"))
        entries.append({"image": f"{name}.nii.gz", "label": f"{name}_seg.nii.gz"})
    return entries


def test_binary_labels_with_different_object_values_are_a_problem(tmp_path: Path) -> None:
    """0/1 masks beside 0/2 masks: one class a case of a label map, which binary training merged silently.

    `canet score` refuses the same set; check-data (and so training) said OK.
    """
    entries = _binary_set(tmp_path, {"a": 1, "b": 2, "c": 1})
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": entries[:2], "test": entries[2:]}))
    report = check_dataset(path)
    assert report.problems == [
        f"{path}: the labels mark their object with different values (1 in case 'a', 2 in case 'b'): one "
        "structure, or the classes of one label map, one class a case? state num_classes in the datalist: 2 to "
        "read any non-zero value as the object, 3 to learn each value as its own class"
    ]
    # a test label is checked too: 0/1 training labels beside a 0/2 test label
    path.write_text(json.dumps({"training": [entries[0], entries[2]], "test": entries[1:2]}))
    assert len(check_dataset(path).problems) == 1
    # the datalist says what it means: binary (every value the object) or three classes
    for num_classes in (2, 3):
        path.write_text(json.dumps({"num_classes": num_classes, "training": entries[:2], "test": entries[2:]}))
        assert check_dataset(path).ok, num_classes
    # 0/2 beside 0/255: 256 classes would be no advice; relabelling is
    entries = _binary_set(tmp_path, {"a": 2, "b": 255})
    path.write_text(json.dumps({"training": entries}))
    assert check_dataset(path).problems[0].endswith(
        "state num_classes in the datalist: 2 to read any non-zero value as the object, or relabel them as classes "
        "1..2 and state 3 to learn each as its own"
    )
    # 0/1 beside 0/255: two binary conventions, no question
    entries = _binary_set(tmp_path, {"a": 1, "b": 255})
    path.write_text(json.dumps({"training": entries}))
    assert check_dataset(path).ok


def test_one_file_listed_under_two_ids_is_a_warning(tmp_path: Path) -> None:
    """Ids differ, files do not: the same scan twice in training, or in training and test."""
    entries = _binary_set(tmp_path, {"a": 1, "b": 1, "c": 1})
    path = tmp_path / "dataset.json"
    twice = {**entries[0], "id": "a_again"}
    absolute = {"image": str(tmp_path / "a.nii.gz"), "label": str(tmp_path / "a_seg.nii.gz"), "id": "t"}
    path.write_text(json.dumps({"training": [*entries[:2], twice], "test": [absolute, entries[2]]}))
    report = check_dataset(path)
    assert report.ok, report.problems
    assert report.warnings == [
        f"{tmp_path / 'a.nii.gz'}: the image of case 'a_again' is also that of case 'a' in train (one scan "
        "listed under two ids)",
        f"{tmp_path / 'a.nii.gz'}: test case 't' is the image of training case 'a'",
    ]
    # a label file pasted into a second entry: two images, one label
    slip = {"image": "b.nii.gz", "label": "c_seg.nii.gz", "id": "b"}
    path.write_text(json.dumps({"training": [entries[0], slip], "test": [entries[2]]}))
    assert check_dataset(path).warnings == [
        f"{tmp_path / 'c_seg.nii.gz'}: the label of case 'c' is also that of case 'b', whose image is another "
        "file (a copy-paste slip?)"
    ]
    # distinct files: no warning
    path.write_text(json.dumps({"training": entries[:2], "test": [entries[2]]}))
    assert check_dataset(path).warnings == []
