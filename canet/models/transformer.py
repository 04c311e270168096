"""The transformer that CA-Net puts at the V-Net bottleneck.

The ``B x C x gx x gy x gz`` bottleneck map becomes one token per voxel (order:
x, y, z in C order, z fastest), gets a learned position embedding, passes
pre-norm transformer blocks and a final LayerNorm, and is folded back to the grid
through a 3x3x3 conv (no bias) + BN + ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canet.models.common import ConvBNReLU, same_memory_format


class SelfAttention(nn.Module):
    """Multi-head self-attention with biases, via ``F.scaled_dot_product_attention``.

    ``qkv`` holds the query, key and value projections stacked along its output
    features (``[q; k; v]``, each ``dim x dim``); head ``h`` uses features
    ``h*head_dim:(h+1)*head_dim`` of each. Scores are scaled by ``1/sqrt(head_dim)``.

    Shapes: ``B x N x dim -> B x N x dim``.
    """

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        # B x N x 3 x H x Dh -> 3 x B x H x N x Dh (a view; SDPA accepts the strides).
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    """``fc1 -> GELU -> dropout -> fc2 -> dropout``. Shapes: ``B x N x dim`` kept."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        # As in the ViT/TransUNet code CA-Net builds on.
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.xavier_uniform_(self.fc2.weight)
        nn.init.normal_(self.fc1.bias, std=1e-6)
        nn.init.normal_(self.fc2.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerBottleneck(nn.Module):
    """Tokens from the bottleneck map, transformer blocks, fold back to the map.

    Args:
        channels: channels of the bottleneck map (``16 * n_filters``); also the
            channels of the output.
        grid: token grid ``(gx, gy, gz)`` the position embedding is stored at
            (the training patch size divided by 16).
        dim: token width (168 in CA-Net).
        depth: number of blocks (12).
        num_heads: attention heads (12, of ``dim / num_heads`` = 14 features).
        mlp_dim: hidden width of the MLP (3072).
        dropout: dropout on the embedded tokens and in the MLP (0.1).

    Shapes: ``B x channels x gx' x gy' x gz' -> B x channels x gx' x gy' x gz'``
    for any grid; at a grid other than ``grid`` the position embedding is
    resampled trilinearly (``align_corners=False``) on the fly.
    """

    def __init__(
        self,
        channels: int,
        grid: tuple[int, int, int],
        dim: int = 168,
        depth: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.grid = tuple(int(g) for g in grid)
        self.dim = dim
        n_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.embed = nn.Conv3d(channels, dim, 1)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fold = ConvBNReLU(dim, channels, kernel_size=3, bias=False)

    def position_embedding(self, grid: tuple[int, int, int]) -> Tensor:
        """The ``1 x (gx*gy*gz) x dim`` position embedding for token grid ``grid``."""
        if tuple(grid) == self.grid:
            return self.pos_embed
        stored = self.pos_embed.view(1, *self.grid, self.dim).permute(0, 4, 1, 2, 3)
        resized = F.interpolate(stored, size=tuple(grid), mode="trilinear", align_corners=False)
        return resized.flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        b, _, gx, gy, gz = x.shape
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # B x N x dim, z fastest
        tokens = self.drop(tokens + self.position_embedding((gx, gy, gz)))
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        # B x N x dim -> B x dim x gx x gy x gz: a view (channels-last strides), no copy.
        grid = tokens.transpose(1, 2).reshape(b, self.dim, gx, gy, gz)
        return self.fold(same_memory_format(grid, x))
