"""The paper-protocol script runs end to end at tiny settings on the CPU, with no `canet` on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from canet.data import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]


def test_paper_protocol_script_at_tiny_settings(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_train=10, n_test=1, seed=3, shape=(40, 40, 32))
    out = tmp_path / "protocol"
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "SEEDS": "1",
        "CONFIGS": "la_vnet_8 la_canet_8",
        # canet starts as "$PYTHON -m canet.cli.main": nothing of the venv is on PATH.
        "PYTHON": sys.executable,
        "PATH": "/usr/bin:/bin",
        "EXTRA": "--iterations 2 --patch-size 32 32 32 --num-workers 0 --set train.checkpoint_every=1",
        "EVAL_EXTRA": "--quiet",
        "OMP_NUM_THREADS": "2",
    }
    assert shutil.which("canet", path=env["PATH"]) is None
    cmd = ["bash", str(REPO / "benchmarks" / "paper_protocol.sh"), str(data), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "results.md").read_text()
    summary_table = table.split("\n\n")[0]  # the paired comparison follows it
    rows = [line for line in summary_table.splitlines() if line.startswith("| la_")]
    assert [r.split("|")[1].strip() for r in rows] == ["la_canet_8", "la_vnet_8"]
    # Each row's metrics are those of its seed's last checkpoint on the test case, recomputed here:
    # reference-mode windows, largest connected component, distances in voxels.
    from canet.data import load_case, open_dataset
    from canet.inferers import predict_volume
    from canet.metrics import binary_metrics
    from canet.models import load_model

    case = open_dataset(data).test[0]
    vol = load_case(case)
    paper = {"la_canet_8": "88.14", "la_vnet_8": "-"}
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        name = cells[0]
        assert cells[1] == "1"  # one seed
        model = load_model(out / name / "seed1" / "checkpoints" / "last.pt")
        mask, _ = predict_volume(model, vol.image, (32, 32, 32), mode="reference", lcc=True)
        expected = binary_metrics(mask, vol.label)
        for cell, metric in zip(cells[2:6], ("dice", "jaccard", "hd95", "asd")):
            value = expected[metric] * (100.0 if metric in ("dice", "jaccard") else 1.0)
            # One seed: the mean alone (no spread over seeds to show).
            assert cell == ("-" if value != value else f"{value:.2f}"), (name, metric, cell)
        assert cells[-1] == paper[name]  # the paper's figure stands beside ours where it gives one
    # the paired comparison of the two configs (reference: the first, la_canet_8)
    assert "| la_canet_8 | la_vnet_8 | dice % | 1 |" in table
    assert (out / "compare.json").is_file() and (out / "compare.md").is_file()
    for cfg in ("la_vnet_8", "la_canet_8"):
        assert (out / cfg / "seed1" / "checkpoints" / "last.pt").is_file()
        assert (out / cfg / "seed1" / "train_seconds.txt").is_file()

    # Run again: finished runs are skipped, not retrained.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done, skipped") == 2
