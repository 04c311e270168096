"""benchmarks/aggregate_results.py on hand-made run folders: seed table and paired comparison."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CASES = ["c1", "c2", "c3", "c4"]


def _script():
    spec = importlib.util.spec_from_file_location("aggregate_results", REPO / "benchmarks" / "aggregate_results.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _run(out: Path, cfg: str, seed: int, dice: list[float], seconds: float) -> None:
    ev = out / cfg / f"seed{seed}" / "eval"
    ev.mkdir(parents=True)
    lines = ["case,dice,jaccard,hd95,asd,seconds"]
    lines += [f"{c},{d!r},{d / (2 - d)!r},{10 * (1 - d)!r},1.0,nan" for c, d in zip(CASES, dice)]
    (ev / "metrics.csv").write_text("\n".join(lines) + "\n")
    (ev / "summary.json").write_text(json.dumps({"cases": len(CASES), "spacing": "voxels", "mode": "reference"}))
    (ev.parent / "train_seconds.txt").write_text(f"{seconds}\n")


def test_seed_table_and_paired_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    runs = {
        "la_canet_8": {1: [0.80, 0.70, 0.90, 0.60], 2: [0.84, 0.72, 0.88, 0.64]},
        "la_vnet_8": {1: [0.78, 0.69, 0.85, 0.61], 2: [0.70, 0.65, 0.86, 0.55]},
    }
    for cfg, seeds in runs.items():
        for seed, dice in seeds.items():
            _run(tmp_path, cfg, seed, dice, 3600.0 * seed)
    (tmp_path / "la_canet_16" / "seed1").mkdir(parents=True)  # started, not evaluated yet
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", str(tmp_path), "--resamples", "500"])
    _script().main()
    text = capsys.readouterr().out

    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[1:-1]]
            for r in text.split("\n\n")[0].splitlines() if r.startswith("| la_")}
    assert list(rows) == ["la_canet_8", "la_vnet_8"]
    for cfg, seeds in runs.items():
        seed_means = [100 * statistics.fmean(d) for d in seeds.values()]
        expected = f"{statistics.fmean(seed_means):.2f} ± {statistics.stdev(seed_means):.2f}"
        assert rows[cfg][1] == "2" and rows[cfg][2] == expected
        assert rows[cfg][6] == "1.50"  # hours: mean of 1 h and 2 h
    assert rows["la_canet_8"][7] == "88.14"
    assert "la_canet_16: no evaluated seed yet, left out" in text

    per_case = {cfg: np.mean(list(seeds.values()), axis=0) for cfg, seeds in runs.items()}
    diff = 100 * (per_case["la_vnet_8"] - per_case["la_canet_8"]).mean()
    assert "| la_canet_8 | la_vnet_8 | dice % | 4 | " in text and f"| {diff:+.2f} | [" in text
    data = json.loads((tmp_path / "compare.json").read_text())
    st = data["pairs"][0]["metrics"]["dice"]
    assert st["mean_difference"] == pytest.approx(diff / 100, abs=1e-12)
    assert st["better"] == 0 and st["worse"] == 4
    assert st["seed_std_reference"] == pytest.approx(
        statistics.stdev([statistics.fmean(d) for d in runs["la_canet_8"].values()]))
