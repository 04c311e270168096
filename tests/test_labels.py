"""The label-value rule (canet.labels) and the three places that apply it.

Training (the loader), ``check-data`` and scoring must accept and refuse the
same masks: a mask that check-data passes but the loader refuses wastes a
run; one that scoring accepts but training refuses means the two read the
same file differently. The table gives, for each mask, the decision worked
out from the rule by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from canet.data import check_dataset, open_dataset
from canet.data.loader import PatchSource
from canet.errors import DataError
from canet.labels import (
    check_label_values,
    label_value_problem,
    label_values,
    mixed_object_values,
    refuse_mixed_object_values,
)
from canet.metrics import MetricAccumulator


def test_label_values_of_each_dtype() -> None:
    assert label_values(np.array([[0, 0], [0, 0]], np.uint8)) == []
    assert label_values(np.array([0, 255, 255, 3], np.uint8)) == [3, 255]
    assert label_values(np.array([0, -1, 2, 2], np.int16)) == [-1, 2]
    assert label_values(np.array([True, False])) == [1]
    assert label_values(np.array([0.0, 2.0, 1.0], np.float32)) == [1, 2]
    assert label_values(np.array([0.0, 2.0, 2.5, -0.5], np.float64)) == [-0.5, 2, 2.5]  # not cut to whole numbers


@pytest.mark.parametrize(
    ("values", "num_classes", "expected"),
    [
        ([], 2, None),  # all background
        ([1], 2, None),
        ([255], 2, None),  # 0/255 mask
        ([7], 2, None),  # any single object value
        ([1, 2], 2, "holds values {1, 2}, but the task is binary"),
        ([1, 2], 3, None),
        ([2], 3, None),  # class 1 absent: still fine
        ([1, 3], 3, "holds values {3} outside the 3 classes (0..2)"),
        ([3, 4, 5], 3, "holds values {3, 4, 5} outside the 3 classes (0..2)"),
        ([-1], 2, "holds negative values {-1}"),
        ([-2, 1], 3, "holds negative values {-2}"),
        ([1, 2.4], 3, "holds values {2.4} that are not whole numbers"),
        ([-0.5], 2, "holds values {-0.5} that are not whole numbers"),
    ],
)
def test_label_value_problem(values: list[int], num_classes: int, expected: str | None) -> None:
    problem = label_value_problem(values, num_classes)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem
        with pytest.raises(DataError, match="^" + re.escape(f"mask.nii.gz {expected}")):
            check_label_values(values, num_classes, "mask.nii.gz")


def test_many_values_are_shortened() -> None:
    problem = label_value_problem(list(range(1, 20)), 2)
    assert problem is not None and problem.startswith("holds values {1, 2, 3, 4, 5, 6, ...}, but")


# mask object values -> number of classes -> does the rule accept it (worked out by hand)
CASES: list[tuple[list[int], int, bool]] = [
    ([1], 2, True),
    ([255], 2, True),
    ([1, 255], 2, False),
    ([1, 2], 2, False),
    ([1, 2], 3, True),
    ([1, 3], 3, False),
]


def _write_case(folder: Path, values: list[int], num_classes: int) -> Path:
    image = np.random.default_rng(0).normal(size=(12, 12, 8)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    for i, v in enumerate(values):
        label[2 + 3 * i : 4 + 3 * i, 3:6, 2:5] = v
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(folder / "a.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(folder / "a_seg.nii.gz"))
    datalist = {"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz", "id": "a"}], "num_classes": num_classes}
    path = folder / "dataset.json"
    path.write_text(json.dumps(datalist))
    return path


@pytest.mark.parametrize(("values", "num_classes", "accepted"), CASES)
def test_check_data_loader_and_scoring_agree(tmp_path: Path, values: list[int], num_classes: int,
                                            accepted: bool) -> None:
    datalist = _write_case(tmp_path, values, num_classes)
    label = np.asarray(nib.load(str(tmp_path / "a_seg.nii.gz")).dataobj)

    label_problems = [p for p in check_dataset(datalist).problems if "a_seg.nii.gz: label holds" in p]
    check_data_accepts = not label_problems

    source = PatchSource(open_dataset(datalist).labeled, 1, (8, 8, 8), seed=0, num_classes=num_classes)
    try:
        source.volume(0)
        loader_accepts = True
    except DataError as exc:
        assert str(exc).startswith(f"{tmp_path / 'a_seg.nii.gz'}: label holds values")
        loader_accepts = False

    try:
        MetricAccumulator(num_classes=num_classes).add("a", label, label)
        scoring_accepts = True
    except DataError as exc:
        assert str(exc).startswith("case 'a': ")
        scoring_accepts = False

    assert (check_data_accepts, loader_accepts, scoring_accepts) == (accepted, accepted, accepted)
    if not accepted:  # the same words everywhere
        assert label_problems == [f"{tmp_path / 'a_seg.nii.gz'}: label {label_value_problem(values, num_classes)}"]


def test_check_data_refuses_a_single_object_value_above_a_byte(tmp_path: Path) -> None:
    datalist = _write_case(tmp_path, [], 2)
    label = np.zeros((12, 12, 8), np.int16)
    label[2:5, 2:5, 2:5] = 300
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "a_seg.nii.gz"))
    assert check_dataset(datalist).problems == [
        f"{tmp_path / 'a_seg.nii.gz'}: label holds value 300, above 255 (labels are stored as bytes)"
    ]


def test_scoring_refuses_a_float_mask_that_is_not_whole_numbers() -> None:
    # 2.4 used to be read as class 2 (cut), and -0.5 as one object value of a binary mask
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[2:6, 2:6, 2:6] = 1
    gt[6:9, 6:9, 6:9] = 2
    pred = gt.astype(np.float32)
    pred[pred == 2] = 2.4
    with pytest.raises(DataError, match=r"^case 'a': prediction holds values \{2.4\} that are not whole numbers"):
        MetricAccumulator(num_classes=3).add("a", pred, gt)
    with pytest.raises(DataError, match=r"^case 'b': prediction holds values \{-0.5\} that are not whole numbers"):
        MetricAccumulator(num_classes=2).add("b", (gt == 1) * -0.5, gt == 1)


def test_mixed_object_values_asks_only_beyond_the_binary_conventions() -> None:
    assert mixed_object_values({}) is None and mixed_object_values({2: "a"}) is None
    assert mixed_object_values({1: "a", 255: "b"}) is None  # 0/1 beside 0/255: two tools' binary masks
    assert mixed_object_values({255: "b", 2: "c", 1: "a"}) == ((1, "a"), (2, "c"))  # the two smallest values
    assert mixed_object_values({2: "a", 3: "b"}) == ((2, "a"), (3, "b"))


def test_refuse_mixed_object_values_says_the_two_values_and_where() -> None:
    refuse_mixed_object_values({1: "case 'a'", 255: "case 'b'"}, "the masks", "never said")  # fine: no raise
    with pytest.raises(DataError) as err:
        refuse_mixed_object_values({2: "case 'b'", 1: "case 'a'"}, "the masks", "state num_classes", "the atrium")
    assert str(err.value) == "the masks mark the atrium with different values (1 in case 'a', 2 in case 'b'): " \
                             "state num_classes"
