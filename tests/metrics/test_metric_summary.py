"""MetricAccumulator, per-class metrics and summaries (NaNs counted, never turned into 0)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from canet.errors import CanetError
from canet.metrics import MetricAccumulator, binary_metrics, multiclass_metrics, stats, summarize


def _cube(shape, lo, hi) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
    return m


def test_stats_skip_nan_and_count_it() -> None:
    s = stats([1.0, float("nan"), 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "n": 2, "nan": 1}
    assert stats([float("nan")]) == {"mean": None, "std": None, "n": 0, "nan": 1}


def test_accumulator_rows_summary_and_files(tmp_path) -> None:
    shape = (16, 16, 12)
    gt = _cube(shape, (3, 3, 3), (10, 10, 9))
    acc = MetricAccumulator(spacing=(1.0, 1.0, 2.0))
    preds = {
        "a": _cube(shape, (4, 3, 3), (11, 10, 9)),
        "b": _cube(shape, (3, 2, 3), (9, 10, 8)),
        "empty": np.zeros(shape, np.uint8),
    }
    for i, (case, pred) in enumerate(preds.items()):
        row = acc.add(case, pred, gt, seconds=0.5 + i)
        assert set(row) == {"case", "dice", "jaccard", "hd95", "asd", "seconds", "diagonal"}
        assert row["diagonal"] == pytest.approx(math.sqrt(15**2 + 15**2 + (11 * 2.0) ** 2))
    rows = acc.rows
    expected_a = binary_metrics(preds["a"], gt, (1.0, 1.0, 2.0))
    assert rows[0]["hd95"] == expected_a["hd95"] and rows[0]["dice"] == expected_a["dice"]
    assert rows[2]["dice"] == 0.0 and math.isnan(rows[2]["hd95"])

    summary = acc.write_summary(tmp_path / "summary.json", mode="fast")
    dice_values = [r["dice"] for r in rows]
    assert summary["dice"]["mean"] == pytest.approx(np.mean(dice_values))
    assert summary["dice"]["std"] == pytest.approx(np.std(dice_values))
    assert summary["hd95"]["n"] == 2 and summary["hd95"]["nan"] == 1
    assert summary["hd95"]["mean"] == pytest.approx(np.mean([rows[0]["hd95"], rows[1]["hd95"]]))
    assert summary["cases"] == 3 and summary["empty_pred"] == 1 and summary["empty_gt"] == 0
    assert summary["nan_counts"] == {"dice": 0, "jaccard": 0, "hd95": 1, "asd": 1}
    assert summary["spacing"] == "mm" and summary["mode"] == "fast"
    assert summary["seconds"]["total"] == pytest.approx(0.5 + 1.5 + 2.5)
    on_disk = json.loads((tmp_path / "summary.json").read_text())  # strict JSON: no NaN
    assert on_disk["hd95"] == summary["hd95"]

    acc.write_csv(tmp_path / "metrics.csv")
    with open(tmp_path / "metrics.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["case", "dice", "jaccard", "hd95", "asd", "seconds", "diagonal"]
    assert [r[0] for r in table[1:]] == ["a", "b", "empty"]
    assert float(table[1][1]) == rows[0]["dice"]
    assert table[3][3] == "nan"
    assert "hd95" in acc.table() and "empty predictions: 1" in acc.table()

    with pytest.raises(CanetError, match="scored twice"):
        acc.add("a", gt, gt)


def test_voxel_units_and_mixed_units() -> None:
    gt = _cube((10, 10, 10), (2, 2, 2), (7, 7, 7))
    acc = MetricAccumulator()
    acc.add("x", gt, gt)
    assert acc.summary()["spacing"] == "voxels"
    acc.add("y", gt, gt, spacing=(2.0, 2.0, 2.0))
    assert acc.summary()["spacing"] == "mixed"


def test_multiclass_rows_are_per_class() -> None:
    shape = (16, 16, 10)
    gt = np.zeros(shape, np.uint8)
    gt[2:7, 2:7, 2:7] = 1
    gt[9:14, 9:14, 3:8] = 2
    pred = np.roll(gt, 1, axis=1)
    pred[pred == 2] = 0  # class 2 missed completely
    per_class = multiclass_metrics(pred, gt, 3)
    assert per_class[1] == binary_metrics(pred == 1, gt == 1)
    assert per_class[2]["dice"] == 0.0 and math.isnan(per_class[2]["hd95"])

    acc = MetricAccumulator(num_classes=3)
    row = acc.add("c", pred, gt)
    assert acc.columns[:7] == ["case", "dice", "jaccard", "hd95", "asd", "seconds", "diagonal"]
    assert row["diagonal"] == pytest.approx(math.sqrt(15**2 + 15**2 + 9**2))  # voxels
    assert "dice_2" in acc.columns and "asd_1" in acc.columns
    assert row["dice"] == pytest.approx((per_class[1]["dice"] + 0.0) / 2)
    # class 2 missed: no distance for the case (class 1's alone read as a perfect 1-voxel score)
    assert math.isnan(row["hd95"]) and math.isnan(row["asd"]) and per_class[1]["hd95"] == 1.0
    s = acc.summary()
    assert s["per_class"]["2"]["hd95"]["nan"] == 1
    assert s["hd95"] == {"mean": None, "std": None, "n": 0, "nan": 1}
    assert s["empty_pred"] == 1 and s["empty_gt"] == 0
    assert "with a class missed: 1  with a class not in the ground truth: 0" in acc.table()  # no empty mask here


def test_multiclass_distances_and_empty_counts_one_side_at_a_time() -> None:
    """A class missed, a class made up, a class in neither mask: only the first two leave the case without a
    distance, and each is counted on its own side (a class in neither mask counted as both)."""
    shape = (16, 16, 10)
    gt = np.zeros(shape, np.uint8)
    gt[2:7, 2:7, 2:7] = 1
    gt[9:14, 9:14, 3:8] = 2
    acc = MetricAccumulator(num_classes=4)  # class 3 in neither mask of case "same"
    same = acc.add("same", gt, gt)
    assert same["hd95"] == 0.0 and same["dice"] == 1.0 and math.isnan(same["dice_3"])
    made_up = gt.copy()
    made_up[0:2, 0:2, 0:2] = 3
    row = acc.add("made_up", made_up, gt)
    assert math.isnan(row["hd95"]) and math.isnan(row["asd"]) and row["dice_3"] == 0.0
    assert row["dice"] == pytest.approx(2 / 3)  # classes 1 and 2 perfect, 3 zero
    s = acc.summary()
    assert (s["empty_pred"], s["empty_gt"]) == (0, 1)
    assert s["absent_classes"] == {"1": 0, "2": 0, "3": 1}
    assert s["hd95"]["n"] == 1 and s["hd95"]["nan"] == 1


def test_summarize_plain_rows() -> None:
    rows = [{"dice": 0.5, "jaccard": 0.3, "hd95": 2.0, "asd": 1.0}, {"dice": 0.7, "jaccard": 0.5, "hd95": float("nan"), "asd": float("nan")}]
    s = summarize(rows)
    assert s["cases"] == 2 and s["dice"]["mean"] == pytest.approx(0.6) and s["asd"]["n"] == 1


def test_bad_num_classes() -> None:
    with pytest.raises(CanetError, match="at least 2, got 1"):
        MetricAccumulator(num_classes=1)


def test_binary_scoring_takes_any_single_object_value() -> None:
    """A 0/255 mask (the LA challenge's own) is binary: 255 is the object, not class 255."""
    gt = _cube((12, 12, 12), (2, 2, 2), (8, 8, 8))
    pred = _cube((12, 12, 12), (3, 2, 2), (9, 8, 8))
    acc = MetricAccumulator(num_classes=2)
    row = acc.add("a", pred, gt * 255)
    assert row["dice"] == pytest.approx(2 * 5 * 6 * 6 / (2 * 216))
    missed = acc.add("missed", np.zeros_like(gt), gt * 255)
    assert missed["dice"] == 0.0 and missed["jaccard"] == 0.0


def test_binary_scoring_refuses_a_multiclass_mask() -> None:
    gt = _cube((10, 10, 10), (2, 2, 2), (5, 5, 5))
    gt[6:9, 6:9, 6:9] = 2
    acc = MetricAccumulator(num_classes=2)
    with pytest.raises(CanetError, match=r"case 'x': ground truth holds values \{1, 2\}, but the task is binary"):
        acc.add("x", gt > 0, gt)
    with pytest.raises(CanetError, match=r"case 'y': prediction holds values \{1, 2\}"):
        acc.add("y", gt, gt > 0)
    assert acc.rows == []


def test_multiclass_label_beyond_the_classes_is_refused() -> None:
    gt = _cube((10, 10, 10), (2, 2, 2), (5, 5, 5)) * 3
    with pytest.raises(CanetError, match=r"case 'x': ground truth holds values \{3\} outside the 3 classes \(0..2\)"):
        MetricAccumulator(num_classes=3).add("x", gt, gt)


def test_class_absent_from_both_masks_is_nan_and_counted() -> None:
    """Class 2 is in neither mask of case "only1": NaN there, left out of the means, counted."""
    shape = (16, 16, 10)
    gt = np.zeros(shape, np.uint8)
    gt[2:7, 2:7, 2:7] = 1
    gt[9:14, 9:14, 3:8] = 2
    pred = gt.copy()
    pred[2:7, 2:7, 2] = 0  # class 1: 100 of 125 voxels found
    only1_gt = np.where(gt == 2, 0, gt).astype(np.uint8)
    only1_pred = np.where(pred == 2, 0, pred).astype(np.uint8)
    acc = MetricAccumulator(num_classes=3)
    full = acc.add("full", pred, gt)
    only1 = acc.add("only1", only1_pred, only1_gt)
    dice1 = 2 * 100 / (100 + 125)
    assert full["dice_1"] == pytest.approx(dice1) and full["dice_2"] == 1.0
    assert full["dice"] == pytest.approx((dice1 + 1.0) / 2)
    for m in ("dice", "jaccard", "hd95", "asd"):
        assert math.isnan(only1[f"{m}_2"]), m
    assert only1["dice"] == pytest.approx(dice1)  # the mean over the classes present: class 1 only
    s = acc.summary()
    assert s["per_class"]["2"]["dice"] == {"mean": 1.0, "std": 0.0, "n": 1, "nan": 1}
    assert s["absent_classes"] == {"1": 0, "2": 1}
    assert s["dice"]["mean"] == pytest.approx(((dice1 + 1.0) / 2 + dice1) / 2)


def test_binary_case_with_both_masks_empty_is_nan_not_perfect() -> None:
    gt = _cube((10, 10, 10), (2, 2, 2), (6, 6, 6))
    acc = MetricAccumulator()
    acc.add("hit", gt, gt)
    row = acc.add("nothing", np.zeros_like(gt), np.zeros_like(gt))
    assert math.isnan(row["dice"]) and math.isnan(row["jaccard"])
    s = acc.summary()
    assert s["dice"] == {"mean": 1.0, "std": 0.0, "n": 1, "nan": 1}
    assert s["absent_classes"] == {"1": 1}


def test_a_case_name_that_is_not_utf8_is_written(tmp_path) -> None:
    # os.listdir keeps the bytes of such a file name as surrogates (b"x\xffy" -> "x\udcffy")
    name = b"x\xffy".decode("utf-8", "surrogateescape")
    gt = _cube((10, 10, 10), (2, 2, 2), (5, 5, 5))
    acc = MetricAccumulator(num_classes=2)
    acc.add(name, gt, gt)
    acc.write_csv(tmp_path / "metrics.csv")
    acc.write_summary(tmp_path / "summary.json")
    assert (tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()[1].startswith("x\\udcffy,1")
