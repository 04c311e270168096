"""An independent re-statement of the original CA-Net generator and discriminator.

Written only from ``shared/reference/README.md`` and the two ``.tsv`` files, with
parameter names equal to the original keys (``nn.Sequential`` indices included),
so that a random ``state_dict()`` of :class:`OriginalGenerator` has exactly the
keys and shapes of ``canet_generator_state_dict.tsv``. It shares no code with
``canet.models``: attention is computed by hand (matmul, softmax), tokens are
made and folded with explicit permutes, and the discriminator pools with the
original fixed ``AvgPool3d`` window.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _conv_block(n_layers: int, c_in: int, c_out: int) -> nn.Sequential:
    ops: list[nn.Module] = []
    for i in range(n_layers):
        ops += [nn.Conv3d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.BatchNorm3d(c_out)]
        ops.append(nn.ReLU(inplace=True))
    return nn.Sequential(*ops)


class _Block(nn.Module):
    def __init__(self, n_layers: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = _conv_block(n_layers, c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _Resample(nn.Module):
    def __init__(self, c_in: int, c_out: int, up: bool) -> None:
        super().__init__()
        conv = nn.ConvTranspose3d if up else nn.Conv3d
        self.conv = nn.Sequential(conv(c_in, c_out, 2, stride=2), nn.BatchNorm3d(c_out), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _Embeddings(nn.Module):
    def __init__(self, n_tokens: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.patch_embeddings = nn.Conv3d(channels, hidden, 1)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_tokens, hidden))

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embeddings(x)  # B x hidden x gx x gy x gz
        b, c = x.shape[:2]
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, -1, c)  # (x, y, z) C order, z fastest
        return tokens + self.position_embeddings


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)  # B x H x N x d
        b, h, n, d = ctx.shape
        return self.out(ctx.permute(0, 2, 1, 3).reshape(b, n, h * d))


class _Ffn(nn.Module):
    def __init__(self, hidden: int, mlp: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp)
        self.fc2 = nn.Linear(mlp, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn = _Ffn(hidden, mlp)
        self.attn = _Attention(hidden, heads)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn(self.attention_norm(x)) + x
        return self.ffn(self.ffn_norm(x)) + x


class _Encoder(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp: int, depth: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList([_Layer(hidden, heads, mlp) for _ in range(depth)])
        self.encoder_norm = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layer:
            x = layer(x)
        return self.encoder_norm(x)


class _Detransformer(nn.Module):
    def __init__(self, hidden: int, channels: int) -> None:
        super().__init__()
        self.conv_more = nn.Sequential(
            nn.Conv3d(hidden, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels), nn.ReLU()
        )

    def forward(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        b, _, c = tokens.shape
        x = tokens.reshape(b, *grid, c).permute(0, 4, 1, 2, 3)  # same (x, y, z) order
        return self.conv_more(x)


class OriginalGenerator(nn.Module):
    """The original Trans-V: ``VNet(n_channels=1, n_classes=1, normalization='batchnorm', has_dropout=True)``.

    ``forward(x)`` returns ``(out_tanh, out_seg)`` as the original does; dropout
    layers are omitted because the comparison runs in eval mode. The token grid
    is ``grid`` (the original hard-codes 7 x 7 x 5); the position embedding has
    ``prod(grid)`` rows.
    """

    def __init__(
        self,
        grid: tuple[int, int, int] = (7, 7, 5),
        n_channels: int = 1,
        n_classes: int = 1,
        n_filters: int = 16,
    ) -> None:
        super().__init__()
        f = n_filters
        self.grid = grid
        self.block_one = _Block(1, n_channels, f)
        self.block_one_dw = _Resample(f, 2 * f, up=False)
        self.block_two = _Block(2, 2 * f, 2 * f)
        self.block_two_dw = _Resample(2 * f, 4 * f, up=False)
        self.block_three = _Block(3, 4 * f, 4 * f)
        self.block_three_dw = _Resample(4 * f, 8 * f, up=False)
        self.block_four = _Block(3, 8 * f, 8 * f)
        self.block_four_dw = _Resample(8 * f, 16 * f, up=False)
        self.block_five = _Block(3, 16 * f, 16 * f)
        self.embeddings = _Embeddings(grid[0] * grid[1] * grid[2], 16 * f, 168)
        self.transformer = _Encoder(168, 12, 3072, 12)
        self.detransformer = _Detransformer(168, 16 * f)
        self.block_five_up = _Resample(16 * f, 8 * f, up=True)
        self.block_six = _Block(3, 8 * f, 8 * f)
        self.block_six_up = _Resample(8 * f, 4 * f, up=True)
        self.block_seven = _Block(3, 4 * f, 4 * f)
        self.block_seven_up = _Resample(4 * f, 2 * f, up=True)
        self.block_eight = _Block(2, 2 * f, 2 * f)
        self.block_eight_up = _Resample(2 * f, f, up=True)
        self.block_nine = _Block(1, f, f)
        self.out_conv = nn.Conv3d(f, n_classes, 1)
        self.out_conv2 = nn.Conv3d(f, n_classes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1 = self.block_one(x)
        x2 = self.block_two(self.block_one_dw(x1))
        x3 = self.block_three(self.block_two_dw(x2))
        x4 = self.block_four(self.block_three_dw(x3))
        x5 = self.block_five(self.block_four_dw(x4))
        x5 = self.detransformer(self.transformer(self.embeddings(x5)), self.grid)
        x = self.block_six(self.block_five_up(x5) + x4)
        x = self.block_seven(self.block_six_up(x) + x3)
        x = self.block_eight(self.block_seven_up(x) + x2)
        x9 = self.block_nine(self.block_eight_up(x) + x1)
        return torch.tanh(self.out_conv(x9)), self.out_conv2(x9)


class OriginalDiscriminator(nn.Module):
    """The original discriminator (``num_classes=1``; its SE block has no weights)."""

    def __init__(self, num_classes: int = 1, ndf: int = 64, n_channel: int = 1) -> None:
        super().__init__()
        self.conv0 = nn.Conv3d(num_classes, ndf, 4, stride=2, padding=1)
        self.conv1 = nn.Conv3d(n_channel, ndf, 4, stride=2, padding=1)
        self.conv2 = nn.Conv3d(ndf, 2 * ndf, 4, stride=2, padding=1)
        self.conv3 = nn.Conv3d(2 * ndf, 4 * ndf, 4, stride=2, padding=1)
        self.conv4 = nn.Conv3d(4 * ndf, 8 * ndf, 4, stride=2, padding=1)
        self.classifier = nn.Linear(8 * ndf, 2)
        self.pool = nn.AvgPool3d((7, 7, 5))

    def forward(self, sdm: Tensor, image: Tensor) -> Tensor:
        act = nn.functional.leaky_relu
        x = act(self.conv0(sdm) + self.conv1(image), 0.2)
        x = act(self.conv2(x), 0.2)
        x = act(self.conv3(x), 0.2)
        x = act(self.conv4(x), 0.2)
        return self.classifier(self.pool(x).flatten(1))


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter and BatchNorm buffer with seeded random values, in place.

    Weights get ``N(0, 1/fan_in)``-scaled noise (so activations stay O(1) through
    the depth), biases and BN shifts small noise, BN scales and running
    variances values in [0.5, 1.5], running means small noise.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                t.fill_(7)
                continue
            leaf = name.rsplit(".", 1)[1]
            if leaf == "running_var" or (leaf == "weight" and t.dim() == 1):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif leaf in ("running_mean", "bias") or t.dim() == 1:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif leaf == "position_embeddings":
                t.copy_(0.5 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel() if "up.conv.0" not in name else t.shape[0]
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))
    return model
