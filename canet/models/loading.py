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
from canet.models.dam import DAM
from canet.models.registry import create_model


def build_generator(payload: dict[str, Any], source: str | os.PathLike[str] | None = None) -> nn.Module:
    """Rebuild the generator of a loaded checkpoint dict (train mode, on the CPU).

    ``source`` (the file it came from) names the checkpoint in error messages.

    Raises:
        CheckpointError: the checkpoint's model is a discriminator, not a segmentation
            network, or the weights do not fit the model the checkpoint names.
        CanetError: the checkpoint names a model or arguments this canet does not know.
    """
    spec = payload["model"]
    model = create_model(spec["name"], **spec["kwargs"])
    if isinstance(model, DAM):
        raise CheckpointError(
            f"{source or 'the checkpoint'} holds the discriminator {spec['name']!r}, not a segmentation network"
        )
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
    model = build_generator(load_checkpoint(path, map_location=map_location), source=path)
    return model.to(map_location).eval()
