"""The V-Net used across semi-supervised LA papers (UA-MT, SASSNet, DTC, CA-Net).

Encoder: stages of 1, 2, 3, 3, 3 conv layers (3x3x3 conv + BN + ReLU) at
``n_filters * (1, 2, 4, 8, 16)`` channels, each stage but the last followed by a
2x2x2 stride-2 conv + BN + ReLU that doubles the channels. Decoder: a 2x2x2
stride-2 transposed conv + BN + ReLU halving the channels, added to the encoder
feature of the same scale, then stages of 3, 3, 2, 1 conv layers. Dropout3d on
the bottleneck and before the heads (training only). Two 1x1x1 heads: ``seg``
(logits) and ``sdf`` (tanh of a separate conv, in float32 even under autocast).
"""

from __future__ import annotations

from torch import Tensor, nn

from canet.models.common import (
    ConvBNReLU,
    SegOutput,
    UpBNReLU,
    check_positive_int,
    check_probability,
    check_volume_input,
    conv_stage,
    out_channels,
)
from canet.models.registry import register_model


class VNet(nn.Module):
    """V-Net with a segmentation head and a signed-distance (tanh) head.

    Args:
        in_channels: image channels (1 for LA MRI).
        num_classes: classes including background; 2 gives one sigmoid channel,
            more give ``num_classes`` softmax channels (see :func:`out_channels`).
        n_filters: channels of the first stage (16 in the paper).
        dropout: Dropout3d probability on the bottleneck and before the heads,
            applied in training mode only; 0 disables it.

    Input ``B x in_channels x X x Y x Z`` with every side a multiple of 16;
    output :class:`SegOutput` with ``seg`` and ``sdf`` of shape
    ``B x out_channels(num_classes) x X x Y x Z``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        n_filters: int = 16,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.num_classes = num_classes
        n_out = out_channels(num_classes)
        f = check_positive_int("n_filters", n_filters)
        p = check_probability("dropout", dropout)

        self.enc1 = conv_stage(in_channels, f, 1)
        self.down1 = _down(f, 2 * f)
        self.enc2 = conv_stage(2 * f, 2 * f, 2)
        self.down2 = _down(2 * f, 4 * f)
        self.enc3 = conv_stage(4 * f, 4 * f, 3)
        self.down3 = _down(4 * f, 8 * f)
        self.enc4 = conv_stage(8 * f, 8 * f, 3)
        self.down4 = _down(8 * f, 16 * f)
        self.enc5 = conv_stage(16 * f, 16 * f, 3)

        self.up4 = UpBNReLU(16 * f, 8 * f)
        self.dec4 = conv_stage(8 * f, 8 * f, 3)
        self.up3 = UpBNReLU(8 * f, 4 * f)
        self.dec3 = conv_stage(4 * f, 4 * f, 3)
        self.up2 = UpBNReLU(4 * f, 2 * f)
        self.dec2 = conv_stage(2 * f, 2 * f, 2)
        self.up1 = UpBNReLU(2 * f, f)
        self.dec1 = conv_stage(f, f, 1)

        self.head_seg = nn.Conv3d(f, n_out, 1)
        self.head_sdf = nn.Conv3d(f, n_out, 1)
        self.dropout = nn.Dropout3d(p) if p > 0 else nn.Identity()

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder features ``[x1, x2, x3, x4, x5]`` at scales 1, 1/2, 1/4, 1/8, 1/16.

        ``x5`` (``B x 16*n_filters x X/16 x Y/16 x Z/16``) has had the bottleneck dropout.
        """
        x1 = self.enc1(x)
        x2 = self.enc2(self.down1(x1))
        x3 = self.enc3(self.down2(x2))
        x4 = self.enc4(self.down3(x3))
        x5 = self.dropout(self.enc5(self.down4(x4)))
        return [x1, x2, x3, x4, x5]

    def bottleneck(self, x5: Tensor) -> Tensor:
        """Transform the bottleneck feature; the identity in the plain V-Net."""
        return x5

    def decode(self, feats: list[Tensor]) -> SegOutput:
        """Decoder and heads: ``feats`` as from :meth:`encode` (``x5`` already transformed)."""
        x1, x2, x3, x4, x5 = feats
        x = self.dec4(self.up4(x5) + x4)
        x = self.dec3(self.up3(x) + x3)
        x = self.dec2(self.up2(x) + x2)
        x = self.dec1(self.up1(x) + x1)
        x = self.dropout(x)
        # The tanh (and its backward) in float32 even under autocast, where bf16
        # would keep 8 significant bits of the SDF. A no-op without autocast.
        return SegOutput(seg=self.head_seg(x), sdf=self.head_sdf(x).float().tanh())

    def forward(self, x: Tensor) -> SegOutput:
        check_volume_input(x, self.in_channels)
        feats = self.encode(x)
        feats[4] = self.bottleneck(feats[4])
        return self.decode(feats)


def _down(in_channels: int, out_channels: int) -> ConvBNReLU:
    """2x2x2 stride-2 conv + BN + ReLU: halves every side."""
    return ConvBNReLU(in_channels, out_channels, kernel_size=2, stride=2)


@register_model("vnet")
def vnet(
    in_channels: int = 1, num_classes: int = 2, n_filters: int = 16, dropout: float = 0.5
) -> VNet:
    """The plain V-Net (9,448,866 parameters at the paper's settings)."""
    return VNet(in_channels=in_channels, num_classes=num_classes, n_filters=n_filters, dropout=dropout)
