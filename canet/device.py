"""Choosing the torch device: ``auto`` means CUDA where it is available, else the CPU."""

from __future__ import annotations

import torch

from canet.errors import ConfigError


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """The device ``name`` names: ``auto`` -> CUDA if available else CPU.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        key: how the setting is called in error messages (``train.device``, ``--device``).

    Raises:
        ConfigError: ``name`` is not a device, or names CUDA where CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key} must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} is {name!r} but CUDA is not available")
    return device
