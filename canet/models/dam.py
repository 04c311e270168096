"""DAM: CA-Net's discriminator with squeeze-and-excitation attention.

It scores an (SDF map, image) pair: is the map a ground-truth SDM ("labeled",
logit 1) or a prediction on an unlabeled image ("unlabeled", logit 0)?
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from canet.errors import CanetError
from canet.models.common import check_positive_int, check_probability
from canet.models.registry import register_model

#: Each of the four stride-2 convs halves the sides, so inputs need sides >= this.
MIN_SIDE = 16


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): gate = sigmoid(fc2(relu(fc1(mean over space)))).

    Args:
        channels: feature channels ``C``.
        reduction: ``fc1`` maps ``C -> C / reduction``, ``fc2`` maps back; no biases.

    Shapes: ``forward``: ``B x C x X x Y x Z -> same``; ``gate``: ``B x C -> B x C``.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def gate(self, pooled: Tensor) -> Tensor:
        """Per-channel weights in (0, 1) from spatially averaged features ``B x C``."""
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled))))

    def forward(self, x: Tensor) -> Tensor:
        g = self.gate(x.mean(dim=(2, 3, 4)))
        return x * g[:, :, None, None, None]


class DAM(nn.Module):
    """Discriminator on (SDF map, image) pairs, with an SE block before the classifier.

    A 4x4x4 stride-2 conv (``ndf`` channels) on the map and another on the image
    are summed; LeakyReLU(0.2) and Dropout3d(0.5); three more 4x4x4 stride-2
    convs to ``2*ndf``, ``4*ndf``, ``8*ndf`` channels, each with LeakyReLU(0.2)
    (dropout after the first two); the SE block (reduction 8) re-weights the
    channels; global average pooling; a linear layer to 2 logits
    (0 = "unlabeled", 1 = "labeled").

    Args:
        image_channels: channels of the image.
        map_channels: channels of the SDF map (the generator's output channels).
        ndf: channels of the first conv (64).
        se: include the SE block; ``se=False`` is SASSNet's discriminator.
        dropout: Dropout3d probability (0.5), training mode only.

    ``forward(sdf, image)``: ``B x map_channels x X x Y x Z`` and
    ``B x image_channels x X x Y x Z`` (every side >= 16) -> ``B x 2`` logits.
    Global average pooling equals the original fixed ``AvgPool3d((7, 7, 5))`` at
    a 112x112x80 patch and works at any size. Parameters at the defaults:
    11,085,826 (11,020,290 with ``se=False``).
    """

    def __init__(
        self,
        image_channels: int = 1,
        map_channels: int = 1,
        ndf: int = 64,
        se: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.image_channels = check_positive_int("image_channels", image_channels)
        self.map_channels = check_positive_int("map_channels", map_channels)
        check_positive_int("ndf", ndf)
        dropout = check_probability("dropout", dropout)
        self.map_conv = nn.Conv3d(map_channels, ndf, 4, stride=2, padding=1)
        self.image_conv = nn.Conv3d(image_channels, ndf, 4, stride=2, padding=1)
        self.down1 = nn.Conv3d(ndf, 2 * ndf, 4, stride=2, padding=1)
        self.down2 = nn.Conv3d(2 * ndf, 4 * ndf, 4, stride=2, padding=1)
        self.down3 = nn.Conv3d(4 * ndf, 8 * ndf, 4, stride=2, padding=1)
        self.se = SqueezeExcite(8 * ndf, reduction=8) if se else None
        self.classifier = nn.Linear(8 * ndf, 2)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()

    def _check(self, sdf: Tensor, image: Tensor) -> None:
        if sdf.dim() != 5 or image.dim() != 5:
            raise CanetError(
                f"DAM inputs must be 5-D B x C x X x Y x Z, got shapes "
                f"{tuple(sdf.shape)} and {tuple(image.shape)}"
            )
        if sdf.shape[0] != image.shape[0] or sdf.shape[2:] != image.shape[2:]:
            raise CanetError(
                f"DAM map and image must share batch and spatial size, got shapes "
                f"{tuple(sdf.shape)} and {tuple(image.shape)}"
            )
        if sdf.shape[1] != self.map_channels or image.shape[1] != self.image_channels:
            raise CanetError(
                f"DAM expects {self.map_channels} map and {self.image_channels} image "
                f"channel(s), got shapes {tuple(sdf.shape)} and {tuple(image.shape)}"
            )
        if min(sdf.shape[2:]) < MIN_SIDE:
            raise CanetError(f"DAM inputs need every side >= {MIN_SIDE}, got shape {tuple(sdf.shape)}")

    def forward(self, sdf: Tensor, image: Tensor) -> Tensor:
        self._check(sdf, image)
        x = self.dropout(self.act(self.map_conv(sdf) + self.image_conv(image)))
        x = self.dropout(self.act(self.down1(x)))
        x = self.dropout(self.act(self.down2(x)))
        x = self.act(self.down3(x))
        pooled = x.mean(dim=(2, 3, 4))  # B x 8*ndf
        if self.se is not None:
            # The SE gate is constant over space, so gating the map then averaging
            # equals averaging then gating; this avoids materializing the gated map.
            pooled = pooled * self.se.gate(pooled)
        return self.classifier(pooled)


@register_model("dam")
def dam(
    image_channels: int = 1,
    map_channels: int = 1,
    ndf: int = 64,
    se: bool = True,
    dropout: float = 0.5,
) -> DAM:
    """CA-Net's discriminator with attention (``se=False``: SASSNet's discriminator)."""
    return DAM(
        image_channels=image_channels, map_channels=map_channels, ndf=ndf, se=se, dropout=dropout
    )
