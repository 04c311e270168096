"""Trans-V, CA-Net's generator: the V-Net with a transformer at its bottleneck."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from canet.models.common import DOWNSAMPLE_FACTOR
from canet.models.registry import register_model
from canet.models.transformer import TransformerBottleneck
from canet.models.vnet import VNet
from canet.patch_size import check_patch_size


class TransVNet(VNet):
    """V-Net whose bottleneck passes a 12-block transformer (CA-Net's Trans-V).

    Args:
        in_channels, num_classes, n_filters, dropout: as for :class:`VNet`.
        patch_size: training patch ``(X, Y, Z)``, each side a multiple of 16;
            the position embedding holds one vector per bottleneck voxel of
            that patch (``(X/16) * (Y/16) * (Z/16)`` tokens, 245 at 112x112x80).
            Inputs of another size (sides multiples of 16) use an interpolated
            embedding.
        transformer: ``False`` leaves the transformer out (then the network is
            the plain V-Net and ``patch_size`` is unused).

    Input ``B x in_channels x X x Y x Z``; output :class:`SegOutput` with
    ``B x out_channels(num_classes) x X x Y x Z`` tensors. At the paper's
    settings it has 24,491,330 parameters, exactly the original network's.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        n_filters: int = 16,
        dropout: float = 0.5,
        patch_size: Sequence[int] = (112, 112, 80),
        transformer: bool = True,
    ) -> None:
        super().__init__(in_channels, num_classes, n_filters, dropout)
        self.patch_size = check_patch_size(patch_size, multiple=DOWNSAMPLE_FACTOR)
        self.transformer: TransformerBottleneck | None = None
        if transformer:
            grid = tuple(s // DOWNSAMPLE_FACTOR for s in self.patch_size)
            self.transformer = TransformerBottleneck(16 * n_filters, grid)  # type: ignore[arg-type]

    def bottleneck(self, x5: Tensor) -> Tensor:
        """Pass the bottleneck map through the transformer (if any)."""
        return x5 if self.transformer is None else self.transformer(x5)


@register_model("canet")
def canet(
    in_channels: int = 1,
    num_classes: int = 2,
    n_filters: int = 16,
    dropout: float = 0.5,
    patch_size: Sequence[int] = (112, 112, 80),
    transformer: bool = True,
) -> TransVNet:
    """CA-Net's Trans-V generator (24,491,330 parameters at the paper's settings)."""
    return TransVNet(
        in_channels=in_channels,
        num_classes=num_classes,
        n_filters=n_filters,
        dropout=dropout,
        patch_size=patch_size,
        transformer=transformer,
    )
