"""``train.profile``: the fast settings and the deferred finiteness check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from canet.checkpoint import load_checkpoint
from canet.cli.main import main
from canet.device import BackendFlags
from canet.errors import ConfigError
from canet.training.config import load_config, save_config
from canet.training.profiles import (
    RUNS_ON_HOST_ENV,
    apply_profile,
    fast_workers,
    processes_on_host,
    training_flags,
    usable_cpus,
)
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
    assert fast_workers(cpus, processes=1) == workers


# (CPUs, processes on the machine) -> workers each: (CPUs - 1) // processes - 1, between 1 and 8.
@pytest.mark.parametrize(
    ("cpus", "processes", "workers"),
    [(16, 2, 6), (16, 4, 2), (16, 8, 1), (2, 2, 1), (64, 4, 8), (20, 3, 5)],
)
def test_fast_workers_share_the_machine(cpus: int, processes: int, workers: int) -> None:
    assert fast_workers(cpus, processes) == workers
    # Together the processes and their workers ask for no more CPUs than there are (but one each at least).
    assert processes * (workers + 1) <= max(cpus, 2 * processes)


def test_processes_on_host_from_torchrun_and_side_by_side_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv(RUNS_ON_HOST_ENV, raising=False)
    assert processes_on_host() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert processes_on_host() == 2
    monkeypatch.setenv(RUNS_ON_HOST_ENV, "3")
    assert processes_on_host() == 6
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
    assert usable_cpus() == 16
    assert fast_workers() == 1  # 15 // 6 - 1
    monkeypatch.setenv(RUNS_ON_HOST_ENV, "two")
    with pytest.raises(ConfigError, match=f"{RUNS_ON_HOST_ENV} must be a whole number >= 1, got 'two'"):
        processes_on_host()


def test_usable_cpus_follow_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3, 4, 5, 6})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv(RUNS_ON_HOST_ENV, raising=False)
    assert usable_cpus() == 4
    assert fast_workers() == 2  # 4 - 2, not 64 - 2 capped at 8


@pytest.mark.parametrize(
    ("profile", "device", "expected"),
    [
        # (tf32, benchmark, deterministic)
        ("exact", "cuda", (False, False, True)),
        ("exact", "cpu", (False, False, True)),
        ("fast", "cuda", (True, True, False)),
        ("fast", "cpu", (False, False, False)),
    ],
)
def test_each_profile_names_every_switch(make_config, profile: str, device: str, expected: tuple) -> None:
    dev = torch.device(device)
    cfg = apply_profile(make_config("canet", train__profile=profile), dev)
    flags = training_flags(cfg, dev)
    assert (flags.tf32, flags.benchmark, flags.deterministic) == expected


def _switches() -> tuple:
    now = BackendFlags.current()
    return (now["cudnn_tf32"], now["matmul_tf32"], now["cudnn_benchmark"], now["deterministic"],
            now["cudnn_deterministic"])


def test_a_run_does_not_inherit_the_switches_of_the_run_before(make_config, tmp_path: Path) -> None:
    # torch's own default is TF32 in cuDNN convolutions; a fast GPU run would also leave these on.
    BackendFlags(tf32=True, benchmark=True, deterministic=False).apply()
    exact = Trainer(make_config("vnet"), tmp_path / "exact", quiet=True, log=lambda m: None)
    exact.setup()
    exact.loader.close()
    assert _switches() == (False, False, False, True, True)
    fast = Trainer(make_config("vnet", train__profile="fast"), tmp_path / "fast", quiet=True, log=lambda m: None)
    fast.setup()
    fast.loader.close()
    assert _switches() == (False, False, False, False, False)  # CPU: no TF32, no benchmark, not deterministic
    again = Trainer(make_config("vnet"), tmp_path / "again", quiet=True, log=lambda m: None)
    again.setup()
    again.loader.close()
    assert _switches() == (False, False, False, True, True)


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


def test_fast_profile_validation_keeps_every_weight_channels_last(make_config, tmp_path: Path) -> None:
    """Validation used to put a channels_last generator back into the standard layout."""
    cfg = make_config(
        "canet", iterations=2, train__profile="fast", validation__every=1, validation__split="labeled",
        validation__max_cases=1,
    )
    trainer = Trainer(cfg, tmp_path / "run", quiet=True, log=lambda m: None)
    trainer.run()
    assert trainer.best_val is not None  # validation ran (twice)
    nets = {"generator": trainer.generator, "discriminator": trainer.discriminator}
    for net_name, net in nets.items():
        weights = [(n, p) for n, p in net.named_parameters() if p.dim() == 5]
        decisive = [(n, p) for n, p in weights
                    if p.is_contiguous() != p.is_contiguous(memory_format=torch.channels_last_3d)]
        assert len(decisive) >= len(weights) // 2
        for name, p in decisive:
            assert p.is_contiguous(memory_format=torch.channels_last_3d), f"{net_name}.{name}"
    # The SGD momentum buffers follow the weights (no layout mismatch for foreach updates).
    def layout(t: torch.Tensor) -> tuple[bool, bool]:
        return t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last_3d)

    buffers = [(p, trainer.opt_g.state[p]["momentum_buffer"]) for p in trainer.generator.parameters()
               if p.dim() == 5 and p.requires_grad]
    assert buffers and all(layout(buf) == layout(p) for p, buf in buffers)
