"""LA-lite's helpers: downsampling a case and the paired per-case differences."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _la_lite():
    spec = importlib.util.spec_from_file_location("la_lite", REPO / "benchmarks" / "la_lite.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _write_metrics(run: Path, dice: dict[str, float]) -> None:
    (run / "eval").mkdir(parents=True)
    lines = ["case,dice,jaccard,hd95,asd,seconds"] + [f"{c},{d},0,0,0,0" for c, d in dice.items()]
    (run / "eval" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_paired_lines_are_per_case_differences(tmp_path: Path) -> None:
    la_lite = _la_lite()
    _write_metrics(tmp_path / "a", {"c1": 0.80, "c2": 0.70, "c3": 0.90})
    _write_metrics(tmp_path / "b", {"c1": 0.85, "c2": 0.60, "c3": 0.93})
    (line,) = la_lite.paired_lines(["a", "b"], tmp_path)
    diffs = np.array([5.0, -10.0, 3.0])
    assert line == (
        f"b - a: {diffs.mean():+.2f} Dice points (sd {diffs.std(ddof=1):.2f}), b better on 2 of 3 cases"
    )


def test_downsample_case_halves_each_axis_and_keeps_binary_labels(tmp_path: Path) -> None:
    la_lite = _la_lite()
    label = np.zeros((20, 18, 10), np.uint8)
    label[4:14, 6:12, 2:8] = 1
    image = label * 3.0 + np.linspace(0, 1, label.size).reshape(label.shape)
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("image", data=image.astype(np.float32))
        f.create_dataset("label", data=label)
    shape = la_lite.downsample_case(src, tmp_path / "dst.h5")
    assert tuple(shape) == (10, 9, 5)
    with h5py.File(tmp_path / "dst.h5", "r") as f:
        small_label = f["label"][:]
        small_image = f["image"][:]
    assert small_label.shape == small_image.shape == (10, 9, 5)
    assert set(np.unique(small_label)) == {0, 1}
    assert small_label.sum() == pytest.approx(label.sum() / 8, rel=0.2)
