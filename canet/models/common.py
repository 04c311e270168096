"""Building blocks shared by the networks: output type, channel rule, conv layers, checks."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from canet.errors import CanetError, ConfigError

#: Every V-Net side is halved four times, so input sides must be multiples of this.
DOWNSAMPLE_FACTOR = 16


class SegOutput(NamedTuple):
    """What a generator returns.

    Attributes:
        seg: ``B x C x X x Y x Z`` segmentation logits (sigmoid for ``C == 1``,
            softmax over ``C`` otherwise).
        sdf: ``B x C x X x Y x Z`` signed-distance estimate in ``[-1, 1]`` (tanh,
            float32 even under autocast).
    """

    seg: Tensor
    sdf: Tensor


def out_channels(num_classes: int) -> int:
    """Number of output channels for ``num_classes`` classes (background included).

    Binary tasks (``num_classes == 2``) use one sigmoid channel, as the paper does;
    ``num_classes > 2`` uses ``num_classes`` softmax channels.

    Raises:
        ConfigError: ``num_classes`` is not an integer >= 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return 1 if num_classes == 2 else num_classes


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_probability(name: str, value: object) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1)``, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_volume_input(x: Tensor, channels: int, name: str = "input") -> None:
    """Check a generator input: ``B x channels x X x Y x Z`` with sides multiples of 16.

    Raises:
        CanetError: wrong rank, channel count, or a side that is not a positive
            multiple of 16 (the message names the shape).
    """
    shape = tuple(x.shape)
    if x.dim() != 5:
        raise CanetError(f"{name} must be B x C x X x Y x Z (5-D), got shape {shape}")
    if shape[1] != channels:
        raise CanetError(f"{name} must have {channels} channel(s), got shape {shape}")
    if any(s < DOWNSAMPLE_FACTOR or s % DOWNSAMPLE_FACTOR for s in shape[2:]):
        raise CanetError(
            f"{name} spatial sides must be positive multiples of {DOWNSAMPLE_FACTOR}, "
            f"got shape {shape}"
        )


def same_memory_format(x: Tensor, like: Tensor) -> Tensor:
    """Return ``x`` in the memory format of ``like`` (channels_last_3d or contiguous)."""
    if like.is_contiguous(memory_format=torch.channels_last_3d) and not like.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x.contiguous()


class ConvBNReLU(nn.Module):
    """``Conv3d -> BatchNorm3d -> ReLU``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: cubic kernel side (3 keeps the size with padding 1, 2 with
            ``stride=2`` halves it).
        stride: convolution stride.
        bias: whether the convolution has a bias (the V-Net convs do, the
            transformer's fold-back conv does not).

    Shapes: ``B x in x X x Y x Z -> B x out x X' x Y' x Z'``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class UpBNReLU(nn.Module):
    """``ConvTranspose3d(k=2, s=2) -> BatchNorm3d -> ReLU``: doubles every side.

    Shapes: ``B x in x X x Y x Z -> B x out x 2X x 2Y x 2Z``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def conv_stage(in_channels: int, out_channels: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` 3x3x3 :class:`ConvBNReLU` layers; only the first changes the channels."""
    layers = [
        ConvBNReLU(in_channels if i == 0 else out_channels, out_channels) for i in range(n_layers)
    ]
    return nn.Sequential(*layers)
