"""Device of each process: the local rank's GPU under DDP (never one GPU named for every rank), cuda:N selected.

Without a GPU, ``torch.cuda`` is mocked to report two devices.
"""

from __future__ import annotations

import pytest
import torch

from canet.device import resolve_device, select_device
from canet.errors import ConfigError
from canet.training import distributed
from canet.training import trainer as trainer_module
from canet.training.distributed import DistInfo, rank_device


def test_rank_device_uses_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCuda(monkeypatch, count=2)
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


class FakeCuda:
    """``torch.cuda`` as a machine with ``count`` GPUs would answer (records set_device)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int = 2) -> None:
        self.current: list[int] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", self._set)

    def _set(self, device) -> None:
        self.current.append(torch.device(device).index if not isinstance(device, int) else device)


@pytest.mark.parametrize("local_rank", [0, 1])
def test_each_torchrun_process_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch, local_rank) -> None:
    cuda = FakeCuda(monkeypatch, count=2)
    joined: list[dict] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: joined.append(kw))
    for name, value in {"WORLD_SIZE": "2", "RANK": str(local_rank), "LOCAL_RANK": str(local_rank)}.items():
        monkeypatch.setenv(name, value)
    info = distributed.init_distributed(use_cuda=True)
    assert (info.rank, info.world_size, info.local_rank) == (local_rank, 2, local_rank)
    assert joined == [{"backend": "nccl", "init_method": "env://", "rank": local_rank, "world_size": 2}]
    assert cuda.current == [local_rank]  # set before the process group opens its communicator
    assert resolve_device("cuda") == torch.device("cuda")
    assert rank_device(torch.device("cuda"), info) == torch.device("cuda", local_rank)


def test_a_local_rank_beyond_the_gpus_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCuda(monkeypatch, count=2)
    three = DistInfo(rank=2, world_size=3, local_rank=2)
    with pytest.raises(ConfigError, match="LOCAL_RANK is 2 but this machine has 2 GPU"):
        rank_device(torch.device("cuda"), three)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    for name, value in {"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="LOCAL_RANK is 2"):
        distributed.init_distributed(use_cuda=True)


def test_a_gpu_index_the_machine_lacks_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCuda(monkeypatch, count=2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"--device is 'cuda:2' but this machine has 2 GPU\(s\)"):
        resolve_device("cuda:2", key="--device")


def test_one_process_on_cuda_1_makes_it_the_current_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda(monkeypatch, count=2)
    select_device(torch.device("cuda", 1))
    select_device(torch.device("cuda"))  # no index: the current device is already the one used
    select_device(torch.device("cpu"))
    assert cuda.current == [1]


def test_the_trainer_selects_its_gpu_before_anything_else(make_config, monkeypatch, tmp_path) -> None:
    FakeCuda(monkeypatch, count=2)
    chosen: list[torch.device] = []

    class Stop(Exception):
        pass

    def select(device: torch.device) -> None:
        chosen.append(device)
        raise Stop

    monkeypatch.setattr(trainer_module, "select_device", select)
    monkeypatch.setattr(trainer_module, "init_distributed", lambda use_cuda: DistInfo())
    with pytest.raises(Stop):
        trainer_module.Trainer(make_config("vnet", train__device="cuda:1"), tmp_path / "run", quiet=True).setup()
    assert chosen == [torch.device("cuda", 1)]


def test_batch_plan_per_process_or_global(make_config) -> None:
    per_process = make_config("canet", data__batch_size=4, data__labeled_bs=2)
    plan = distributed.batch_plan(per_process.data, 2)
    assert (plan.batch_size, plan.labeled_bs, plan.total, plan.total_labeled) == (4, 2, 8, 4)
    assert plan.describe() == "batch: 4 rows per process (2 labeled) x 2 processes = 8 rows per iteration (4 labeled)"
    assert plan.warning(4) is not None and "train on 8 rows per iteration" in plan.warning(4)
    assert "data.global_batch: true to keep 4 rows" in plan.warning(4)

    paper = make_config("canet", data__batch_size=4, data__labeled_bs=2, data__global_batch=True)
    two = distributed.batch_plan(paper.data, 2)
    assert (two.batch_size, two.labeled_bs, two.total, two.total_labeled) == (2, 1, 4, 2)
    assert two.warning(4) is None
    assert two.to_dict() == {"per_process": 2, "labeled_per_process": 1, "processes": 2, "global": 4,
                             "global_labeled": 2, "global_batch_setting": True}
    one = distributed.batch_plan(paper.data, 1)
    assert (one.batch_size, one.labeled_bs, one.warning(4)) == (4, 2, None)
    assert one.describe() == "batch: 4 rows per iteration (2 labeled), one process"
    with pytest.raises(ConfigError, match="data.batch_size 4 and data.labeled_bs 2 do not both divide among 4"):
        distributed.batch_plan(paper.data, 4)
    with pytest.raises(ConfigError, match="among 3 processes"):
        distributed.batch_plan(paper.data, 3)


def test_evaluation_on_cuda_1_selects_that_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from canet.checkpoint import make_checkpoint, save_checkpoint
    from canet.evaluation.checkpoints import load_for_inference
    from canet.models import create_model

    cuda = FakeCuda(monkeypatch, count=2)
    moved: list[torch.device] = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(a[0]) or self)
    path = tmp_path / "g.pt"
    save_checkpoint(make_checkpoint(create_model("vnet", n_filters=4), "test"), path)
    load_for_inference(path, torch.device("cuda", 1))
    assert cuda.current == [1] and moved == [torch.device("cuda", 1)]


@pytest.mark.parametrize("name", ["meta", "mps", "cpu:x", "tpu"])
def test_devices_canet_does_not_run_on_are_one_line(name: str) -> None:
    # torch.device("meta") is a device to torch; predict on it used to end in a traceback
    with pytest.raises(ConfigError, match=rf"^--device must be auto, cpu, cuda or cuda:N, got '{name}'$"):
        resolve_device(name, key="--device")
