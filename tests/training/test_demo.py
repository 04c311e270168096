"""``canet demo`` at tiny settings: it trains, evaluates, reports, and beats the untrained network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canet.errors import ConfigError
from canet.training.demo import run_demo

TINY_DATA = {"n_train": 6, "n_test": 2, "shape": (32, 32, 32)}


def test_demo_tiny(tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_demo(
        tmp_path / "demo",
        iterations=20,
        quiet=True,
        overrides={"data.patch_size": [32, 32, 32], "data.num_workers": 0},
        data_kwargs=TINY_DATA,
        log=lines.append,
    )
    text = "\n".join(lines)
    run_dir: Path = out["run_dir"]
    assert run_dir.parent == tmp_path / "demo" and (tmp_path / "demo" / "data" / "train.list").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "eval" / "metrics.csv").is_file() and (run_dir / "eval" / "summary.json").is_file()
    assert out["report"] == run_dir / "report.html" and out["report"].is_file()
    assert "held-out synthetic cases (2)" in text and f"run folder: {run_dir}" in text
    assert "untrained network" in text and "dice" in text
    assert out["summary"]["cases"] == 2
    # Twenty iterations on the easy synthetic data already beat the untrained network clearly.
    assert out["dice"] > out["untrained_dice"] + 0.3, (out["dice"], out["untrained_dice"])

    # A second demo in the same folder reuses the data and makes a new run folder.
    again = run_demo(
        tmp_path / "demo", iterations=1, quiet=True,
        overrides={"data.patch_size": [32, 32, 32], "data.num_workers": 0},
        data_kwargs=TINY_DATA, log=lambda m: None,
    )
    assert again["run_dir"] != run_dir and again["run_dir"].parent == run_dir.parent


def test_bad_demo_settings_are_refused_before_any_data_is_written(tmp_path: Path) -> None:
    for kwargs, why in (({"iterations": 0}, "iterations must be >= 1, got 0"),
                        ({"device": "gpu"}, "gpu")):
        with pytest.raises(ConfigError, match=why):  # 51 MB of synthetic volumes were written first
            run_demo(tmp_path / "demo", quiet=True, data_kwargs=TINY_DATA, log=lambda m: None, **kwargs)
        assert not (tmp_path / "demo").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_refused_before_any_data_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.device is 'cuda' but CUDA is not available"):
        run_demo(tmp_path / "demo", quiet=True, data_kwargs=TINY_DATA, log=lambda m: None, device="cuda")
    assert not (tmp_path / "demo").exists()
