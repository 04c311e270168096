"""benchmarks/metrics_speed.py: what it measures is the same pair for both libraries (nothing is timed here)."""

from __future__ import annotations

import json
from pathlib import Path

import metrics_speed  # benchmarks/ is on sys.path (conftest.py)
import numpy as np


def test_shift_moves_the_mask_by_hand() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = mask[3, 3, 3] = mask[1, 2, 0] = True
    moved = metrics_speed.shifted(mask, 1)
    # (0,0,0) -> (1,1,1); (1,2,0) -> (2,3,1); (3,3,3) leaves the volume
    assert sorted(map(tuple, np.argwhere(moved).tolist())) == [(1, 1, 1), (2, 3, 1)]
    assert np.array_equal(metrics_speed.shifted(mask, 0), mask)


def test_one_real_case_agrees_with_medpy(la_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    assert metrics_speed.main(["--data", str(la_root), "--cases", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["cases"] == 1 and record["shift"] == 2
    row = record["per_case"][0]
    assert row["hd95"] > 0 and row["asd"] > 0  # a real surface distance was measured
    assert record["max_abs_difference"] < 1e-6
    assert record["ratio_of_means"] == row["medpy_s"] / row["canet_s"]
