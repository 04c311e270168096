"""Whole-volume prediction with a segmentation network: probabilities, TTA, masks.

:func:`predict_volume` turns a network's logits into probabilities (sigmoid for
one output channel, softmax over the channels otherwise), averages them over
sliding windows (:func:`canet.inferers.sliding_window.sliding_window_inference`)
and optionally over the 8 flips of the three spatial axes, thresholds at 0.5
(binary) or takes the arg-max (multi-class), and by default keeps the largest
connected component (per class for multi-class).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from canet.errors import CanetError
from canet.inferers.postprocess import largest_component_per_class, largest_connected_component
from canet.inferers.sliding_window import Predictor, sliding_window_inference

__all__ = ["FLIPS", "model_device", "predict_volume", "probability_predictor", "seg_logits", "with_flip_tta"]

# Every subset of the spatial dims of a B x C x X x Y x Z tensor (the first is no flip).
FLIPS: tuple[tuple[int, ...], ...] = tuple(
    dims for r in range(4) for dims in itertools.combinations((2, 3, 4), r)
)


def seg_logits(output: Any) -> Tensor:
    """The segmentation logits of a model output: ``output.seg``, ``output[0]`` or ``output``."""
    if isinstance(output, Tensor):
        return output
    seg = getattr(output, "seg", None)
    if isinstance(seg, Tensor):
        return seg
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find segmentation logits in a model output of type {type(output).__name__}")


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the first 5-D weight of ``model`` is stored in ``channels_last_3d`` format."""
    for param in model.parameters():
        if param.dim() == 5:
            return param.is_contiguous(memory_format=torch.channels_last_3d) and not param.is_contiguous()
    return False


def probability_predictor(model: nn.Module, channels_last: bool = False) -> Predictor:
    """Wrap ``model`` so that it maps windows to probabilities.

    One output channel gives ``sigmoid(logits)`` (foreground probability);
    several give ``softmax(logits, dim=1)``. With ``channels_last`` the windows
    are handed to the model in ``channels_last_3d`` memory format.
    """

    def predict(windows: Tensor) -> Tensor:
        if channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        logits = seg_logits(model(windows))
        if logits.shape[1] == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    return predict


def with_flip_tta(predictor: Predictor, flips: Sequence[tuple[int, ...]] = FLIPS) -> Predictor:
    """Average ``predictor`` over flipped copies of its input (flipped back after)."""

    def predict(windows: Tensor) -> Tensor:
        total: Tensor | None = None
        for dims in flips:
            x = torch.flip(windows, dims) if dims else windows
            y = predictor(x)
            y = torch.flip(y, dims) if dims else y
            total = y if total is None else total + y
        assert total is not None
        return total / len(flips)

    return predict


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def predict_volume(
    model: nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    mode: str = "fast",
    tta: bool = False,
    lcc: bool = True,
    device: torch.device | str | None = "cpu",
    overlap: float = 0.5,
    weighting: str = "gaussian",
    sw_batch_size: int = 4,
    threshold: float = 0.5,
    channels_last: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment one volume with ``model``.

    Args:
        model: network mapping ``N x C x px x py x pz`` to logits (a tensor or a
            ``SegOutput``-like tuple whose ``seg``/first item are the logits).
            It runs in eval mode; its previous mode is restored afterwards.
        image: ``X x Y x Z`` (one channel) or ``C x X x Y x Z`` float array,
            already normalised as in training.
        patch_size: window size ``(px, py, pz)``.
        mode: ``"fast"`` (default) or ``"reference"``.
        tta: also average over the 8 flips of the spatial axes (default off).
        lcc: keep the largest connected component (per class), default on.
        device: where the model runs (it is moved there); ``None`` keeps the
            model's device. The running sums stay on the CPU.
        overlap, weighting, sw_batch_size: fast-mode settings (see
            :func:`sliding_window_inference`).
        threshold: foreground threshold for one-channel models (default 0.5).
        channels_last: run the network in ``channels_last_3d`` memory format
            (same results, faster 3D convolutions). ``None`` (default) turns it
            on in fast mode and off in the reference mode; the model's memory
            format is restored afterwards.

    Returns:
        ``(mask, probabilities)``: ``mask`` is ``X x Y x Z`` uint8 (0/1 or class
        labels); ``probabilities`` is ``X x Y x Z`` float32 (foreground) for a
        one-channel model, ``K x X x Y x Z`` float32 otherwise.
    """
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise CanetError(f"image must be X x Y x Z or C x X x Y x Z, got shape {tuple(np.shape(image))}")
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    run_device = model_device(model) if device is None else torch.device(device)
    if model_device(model) != run_device:
        model.to(run_device)
    use_channels_last = (mode == "fast") if channels_last is None else channels_last
    restore_format = use_channels_last and not _is_channels_last(model)
    if restore_format:
        model.to(memory_format=torch.channels_last_3d)
    predictor = probability_predictor(model, channels_last=use_channels_last)
    if tta:
        predictor = with_flip_tta(predictor)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probs = sliding_window_inference(
                tensor,
                predictor,
                patch_size,
                mode=mode,
                overlap=overlap,
                weighting=weighting,
                sw_batch_size=sw_batch_size,
                device=run_device,
            )[0]
    finally:
        model.train(was_training)
        if restore_format:
            model.to(memory_format=torch.contiguous_format)
    probs_np = probs.numpy().astype(np.float32, copy=False)
    if probs_np.shape[0] == 1:
        mask = (probs_np[0] > threshold).astype(np.uint8)
        if lcc:
            mask = largest_connected_component(mask)
        return mask, probs_np[0]
    labels = np.argmax(probs_np, axis=0).astype(np.uint8)
    if lcc:
        labels = largest_component_per_class(labels, probs_np.shape[0])
    return labels, probs_np
