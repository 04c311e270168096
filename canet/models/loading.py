"""Networks from checkpoint files: rebuild the generator a canet checkpoint describes.

:mod:`canet.checkpoint` reads and writes checkpoint files and knows nothing of
the networks; this module, beside the model registry, turns a checkpoint's
``"model"`` spec and ``"generator"`` weights back into a network. The import
arrows run ``canet.models -> canet.checkpoint``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
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
    weights = payload["generator"]
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # a tensor of another shape (the recorded kwargs are not the weights')
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), type(exc).__name__)
        raise CheckpointError(
            f"{source or 'the checkpoint'}: weights do not fit model {spec['name']!r} with its recorded "
            f"arguments ({first})"
        ) from None
    if missing or unexpected:
        first = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"{source or 'the checkpoint'}: weights do not fit model {spec['name']!r} with its recorded "
            f"arguments ({len(missing)} missing keys, {len(unexpected)} unexpected keys; {first})"
        )
    bad = nonfinite_tensors(weights)
    if bad:
        raise CheckpointError(
            f"{source or 'the checkpoint'}: {len(bad)} weight tensor(s) hold NaN or infinite values "
            f"(first {bad[0]!r}); the training that wrote it diverged, so it would segment nothing"
        )
    return model


def nonfinite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Keys of the floating-point tensors in ``state`` that hold NaN or infinite values."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_model(path: str | os.PathLike[str], map_location: str = "cpu") -> nn.Module:
    """The generator stored in the canet checkpoint ``path``, in eval mode on ``map_location``.

    Raises:
        CheckpointError: see :func:`canet.checkpoint.load_checkpoint` and :func:`build_generator`.
    """
    model = build_generator(load_checkpoint(path, map_location=map_location), source=path)
    return model.to(map_location).eval()
