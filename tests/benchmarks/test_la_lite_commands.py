"""LA-lite starts canet with the running interpreter and names packaged configs."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import la_lite  # benchmarks/ is on sys.path (conftest.py)

from canet.configs import list_configs

CLI = [sys.executable, "-m", "canet.cli.main"]


def test_every_method_names_a_packaged_config() -> None:
    assert set(la_lite.CONFIGS.values()) <= set(list_configs())


def test_canet_command_runs_without_canet_on_path(tmp_path: Path) -> None:
    cmd = la_lite.canet_command("configs")
    assert cmd == [*CLI, "configs"]
    path = "/usr/bin:/bin"
    assert shutil.which("canet", path=path) is None
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={"PATH": path}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == list_configs()


def test_train_and_evaluate_start_the_cli_with_this_interpreter(tmp_path: Path, monkeypatch) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path) -> float:
        calls.append(cmd)
        if cmd[3] == "evaluate":
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps({"cases": 20}))
        return 1.0

    monkeypatch.setattr(la_lite, "run", fake_run)
    args = argparse.Namespace(iterations=1000, seed=1337)
    work = tmp_path / "work"
    result = la_lite.train_and_evaluate("canet-reuse", tmp_path / "data", work, args)
    assert result["summary"] == {"cases": 20}
    train, evaluate = calls
    assert train[:4] == [*CLI, "train"] and evaluate[:4] == [*CLI, "evaluate"]
    assert train[train.index("--config") + 1] == "la_canet_16"
    assert "train.d_step_reuse_outputs=true" in train
    assert evaluate[4] == str(work / "canet-reuse" / "checkpoints" / "last.pt")

    # An interrupted run resumes through the same interpreter.
    calls.clear()
    (work / "vnet" / "checkpoints").mkdir(parents=True)
    (work / "vnet" / "checkpoints" / "last.pt").write_bytes(b"")
    la_lite.train_and_evaluate("vnet", tmp_path / "data", work, args)
    assert calls[0] == [*CLI, "train", "--resume", str(work / "vnet"), "--quiet"]
    assert calls[1][:4] == [*CLI, "evaluate"]
