"""``train.profile``: the fast settings and the deferred finiteness check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from canet.checkpoint import load_checkpoint
from canet.cli.main import main
from canet.errors import ConfigError
from canet.training.config import load_config, save_config
from canet.training.profiles import apply_profile, fast_workers
from canet.training.trainer import Trainer, TrainingError


def test_exact_profile_changes_nothing(make_config) -> None:
    cfg = make_config("canet")
    assert apply_profile(cfg, torch.device("cuda")) is cfg


def test_fast_profile_settings_per_device(make_config) -> None:
    cfg = make_config("canet", train__profile="fast")
    gpu = apply_profile(cfg, torch.device("cuda"))
    assert (gpu.train.amp, gpu.train.channels_last, gpu.train.deterministic) == ("bf16", True, False)
    assert gpu.data.num_workers == fast_workers() >= 2
    cpu = apply_profile(cfg, torch.device("cpu"))
    assert (cpu.train.amp, cpu.train.channels_last, cpu.train.deterministic) == ("none", True, False)
    # A value the config sets itself is kept.
    fp16 = apply_profile(make_config("canet", train__profile="fast", train__amp="fp16"), torch.device("cuda"))
    assert fp16.train.amp == "fp16"
    assert apply_profile(make_config("canet", train__profile="fast", data__num_workers=12),
                         torch.device("cuda")).data.num_workers == 12


@pytest.mark.parametrize(("cpus", "workers"), [(1, 2), (4, 2), (16, 8), (64, 8)])
def test_fast_workers(cpus: int, workers: int) -> None:
    assert fast_workers(cpus) == workers


def test_unknown_profile_is_a_config_error(make_config) -> None:
    with pytest.raises(ConfigError, match="train.profile must be one of exact, fast, got 'turbo'"):
        make_config("canet", train__profile="turbo")


def test_fast_run_records_its_settings(make_config, tmp_path: Path) -> None:
    cfg = make_config("canet", iterations=2, train__profile="fast")
    Trainer(cfg, tmp_path / "run", quiet=True).run()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["profile"] == "fast"
    assert saved["train"]["channels_last"] is True and saved["train"]["deterministic"] is False
    assert saved["data"]["num_workers"] == fast_workers()
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert payload["iteration"] == 2 and payload["config"]["train"]["profile"] == "fast"


def test_deferred_check_stops_at_first_bad_iteration(make_config, tmp_path: Path) -> None:
    """A NaN loss at iteration 3 is found at the check after iteration 4; last.pt stays at 2."""
    cfg = make_config(
        "canet", iterations=8, train__profile="fast", train__log_every=4,
        train__checkpoint_every=2, data__num_workers=0,
    )
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.setup()
    original = trainer.method.generator_loss

    def poisoned(ctx):
        loss = original(ctx)
        return loss * float("nan") if ctx.iteration == 2 else loss

    trainer.method.generator_loss = poisoned  # type: ignore[method-assign]
    with pytest.raises(TrainingError) as info:
        trainer.run()
    message = str(info.value)
    assert "non-finite loss (first at iteration 3; found at the check after iteration 4)" in message
    assert "last good checkpoint" in message
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert payload["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in payload["generator"].values() if v.is_floating_point())


def test_exact_profile_stops_at_once(make_config, tmp_path: Path) -> None:
    cfg = make_config("canet", iterations=8, train__log_every=4, train__checkpoint_every=2)
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.setup()
    original = trainer.method.generator_loss
    trainer.method.generator_loss = (  # type: ignore[method-assign]
        lambda ctx: original(ctx) * float("nan") if ctx.iteration == 2 else original(ctx)
    )
    with pytest.raises(TrainingError, match=r"non-finite loss \(= nan\) at iteration 3"):
        trainer.run()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 2


def test_cli_fast_flag(make_config, tmp_path: Path, capsys) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    save_config(make_config("vnet", iterations=1), cfg_path)
    assert main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--fast", "--quiet"]) == 0
    assert load_config(tmp_path / "run" / "config.yaml").train.profile == "fast"
    assert main(["train", "--resume", str(tmp_path / "run"), "--fast"]) == 2
    assert "--fast cannot be combined with --resume" in capsys.readouterr().err
