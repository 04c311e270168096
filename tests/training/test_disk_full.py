"""A disk that fills up during training: one line, exit 2, the last checkpoint kept, and the run resumes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import canet.io as canet_io
from canet.checkpoint import load_checkpoint
from canet.cli.main import main
from canet.training.config import save_config


def test_a_full_disk_stops_training_in_one_line_and_loses_nothing(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    save_config(make_config("canet", iterations=2), cfg_path)
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg_path), "--out", str(run), "--quiet"]) == 0
    last = run / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["iteration"] == 2
    capsys.readouterr()

    real_save = torch.save

    def save_on_a_full_disk(obj: object, f: object, *args: object, **kwargs: object) -> None:
        Path(str(f)).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 589056 vs 588952")

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 0)
    assert main(["train", "--resume", str(run), "--iterations", "4", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write {last}: no space left on its disk (0 MiB free); the file there before is kept"
    assert load_checkpoint(last)["iteration"] == 2
    assert not [p.name for p in last.parent.iterdir() if p.name.startswith(".")]  # no partial file left

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the same run goes on from iteration 2
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--iterations", "4", "--quiet"]) == 0
    assert load_checkpoint(last)["iteration"] == 4
    with open(run / "metrics.csv", newline="") as fh:
        assert [r["iteration"] for r in csv.DictReader(fh)] == ["1", "2", "3", "4"]
