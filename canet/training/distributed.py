"""DistributedDataParallel helpers: process-group set-up from ``torchrun``'s environment.

``torchrun --nproc_per_node N -m canet.cli.main train ...`` (or the ``canet``
script) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them and joins the group with
the ``gloo`` backend on CPU or ``nccl`` on CUDA. Without ``WORLD_SIZE > 1`` it
does nothing and reports rank 0 of 1.

Each rank runs on the GPU of its ``LOCAL_RANK`` (:func:`rank_device`): a
device named without an index (``cuda``, or ``auto`` on a CUDA machine) becomes
``cuda:<LOCAL_RANK>``; an explicit index (``cuda:0``) is refused when more than
one process runs, since it would put every rank on the same GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from canet.errors import ConfigError
from canet.training.schema import DataConfig


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment, if any.

    Args:
        use_cuda: pick ``nccl`` (True) or ``gloo`` (False) as the backend.

    Returns:
        The :class:`DistInfo`; ``initialized_here`` says whether this call
        created the group (and :func:`cleanup_distributed` should destroy it).
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_gpu(local))
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank, world, local, True)


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device this rank trains on: ``cuda:<local_rank>`` under DDP, ``device`` otherwise.

    Raises:
        ConfigError: an explicit CUDA index with more than one process, or a
            ``LOCAL_RANK`` beyond the machine's GPUs.
    """
    if device.type != "cuda" or not info.distributed:
        return device
    if device.index is not None:
        raise ConfigError(
            f"train.device {str(device)!r} names one GPU but {info.world_size} processes run: every rank "
            "would use it; give 'cuda' and each rank takes the GPU of its LOCAL_RANK"
        )
    return local_gpu(info.local_rank)


def local_gpu(local_rank: int) -> torch.device:
    """``cuda:<local_rank>``, the GPU of a process under torchrun.

    Raises:
        ConfigError: the machine has no GPU of that index.
    """
    count = torch.cuda.device_count()
    if not 0 <= local_rank < count:
        raise ConfigError(
            f"LOCAL_RANK is {local_rank} but this machine has {count} GPU(s): start at most "
            f"{count} processes per node (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class BatchPlan:
    """The rows of one iteration: per process and over all ``processes``.

    Attributes:
        batch_size, labeled_bs: rows (labeled rows) of each process's batch.
        processes: training processes (the DDP world size).
        global_batch: whether the config's sizes were global (``data.global_batch``).
    """

    batch_size: int
    labeled_bs: int
    processes: int
    global_batch: bool

    @property
    def total(self) -> int:
        """Rows per iteration over all processes."""
        return self.batch_size * self.processes

    @property
    def total_labeled(self) -> int:
        """Labeled rows per iteration over all processes."""
        return self.labeled_bs * self.processes

    def describe(self) -> str:
        """One line for the start of a run."""
        if self.processes == 1:
            return f"batch: {self.total} rows per iteration ({self.total_labeled} labeled), one process"
        return (
            f"batch: {self.batch_size} rows per process ({self.labeled_bs} labeled) x {self.processes} "
            f"processes = {self.total} rows per iteration ({self.total_labeled} labeled)"
        )

    def warning(self, cfg_batch: int) -> str | None:
        """A warning where processes multiply the config's batch (``data.global_batch`` off)."""
        if self.global_batch or self.processes == 1:
            return None
        return (
            f"warning: data.batch_size {cfg_batch} counts per process, so {self.processes} processes train "
            f"on {self.total} rows per iteration at the config's learning rate and iterations; set "
            f"data.global_batch: true to keep {cfg_batch} rows in all"
        )

    def to_dict(self) -> dict[str, int | bool]:
        """What ``environment.json`` records under ``"batch"``."""
        return {
            "per_process": self.batch_size,
            "labeled_per_process": self.labeled_bs,
            "processes": self.processes,
            "global": self.total,
            "global_labeled": self.total_labeled,
            "global_batch_setting": self.global_batch,
        }


def batch_plan(data: DataConfig, world_size: int) -> BatchPlan:
    """Each process's batch for ``world_size`` processes under ``data.global_batch``.

    Raises:
        ConfigError: ``data.global_batch`` with sizes that do not divide among the processes.
    """
    if not data.global_batch or world_size == 1:
        return BatchPlan(data.batch_size, data.labeled_bs, world_size, data.global_batch)
    b, lab = data.batch_size, data.labeled_bs
    if b % world_size or lab % world_size:
        raise ConfigError(
            f"data.global_batch is on but data.batch_size {b} and data.labeled_bs {lab} do not both divide "
            f"among {world_size} processes; choose sizes that do, or another number of processes"
        )
    return BatchPlan(b // world_size, lab // world_size, world_size, True)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
