"""Resuming on another device type: the RNG states that cannot move are reseeded, with a warning.

No GPU is needed: a checkpoint "written on CUDA" is a CPU checkpoint whose
device RNG states are replaced by CUDA-shaped ones (a CUDA generator's state is
16 bytes, a CPU generator's 5056), and ``torch.cuda`` is mocked where the
CUDA side is reached.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from canet.checkpoint import load_checkpoint, save_checkpoint
from canet.errors import CheckpointError, ConfigError
from canet.training.state import (
    checkpoint_device_type,
    reseed_value,
    rng_state,
    saved_device_type,
    set_rng_state,
)
from canet.training.trainer import Trainer, resume

CUDA_STATE = torch.zeros(16, dtype=torch.uint8)  # what torch.cuda / a CUDA Generator's get_state() returns


def test_rng_state_records_its_device_and_old_checkpoints_are_read_by_their_keys() -> None:
    state = rng_state(torch.device("cpu"), torch.Generator().manual_seed(1))
    assert state["device"] == "cpu"
    assert saved_device_type({"torch": 0, "noise": 0}) == "cpu"  # written before "device" was recorded
    assert saved_device_type({"torch": 0, "noise": 0, "cuda": CUDA_STATE}) == "cuda"
    assert checkpoint_device_type({"ranks": [{"rng": {"cuda": CUDA_STATE}}]}) == "cuda"


def test_same_device_restores_every_state_exactly() -> None:
    gen = torch.Generator().manual_seed(3)
    saved = rng_state(torch.device("cpu"), gen)
    expected_noise = torch.randn(4, generator=gen)
    expected_global = torch.randn(4)
    torch.manual_seed(99)
    fresh = torch.Generator().manual_seed(42)
    assert set_rng_state(saved, torch.device("cpu"), fresh, reseed=5) is True
    assert torch.equal(torch.randn(4, generator=fresh), expected_noise)  # not the reseed
    assert torch.equal(torch.randn(4), expected_global)


def test_a_cuda_state_on_the_cpu_reseeds_the_noise_generator() -> None:
    cpu_state = rng_state(torch.device("cpu"), torch.Generator())
    saved = {"torch": cpu_state["torch"], "noise": CUDA_STATE, "cuda": CUDA_STATE, "device": "cuda"}
    noise = torch.Generator()
    with pytest.raises(RuntimeError):
        noise.set_state(CUDA_STATE)  # what resuming used to do
    assert set_rng_state(saved, torch.device("cpu"), noise, reseed=1234) is False
    assert torch.equal(torch.randn(3, generator=noise), torch.randn(3, generator=torch.Generator().manual_seed(1234)))
    with pytest.raises(CheckpointError, match="drawn on cuda, this run is on cpu"):
        set_rng_state(saved, torch.device("cpu"), noise)


class FakeDeviceGenerator:
    """Stands in for a CUDA ``torch.Generator`` (records what is done to it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def set_state(self, state: torch.Tensor) -> None:
        self.calls.append(("set_state", state))

    def manual_seed(self, seed: int) -> FakeDeviceGenerator:
        self.calls.append(("manual_seed", seed))
        return self


def test_a_cpu_state_on_a_gpu_reseeds_the_device_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    seeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed", seeded.append)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a: pytest.fail("a CPU state reached the GPU"))
    saved = rng_state(torch.device("cpu"), torch.Generator().manual_seed(8))
    noise = FakeDeviceGenerator()
    assert set_rng_state(saved, torch.device("cuda", 0), noise, reseed=77) is False  # type: ignore[arg-type]
    assert noise.calls == [("manual_seed", 77)]  # the CPU state never reaches the CUDA generator
    assert seeded == [77]
    # A checkpoint written on CUDA resumed on CUDA puts every state back.
    cuda_saved = {**saved, "noise": CUDA_STATE, "cuda": CUDA_STATE, "device": "cuda"}
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: seeded.append(("cuda", device)))
    again = FakeDeviceGenerator()
    assert set_rng_state(cuda_saved, torch.device("cuda", 0), again, reseed=77) is True  # type: ignore[arg-type]
    assert again.calls == [("set_state", CUDA_STATE)] and seeded[-1] == ("cuda", torch.device("cuda", 0))


def test_reseed_value_depends_on_seed_rank_and_iteration() -> None:
    values = {reseed_value(s, r, i) for s in (1, 2) for r in (0, 1) for i in (100, 200)}
    assert len(values) == 8 and all(0 <= v < 2**63 for v in values)
    assert reseed_value(1337, 0, 2000) == reseed_value(1337, 0, 2000)


def _as_if_written_on_cuda(run: Path, amp: str) -> None:
    """Turn a CPU run folder into what a GPU run of the same config would have left."""
    last = run / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    for rank in payload["ranks"]:
        rank["rng"].update(noise=CUDA_STATE.clone(), cuda=CUDA_STATE.clone(), device="cuda")
    payload["config"]["train"]["amp"] = amp
    save_checkpoint(payload, last)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["amp"] = amp
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_a_fast_gpu_run_resumes_on_the_cpu_in_fp32_with_a_warning(make_config, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    cfg = make_config("canet", iterations=2, train__profile="fast", data__num_workers=0)
    Trainer(cfg, run, quiet=True, log=lambda m: None).run()
    _as_if_written_on_cuda(run, "bf16")
    capsys.readouterr()
    result = resume(run, iterations=3, quiet=True, overrides={"data.num_workers": 0})
    assert result.iteration == 3
    lines = capsys.readouterr().out.splitlines()
    warning = next(line for line in lines if line.startswith("warning: this run's checkpoint was written on cuda"))
    assert "resumes on cpu" in warning and "no longer repeats an uninterrupted one bit for bit" in warning
    assert "goes on in fp32" in warning
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["amp"] == "none"
    # The new checkpoint records where its states were drawn.
    assert load_checkpoint(run / "checkpoints" / "last.pt")["ranks"][0]["rng"]["device"] == "cpu"


def test_an_autocast_the_cpu_cannot_run_is_refused_in_one_line(make_config, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(make_config("vnet", iterations=1), run, quiet=True, log=lambda m: None).run()
    _as_if_written_on_cuda(run, "bf16")  # the exact profile: bf16 was the config's own choice
    with pytest.raises(ConfigError) as info:
        resume(run, iterations=2, quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert message == ("this run trains with train.amp 'bf16', which needs a CUDA device; it was written on "
                       "cuda: resume it on a CUDA device (--device cuda)")
    # The run folder is not left locked by the refused resume.
    _as_if_written_on_cuda(run, "none")
    assert resume(run, iterations=2, quiet=True).iteration == 2


def test_a_checkpoint_without_the_device_record_resumes_bit_for_bit(make_config, tmp_path: Path) -> None:
    """Checkpoints written before the RNG device was recorded continue exactly as before."""
    full = Trainer(make_config("canet", iterations=3), tmp_path / "full", quiet=True, log=lambda m: None)
    full.run()
    Trainer(make_config("canet", iterations=2), tmp_path / "half", quiet=True, log=lambda m: None).run()
    last = tmp_path / "half" / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    for rank in payload["ranks"]:
        del rank["rng"]["device"]
    save_checkpoint(payload, last)
    resume(tmp_path / "half", iterations=3, quiet=True)
    resumed = load_checkpoint(last)
    assert resumed["iteration"] == 3
    for name, value in full.generator.state_dict().items():
        assert torch.equal(value, resumed["generator"][name]), name
