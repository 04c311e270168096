"""Device of each DDP rank: the local rank's GPU, never one GPU named for every rank."""

from __future__ import annotations

import pytest
import torch

from canet.errors import ConfigError
from canet.training import trainer as trainer_module
from canet.training.distributed import DistInfo, rank_device


def test_rank_device_uses_the_local_rank() -> None:
    two = DistInfo(rank=1, world_size=2, local_rank=1)
    assert rank_device(torch.device("cuda"), two) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu"), two) == torch.device("cpu")
    assert rank_device(torch.device("cuda", 1), DistInfo()) == torch.device("cuda", 1)  # one process
    with pytest.raises(ConfigError, match="'cuda:0' names one GPU but 2 processes run"):
        rank_device(torch.device("cuda", 0), two)


def test_trainer_refuses_cuda_0_under_torchrun(make_config, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """``--device cuda:0`` with two processes used to put both ranks on GPU 0."""
    monkeypatch.setattr(trainer_module, "resolve_device", lambda name: torch.device(name))
    monkeypatch.setattr(
        trainer_module, "init_distributed", lambda use_cuda: DistInfo(rank=1, world_size=2, local_rank=1)
    )
    cfg = make_config("vnet", train__device="cuda:0")
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        trainer_module.Trainer(cfg, tmp_path / "run", quiet=True, log=lambda m: None).setup()
