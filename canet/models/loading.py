"""Networks from checkpoint files: rebuild the generator a canet checkpoint describes.

:mod:`canet.checkpoint` reads and writes checkpoint files and knows nothing of
the networks; this module, beside the model registry, turns a checkpoint's
``"model"`` spec and ``"generator"`` weights back into a network. The import
arrows run ``canet.models -> canet.checkpoint``.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from canet.checkpoint import load_checkpoint
from canet.errors import CheckpointError
from canet.models.registry import create_model


def build_generator(payload: dict[str, Any]) -> nn.Module:
    """Rebuild the generator of a loaded checkpoint dict (train mode, on the CPU).

    Raises:
        CheckpointError: the weights do not fit the model the checkpoint names.
        CanetError: the checkpoint names a model or arguments this canet does not know.
    """
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
    """The generator stored in the canet checkpoint ``path``, in eval mode on ``map_location``.

    Raises:
        CheckpointError: see :func:`canet.checkpoint.load_checkpoint` and :func:`build_generator`.
    """
    model = build_generator(load_checkpoint(path, map_location=map_location))
    return model.to(map_location).eval()
