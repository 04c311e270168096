"""Sliding-window inference over whole volumes, in two modes.

``reference`` is the protocol of the LA literature (UA-MT, SASSNet, DTC, MC-Net,
CA-Net): windows every ``18`` voxels in x and y and every ``4`` in z, the number
of windows per axis ``ceil((size - patch) / stride) + 1`` with the last window
clamped so that it ends at the border, every window weighted equally (a stride
larger than the patch is clamped to the patch, so that no voxel is left
without a window); a volume
smaller than the patch along an axis is padded with zeros (split as
``pad // 2`` before and the rest after) and the result cropped back.

``fast`` uses a stride of ``floor(patch * (1 - overlap))`` (at least 1) to choose
the number of windows per axis the same way, then spreads the windows evenly
between the two borders; each window's output is weighted by a Gaussian (sigma
``patch / 8`` per axis, peak 1) or constantly, and ``sw_batch_size`` windows go
through the predictor in one call. Padding is the same as in ``reference``.

Both modes return the weighted average of what the predictor returns for each
voxel. The padded image and the running sums live where the predictor runs, so
a GPU predictor gets its windows without a copy and hands its outputs on
without a synchronisation; the average comes back to the input's device once,
at the end. ``sum_device="cpu"`` keeps image and sums in CPU memory instead
(GPU memory then holds one batch of windows; each batch is copied back).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from canet.errors import CanetError
from canet.patch_size import check_patch_size

REFERENCE_STRIDES: tuple[int, int, int] = (18, 18, 4)
MODES: tuple[str, ...] = ("reference", "fast")
WEIGHTINGS: tuple[str, ...] = ("gaussian", "constant")

Predictor = Callable[[Tensor], Tensor]

__all__ = [
    "MODES",
    "REFERENCE_STRIDES",
    "WEIGHTINGS",
    "check_mode_and_weighting",
    "check_patch_size",
    "gaussian_weights",
    "pad_amounts",
    "sliding_window_inference",
    "window_starts",
]


def check_mode_and_weighting(mode: str, weighting: str = "gaussian") -> None:
    """Raise a one-line :class:`CanetError` for an unknown mode or weighting."""
    if mode not in MODES:
        raise CanetError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if weighting not in WEIGHTINGS:
        raise CanetError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def pad_amounts(size: int, patch: int) -> tuple[int, int]:
    """Zeros added ``(before, after)`` so that an axis of ``size`` holds one ``patch``."""
    pad = max(patch - size, 0)
    return pad // 2, pad - pad // 2


def window_starts(
    size: int,
    patch: int,
    mode: str = "fast",
    stride: int | None = None,
    overlap: float = 0.5,
) -> list[int]:
    """Start indices of the windows along one axis of length ``size >= patch``.

    Args:
        size: axis length (after padding, so at least ``patch``).
        patch: window length.
        mode: ``"reference"`` (fixed ``stride``, last window clamped to the
            border) or ``"fast"`` (stride from ``overlap``, windows evenly spread).
        stride: the reference stride (required in reference mode); a stride
            larger than ``patch`` is clamped to ``patch`` (windows may touch but
            never leave a gap).
        overlap: fraction of a window shared with its neighbour in fast mode, in [0, 1).
    """
    if size < patch:
        raise ValueError(f"axis of length {size} is shorter than the patch {patch}; pad it first")
    span = size - patch
    if mode == "reference":
        if stride is None or stride < 1:
            raise CanetError(f"reference stride must be a positive integer, got {stride}")
        stride = min(int(stride), patch)
        count = math.ceil(span / stride) + 1
        return [min(i * stride, span) for i in range(count)]
    if mode != "fast":
        raise CanetError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 0.0 <= overlap < 1.0:
        raise CanetError(f"overlap must be in [0, 1), got {overlap}")
    step = max(1, int(math.floor(patch * (1.0 - overlap) + 1e-9)))
    count = math.ceil(span / step) + 1
    if count == 1:
        return [0]
    spacing = span / (count - 1)
    return [int(round(i * spacing)) for i in range(count)]


def gaussian_weights(
    patch_size: Sequence[int], sigma_scale: float = 0.125, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Separable Gaussian importance map of shape ``patch_size``, peak 1 at the centre.

    ``sigma = patch * sigma_scale`` per axis (``patch / 8`` by default); values are
    floored at 1e-6 so that every voxel of a window keeps a positive weight.
    """
    weights = torch.ones((), dtype=torch.float64)
    for axis, p in enumerate(patch_size):
        coords = torch.arange(p, dtype=torch.float64) - (p - 1) / 2.0
        sigma = max(p * sigma_scale, 1e-3)
        g = torch.exp(-0.5 * (coords / sigma) ** 2)
        shape = [1] * len(patch_size)
        shape[axis] = p
        weights = weights * g.view(shape)
    weights = weights / weights.max()
    return weights.clamp_min(1e-6).to(dtype)


def sliding_window_inference(
    image: Tensor,
    predictor: Predictor,
    patch_size: Sequence[int],
    mode: str = "fast",
    overlap: float = 0.5,
    weighting: str = "gaussian",
    sw_batch_size: int = 4,
    strides: Sequence[int] = REFERENCE_STRIDES,
    device: torch.device | str | None = None,
    sum_device: torch.device | str | None = None,
) -> Tensor:
    """Average ``predictor`` over windows that cover the whole ``image``.

    Args:
        image: ``B x C x X x Y x Z`` tensor; the result comes back to its device.
        predictor: maps a ``(n*B) x C x px x py x pz`` batch of windows to a
            ``(n*B) x K x px x py x pz`` tensor (e.g. probabilities).
        patch_size: window size ``(px, py, pz)``.
        mode: ``"fast"`` (default) or ``"reference"`` (see the module docstring).
        overlap: fast mode only, in [0, 1); default 0.5.
        weighting: fast mode only, ``"gaussian"`` (default) or ``"constant"``;
            reference mode always weights windows equally.
        sw_batch_size: windows per predictor call (default 4). Batching does
            not change the result of a model in eval mode.
        strides: reference-mode strides per axis, default ``(18, 18, 4)``; each
            is clamped to the patch along its axis.
        device: where the predictor runs. Default: the image's device.
        sum_device: where the padded image and the running sums live.
            Default: ``device`` (windows are cut there, outputs summed there, no
            copy per batch); ``"cpu"`` keeps them in CPU memory and copies each
            batch of windows to ``device`` and its outputs back.

    Returns:
        ``B x K x X x Y x Z`` float32 tensor on ``image.device``.
    """
    if not isinstance(image, Tensor) or image.dim() != 5:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise CanetError(f"image must be a B x C x X x Y x Z tensor, got shape {shape}")
    patch = check_patch_size(patch_size)
    check_mode_and_weighting(mode, weighting)
    if not 0.0 <= overlap < 1.0:
        raise CanetError(f"overlap must be in [0, 1), got {overlap}")
    if int(sw_batch_size) != sw_batch_size or sw_batch_size < 1:
        raise CanetError(f"sw_batch_size must be a positive integer, got {sw_batch_size}")
    stride_list = [int(s) for s in strides]
    if len(stride_list) != 3 or any(s < 1 for s in stride_list):
        raise CanetError(f"strides must be three positive integers, got {list(strides)}")

    home = image.device
    run_device = torch.device(device) if device is not None else home
    acc = torch.device(sum_device) if sum_device is not None else run_device
    image = image.to(acc)
    batch = image.shape[0]
    size = tuple(int(s) for s in image.shape[2:])
    pads = [pad_amounts(s, p) for s, p in zip(size, patch)]
    if any(a or b for a, b in pads):
        flat = [v for a, b in reversed(pads) for v in (a, b)]
        image = F.pad(image, flat, mode="constant", value=0.0)
    padded = tuple(int(s) for s in image.shape[2:])

    if mode == "reference":
        starts = [
            window_starts(s, p, "reference", stride=st)
            for s, p, st in zip(padded, patch, stride_list)
        ]
        weight = None
    else:
        starts = [window_starts(s, p, "fast", overlap=overlap) for s, p in zip(padded, patch)]
        weight = gaussian_weights(patch).to(acc) if weighting == "gaussian" else None
    corners = [(x, y, z) for x in starts[0] for y in starts[1] for z in starts[2]]

    total: Tensor | None = None
    norm = torch.zeros((1, 1, *padded), dtype=torch.float32, device=acc)
    with torch.no_grad():
        for first in range(0, len(corners), sw_batch_size):
            group = corners[first : first + sw_batch_size]
            windows = torch.cat(
                [
                    image[:, :, x : x + patch[0], y : y + patch[1], z : z + patch[2]]
                    for x, y, z in group
                ],
                dim=0,
            ).to(run_device)
            out = predictor(windows)
            expected = (len(group) * batch, patch[0], patch[1], patch[2])
            if out.dim() != 5 or (out.shape[0], *out.shape[2:]) != expected:
                raise ValueError(
                    f"predictor returned shape {tuple(out.shape)} for windows of shape "
                    f"{tuple(windows.shape)}; expected N x K x {patch[0]} x {patch[1]} x {patch[2]}"
                )
            out = out.to(device=acc, dtype=torch.float32)
            if total is None:
                total = torch.zeros((batch, out.shape[1], *padded), dtype=torch.float32, device=acc)
            for i, (x, y, z) in enumerate(group):
                piece = out[i * batch : (i + 1) * batch]
                region = (slice(None), slice(None), slice(x, x + patch[0]), slice(y, y + patch[1]), slice(z, z + patch[2]))
                if weight is None:
                    total[region] += piece
                    norm[region] += 1.0
                else:
                    total[region] += piece * weight
                    norm[region] += weight
    assert total is not None  # at least one window always exists
    if not bool((norm > 0).all()):  # cannot happen with the window starts above; never silently NaN
        raise RuntimeError(f"{int((norm <= 0).sum())} voxels were covered by no window")
    result = total / norm
    if any(a or b for a, b in pads):
        result = result[
            :,
            :,
            pads[0][0] : pads[0][0] + size[0],
            pads[1][0] : pads[1][0] + size[1],
            pads[2][0] : pads[2][0] + size[2],
        ]
    return result.contiguous().to(home)
