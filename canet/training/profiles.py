"""Training profiles: the paper's exact settings, or the fast GPU settings.

``train.profile: exact`` (the default) changes no config key: fp32,
deterministic algorithms, a finiteness check of every loss right after it is
computed.

``train.profile: fast`` (``canet train --fast``) turns on, where they apply:

- ``train.amp: bf16`` on CUDA (the CPU keeps fp32: bf16 autocast made the whole
  Trans-V step slower on this project's CPU, see docs/RESULTS.md);
- ``train.channels_last: true`` (the ``channels_last_3d`` memory format);
- ``train.deterministic: false``, hence cuDNN benchmark on CUDA, and TF32
  convolutions and matmuls on CUDA for what autocast leaves in fp32;
- ``data.num_workers`` raised to :func:`fast_workers` (loader workers with
  pinned memory; the labeled patches' SDMs are computed in the workers): the
  CPUs this process may use, shared with the other training processes of the
  machine (``LOCAL_WORLD_SIZE`` under torchrun, :data:`RUNS_ON_HOST_ENV` for
  runs started side by side);
- a deferred finiteness check: the losses are checked on the device every
  iteration without a host synchronisation, and the result is read every
  ``train.log_every`` iterations and before every validation and checkpoint.
  A non-finite loss still stops training, names the first iteration it
  occurred at, and leaves the last checkpoint written before it untouched.

Keys that a config already sets to something other than the exact default
(e.g. ``train.amp: fp16``) are kept. ``train.compile`` is left as configured:
whether compilation pays for itself within one run is measured by
``benchmarks/gpu_probe.py``. The settings chosen are part of the resolved config
that a run writes to ``config.yaml``, so a run records how it was trained.

Both profiles also set every global torch switch they depend on
(:func:`training_flags`, applied by the trainer on every device): the exact
profile turns TF32 and the cuDNN benchmark off explicitly (torch's default
for cuDNN convolutions is TF32, which is not fp32) and deterministic
algorithms on; the fast one the opposite on CUDA. A run therefore never
inherits the switches of an earlier run in the same process.
"""

from __future__ import annotations

import os

import torch

from canet.device import BackendFlags
from canet.errors import ConfigError
from canet.training.config import Config, config_from_dict

# Most loader workers the fast profile asks for; the loader's batches do not
# depend on the number of workers, so this changes speed only.
MAX_FAST_WORKERS = 8

#: Environment variable: how many training runs share this machine's CPUs
#: (``benchmarks/protocol_run.py next --parallel`` sets it for its runs).
RUNS_ON_HOST_ENV = "CANET_RUNS_ON_HOST"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2


def processes_on_host() -> int:
    """Training processes sharing this machine's CPUs: ``LOCAL_WORLD_SIZE`` x :data:`RUNS_ON_HOST_ENV`.

    Raises:
        ConfigError: one of them is set to something other than a whole number >= 1.
    """
    total = 1
    for name in ("LOCAL_WORLD_SIZE", RUNS_ON_HOST_ENV):
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"environment variable {name} must be a whole number >= 1, got {raw!r}")
        total *= value
    return total


def fast_workers(cpu_count: int | None = None, processes: int | None = None) -> int:
    """Loader workers per training process for the fast profile.

    One process alone takes the CPUs less two (one for itself, one for the
    rest of the machine), between 2 and 8. ``processes`` processes on one
    machine share what is left after one CPU: each takes its share less one
    for itself, between 1 and 8, so that together they do not ask for more
    CPUs than there are.

    Args:
        cpu_count: CPUs to share (default: :func:`usable_cpus`).
        processes: training processes on the machine (default: :func:`processes_on_host`).
    """
    cpus = cpu_count if cpu_count is not None else usable_cpus()
    procs = processes if processes is not None else processes_on_host()
    if procs <= 1:
        return max(2, min(MAX_FAST_WORKERS, cpus - 2))
    return max(1, min(MAX_FAST_WORKERS, (cpus - 1) // procs - 1))


def training_flags(cfg: Config, device: torch.device) -> BackendFlags:
    """The global torch switches of ``cfg``'s training on ``device`` (see the module docstring).

    TF32 only in the fast profile on CUDA; deterministic algorithms as
    ``train.deterministic``; the cuDNN benchmark search where algorithms need
    not be deterministic, on CUDA.
    """
    cuda = device.type == "cuda"
    deterministic = bool(cfg.train.deterministic)
    return BackendFlags(
        tf32=cfg.train.profile == "fast" and cuda,
        benchmark=cuda and not deterministic,
        deterministic=deterministic,
    )


def apply_profile(cfg: Config, device: torch.device) -> Config:
    """The config with the settings of ``cfg.train.profile`` filled in for ``device``.

    ``exact`` returns ``cfg`` unchanged; ``fast`` returns a new config (see the
    module docstring for what it changes).
    """
    if cfg.train.profile != "fast":
        return cfg
    data = cfg.to_dict()
    train = data["train"]
    if device.type == "cuda" and train["amp"] == "none":
        train["amp"] = "bf16"
    train["channels_last"] = True
    train["deterministic"] = False
    data["data"]["num_workers"] = max(int(data["data"]["num_workers"]), fast_workers())
    return config_from_dict(data)


def defers_sync(cfg: Config) -> bool:
    """Whether the loss check is read only every ``train.log_every`` iterations."""
    return cfg.train.profile == "fast"
