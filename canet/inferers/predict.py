"""Whole-volume prediction with a segmentation network: probabilities, TTA, masks.

:func:`predict_volume` turns a network's logits into probabilities (sigmoid for
one output channel, softmax over the channels otherwise), averages them over
sliding windows (:func:`canet.inferers.sliding_window.sliding_window_inference`)
and optionally over the 8 flips of the three spatial axes, thresholds at 0.5
(binary) or takes the arg-max (multi-class), and by default keeps the largest
connected component (per class for multi-class). How it does so is one
:class:`~canet.inferers.settings.InferenceSettings` object.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from canet.device import inference_flags
from canet.errors import CanetError, DataError
from canet.inferers.postprocess import largest_component_per_class, largest_connected_component
from canet.inferers.settings import InferenceSettings
from canet.inferers.sliding_window import Predictor, sliding_window_inference

__all__ = ["FLIPS", "is_channels_last", "model_device", "predict_volume", "probability_predictor", "seg_logits", "with_flip_tta"]

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


def is_channels_last(model: nn.Module) -> bool:
    """Whether ``model``'s 5-D weights are stored in ``channels_last_3d`` format.

    Decided by the first 5-D parameter whose layout tells the two formats
    apart. A weight with one input channel (``C_out x 1 x k x k x k``, the first
    convolution of a one-channel network) or a ``1 x 1 x 1`` kernel has the same
    strides in both, so it cannot say, and is skipped. A model none of whose
    weights can tell (or without 5-D weights) counts as channels_last: putting it
    into that format would change nothing.
    """
    for param in model.parameters():
        if param.dim() != 5:
            continue
        standard = param.is_contiguous()
        last = param.is_contiguous(memory_format=torch.channels_last_3d)
        if standard != last:
            return last
    return True


def probability_predictor(
    model: nn.Module, channels_last: bool = False, autocast: torch.dtype | None = None, decision: str = "probability"
) -> Predictor:
    """Wrap ``model`` so that it maps windows to probabilities.

    One output channel gives ``sigmoid(logits)`` (foreground probability), or
    ``relu(logits)`` with ``decision="relu"`` (the authors' CA-Net test rule);
    several give ``softmax(logits, dim=1)``. With ``channels_last`` the windows
    are handed to the model in ``channels_last_3d`` memory format. With
    ``autocast`` (e.g. ``torch.bfloat16``) the model runs under
    ``torch.autocast`` of the windows' device and its logits are turned back
    into float32 before the probabilities are taken.
    """

    def predict(windows: Tensor) -> Tensor:
        if channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        if autocast is None:
            logits = seg_logits(model(windows))
        else:
            with torch.autocast(device_type=windows.device.type, dtype=autocast):
                logits = seg_logits(model(windows))
            logits = logits.float()
        if logits.shape[1] == 1:
            return torch.relu(logits) if decision == "relu" else torch.sigmoid(logits)
        if decision == "relu":
            raise CanetError(f"decision 'relu' needs a one-channel network; this one has {logits.shape[1]} channels")
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
    settings: InferenceSettings | None = None,
    **changes: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment one volume with ``model``.

    Args:
        model: network mapping ``N x C x px x py x pz`` to logits (a tensor or a
            ``SegOutput``-like tuple whose ``seg``/first item are the logits).
            It runs in eval mode; its previous mode is restored afterwards.
        image: ``X x Y x Z`` (one channel) or ``C x X x Y x Z`` float array,
            already normalised as in training.
        patch_size: window size ``(px, py, pz)``.
        settings: how to predict (:class:`~canet.inferers.settings.InferenceSettings`;
            default: its defaults: fast mode, no TTA, the largest connected
            component kept (``lcc`` None counts as on here), ``device="auto"``
            (the model is moved there; None keeps the model's device), fp32).
        changes: fields of ``settings`` to change for this call, e.g.
            ``mode="reference", lcc=False``.

    Returns:
        ``(mask, probabilities)``: ``mask`` is ``X x Y x Z`` uint8 (0/1 or class
        labels); ``probabilities`` is ``X x Y x Z`` float32 (foreground) for a
        one-channel model (with ``decision="relu"``: the window average of
        ``max(logit, 0)``), ``K x X x Y x Z`` float32 otherwise, on the CPU.

    Raises:
        CanetError: a bad image shape or setting, a device that does not exist,
            or ``amp="bf16"`` on a device that cannot run it.
        DataError: the image holds NaN or infinite voxels (they would make the
            whole prediction background).

    A model already in ``channels_last_3d`` format (as the fast training
    profile keeps it) stays so; one in the standard format that runs in
    ``channels_last_3d`` is put back into the standard format afterwards. The
    global torch switches are those of :func:`canet.device.inference_flags`
    during the call (with ``amp="none"``: no TF32, no cuDNN benchmark search)
    and the caller's again afterwards.
    """
    s = InferenceSettings.make(settings, **changes)
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise CanetError(f"image must be X x Y x Z or C x X x Y x Z, got shape {tuple(np.shape(image))}")
    finite = np.isfinite(arr)
    if not finite.all():  # one NaN makes every window's output NaN: an empty mask, said nowhere
        bad = int(arr.size - np.count_nonzero(finite))
        raise DataError(
            f"image holds {bad} NaN or infinite voxel(s); replace them first "
            "(canet.data.fill_nonfinite sets them to the scan's smallest finite value)"
        )
    run_device = s.run_device(model_device(model))
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    if model_device(model) != run_device:
        model.to(run_device)
    use_channels_last = (s.mode == "fast") if s.channels_last is None else s.channels_last
    restore_format = use_channels_last and not is_channels_last(model)
    if restore_format:
        model.to(memory_format=torch.channels_last_3d)
    predictor = probability_predictor(
        model, channels_last=use_channels_last, autocast=s.autocast_dtype(), decision=s.decision
    )
    if s.tta:
        predictor = with_flip_tta(predictor)
    was_training = model.training
    model.eval()
    try:
        # fp32 inference is true fp32 (no TF32), whatever switches the process had before.
        with inference_flags(s.amp, run_device).using(), torch.no_grad():
            probs = sliding_window_inference(
                tensor,
                predictor,
                patch_size,
                mode=s.mode,
                overlap=s.overlap,
                weighting=s.weighting,
                sw_batch_size=s.sw_batch_size,
                device=run_device,
                sum_device="cpu" if s.sums_on_cpu else None,
            )[0]
    finally:
        model.train(was_training)
        if restore_format:
            model.to(memory_format=torch.contiguous_format)
    probs_np = probs.numpy().astype(np.float32, copy=False)
    lcc = True if s.lcc is None else s.lcc
    if probs_np.shape[0] == 1:
        mask = (probs_np[0] > s.threshold).astype(np.uint8)
        if lcc:
            mask = largest_connected_component(mask)
        return mask, probs_np[0]
    labels = np.argmax(probs_np, axis=0).astype(np.uint8)
    if lcc:
        labels = largest_component_per_class(labels, probs_np.shape[0])
    return labels, probs_np
