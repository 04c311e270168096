"""canet checkpoint files: saving atomically, loading safely, rebuilding the generator.

A canet checkpoint is a ``dict`` saved with ``torch.save``::

    {
        "format": "canet-checkpoint",
        "version": 1,
        "created_by": "canet.training.trainer.Trainer",  # class or command that wrote it
        "model": {"name": "canet", "kwargs": {...}},    # for create_model
        "generator": state_dict,
        "config": {...} or None,                         # resolved run config
        ...                                              # training state (optional)
    }

Only types that ``torch.load(..., weights_only=True)`` accepts may be stored:
tensors, dicts, lists, tuples, str, int, float, bool, None.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from canet.errors import CheckpointError
from canet.io import atomic_path

FORMAT = "canet-checkpoint"
VERSION = 1


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The ``{"name", "kwargs"}`` spec of a model made by ``create_model``."""
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    module = getattr(module, "_orig_mod", module)  # unwrap torch.compile
    spec = getattr(module, "canet_spec", None)
    if spec is None:
        raise ValueError("model was not made by canet.create_model; its spec is unknown")
    return {"name": spec["name"], "kwargs": dict(spec["kwargs"])}


def make_checkpoint(
    model: nn.Module, created_by: str, config: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Assemble a checkpoint dict for ``model`` (a ``create_model`` product)."""
    module = model.module if hasattr(model, "module") else model
    module = getattr(module, "_orig_mod", module)
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_by": created_by,
        "model": model_spec(model),
        "generator": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "config": config,
        **extra,
    }


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read a canet checkpoint with ``weights_only=True`` and check its format.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a canet checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {p}: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and any(str(k).startswith("block_one") for k in payload):
            hint = " (it looks like an original CA-Net state dict: run `canet import-checkpoint` first)"
        raise CheckpointError(f"{p} is not a canet checkpoint{hint}")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{p} has checkpoint version {payload.get('version')!r}, this canet reads {VERSION}"
        )
    return payload


def build_generator(payload: dict[str, Any]) -> nn.Module:
    """Rebuild the generator of a loaded checkpoint dict (train mode, CPU)."""
    from canet.models import create_model

    spec = payload["model"]
    model = create_model(spec["name"], **spec["kwargs"])
    missing, unexpected = model.load_state_dict(payload["generator"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint weights do not fit model {spec['name']!r}: "
            f"{len(missing)} missing keys, {len(unexpected)} unexpected keys"
        )
    return model


def load_model(path: str | os.PathLike[str], map_location: str = "cpu") -> nn.Module:
    """Return the generator stored in a canet checkpoint, in eval mode."""
    model = build_generator(load_checkpoint(path, map_location=map_location))
    return model.to(map_location).eval()
