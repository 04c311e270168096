"""The files of a run folder that describe the run: ``config.yaml`` and ``environment.json``.

``config.yaml`` is the resolved config (every key written out, see
:func:`canet.training.config.save_config`); ``environment.json`` records the
package versions, device, git commit and host of the process that trained, with
the records of earlier sessions of a resumed run under ``"previous"``.
The loop's other files (``metrics.csv``, TensorBoard events) are written by
:mod:`canet.training.run_log`, the checkpoints by :mod:`canet.training.state`.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import canet
from canet.errors import ConfigError
from canet.io import atomic_write_text, make_folder
from canet.training.config import Config, load_config, save_config
from canet.training.distributed import DistInfo

CONFIG_FILE = "config.yaml"
ENVIRONMENT_FILE = "environment.json"


def environment_info(device: torch.device, dist_info: DistInfo) -> dict[str, Any]:
    """Package versions, device, git commit and host of this run (for ``environment.json``)."""
    import scipy

    info: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "canet": canet.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "world_size": dist_info.world_size,
        "argv": list(sys.argv),
        "git_commit": None,
        "git_dirty": None,
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    repo = Path(canet.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=repo, capture_output=True, text=True, timeout=10,
            )
            info["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def write_run_files(
    run_dir: Path,
    cfg: Config,
    device: torch.device,
    dist_info: DistInfo,
    start_iteration: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``config.yaml`` and ``environment.json`` into ``run_dir`` (created if missing).

    ``environment.json`` gets ``start_iteration`` and the keys of ``extra``
    (the trainer's: ``batch``, the rows per process and per iteration, and
    ``backend_flags``, the torch switches of its profile); the record an earlier
    session left there moves, with its own history, into the list ``"previous"``.
    """
    make_folder(run_dir)
    save_config(cfg, run_dir / CONFIG_FILE)
    env_path = run_dir / ENVIRONMENT_FILE
    env = environment_info(device, dist_info)
    env["start_iteration"] = start_iteration
    env.update(extra or {})
    history: list[Any] = []
    if env_path.is_file():
        try:
            old = json.loads(env_path.read_text(encoding="utf-8"))
            history = [*old.pop("previous", []), old]
        except (OSError, json.JSONDecodeError):
            history = []
    if history:
        env["previous"] = history
    atomic_write_text(env_path, json.dumps(env, indent=2) + "\n")


def load_run_config(run_dir: str | os.PathLike[str]) -> Config:
    """The resolved config saved in a run folder.

    Raises:
        ConfigError: the folder has no ``config.yaml``.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    return load_config(path)
