"""LA-lite's helpers: downsampling a case and the paired comparison of its evaluations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import la_lite  # benchmarks/ is on sys.path (conftest.py)
import numpy as np
import pytest


def _write_eval(run: Path, dice: dict[str, float], hd95: dict[str, float] | None = None) -> None:
    """An evaluation in canet evaluate's format under ``run/eval``."""
    (run / "eval").mkdir(parents=True)
    hd95 = hd95 or {}
    lines = ["case,dice,jaccard,hd95,asd,seconds"]
    lines += [f"{c},{d!r},{d / (2 - d)!r},{hd95.get(c, 4.0)!r},1.0,nan" for c, d in dice.items()]
    (run / "eval" / "metrics.csv").write_text("\n".join(lines) + "\n")
    summary = {"cases": len(dice), "spacing": "voxels", "mode": "reference"}
    (run / "eval" / "summary.json").write_text(json.dumps(summary))


def test_compare_methods_pairs_cases_by_id_against_the_first_method(tmp_path: Path) -> None:
    _write_eval(tmp_path / "a", {"c1": 0.80, "c2": 0.70, "c3": 0.90})
    _write_eval(tmp_path / "b", {"c3": 0.93, "c1": 0.85, "c2": 0.60}, {"c2": float("nan")})
    comparison = la_lite.compare_methods(["a", "b"], [tmp_path], resamples=200)
    st = comparison.pairs[0].metrics["dice"]
    assert st.mean_difference == pytest.approx((0.05 - 0.10 + 0.03) / 3, abs=1e-12)
    assert (st.better, st.worse, st.tied) == (2, 1, 0)
    assert comparison.pairs[0].metrics["hd95"].nan_in_other == ["c2"]
    md = comparison.markdown()
    assert "| a | b | dice % | 3 | 80.00 | 79.33 | -0.67 | [" in md
    assert "b vs a, hd95: 1 case(s) NaN in b, left out: c2" in md


def test_compare_only_pools_seed_work_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    work, work2 = tmp_path / "w1337", tmp_path / "w1338"
    _write_eval(work / "vnet", {"c1": 0.80, "c2": 0.70})
    _write_eval(work2 / "vnet", {"c1": 0.60, "c2": 0.50})
    _write_eval(work / "canet", {"c1": 0.75, "c2": 0.66})  # one seed only
    argv = ["la_lite.py", "--work", str(work), "--seed-work", str(work2), "--methods", "vnet", "canet",
            "--compare-only", "--resamples", "100"]
    monkeypatch.setattr(sys, "argv", argv)
    la_lite.main()
    out = capsys.readouterr().out
    data = json.loads((work / "compare.json").read_text())
    vnet = data["groups"][0]
    assert vnet["n_seeds"] == 2 and vnet["metrics"]["dice"]["seed_means"] == pytest.approx([0.75, 0.55])
    st = data["pairs"][0]["metrics"]["dice"]
    assert st["mean_difference"] == pytest.approx(((0.75 - 0.70) + (0.66 - 0.60)) / 2, abs=1e-12)
    assert st["seed_std_reference"] == pytest.approx(np.std([0.75, 0.55], ddof=1))
    assert (work / "compare.md").read_text() in out
    assert not (work / "data").exists()  # --compare-only prepares nothing

    monkeypatch.setattr(sys, "argv", [*argv[:5], "--methods", "vnet", "sassnet", "--compare-only"])
    with pytest.raises(SystemExit, match="no evaluation of 'sassnet'"):
        la_lite.main()


def test_downsample_case_halves_each_axis_and_keeps_binary_labels(tmp_path: Path) -> None:
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
