"""Training profiles: the paper's exact settings, or the fast GPU settings.

``train.profile: exact`` (the default) changes nothing: fp32, deterministic
algorithms, a finiteness check of every loss right after it is computed.

``train.profile: fast`` (``canet train --fast``) turns on, where they apply:

- ``train.amp: bf16`` on CUDA (the CPU keeps fp32: bf16 autocast made the whole
  Trans-V step slower on this project's CPU, see docs/RESULTS.md);
- ``train.channels_last: true`` (the ``channels_last_3d`` memory format);
- ``train.deterministic: false``, hence cuDNN benchmark on CUDA, and TF32
  matmuls for what autocast leaves in fp32;
- ``data.num_workers`` raised to :func:`fast_workers` (loader workers with
  pinned memory; the labeled patches' SDMs are computed in the workers);
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
"""

from __future__ import annotations

import os

import torch

from canet.training.config import Config, config_from_dict

# Most loader workers the fast profile asks for; the loader's batches do not
# depend on the number of workers, so this changes speed only.
MAX_FAST_WORKERS = 8


def fast_workers(cpu_count: int | None = None) -> int:
    """Loader workers for the fast profile: the CPUs less two, between 2 and 8."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 2)
    return max(2, min(MAX_FAST_WORKERS, cpus - 2))


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
