"""Grid level: a small UNet ("UNO", ∞-Diff) on the fixed G×G grid, with vanilla cross-attention to the
condition tokens at the bottleneck (paper sec. 4.2). Attention uses ``scaled_dot_product_attention``
(flash / memory-efficient kernels where the device has them)."""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class GridHooks(Protocol):
    """Where the UNO's statistics and attention may be changed without changing its weights (the brush's
    ``brush.grid.RegionGrid`` gives each region its own; ``PlainGrid`` is the model's own behaviour)."""

    def norm(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        """Every GroupNorm of the UNet: (B, C, H, W) → same."""

    def self_attention(self, attn: "Attention2d", h: torch.Tensor) -> torch.Tensor:
        """The bottleneck self-attention (residual included)."""

    def cross_attention(self, attn: "Attention2d", h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The bottleneck cross-attention to the condition tokens (residual included)."""


class PlainGrid:
    """One condition per image: the modules as they are."""

    def norm(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x)

    def self_attention(self, attn: "Attention2d", h: torch.Tensor) -> torch.Tensor:
        return attn(h)

    def cross_attention(self, attn: "Attention2d", h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return attn(h, tokens)


PLAIN_GRID = PlainGrid()


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv ×2 with an additive time embedding; (B, c_in, H, W) → (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, hooks: GridHooks = PLAIN_GRID) -> torch.Tensor:
        h = self.conv1(F.silu(hooks.norm(self.norm1, x))) + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(hooks.norm(self.norm2, h))))
        return self.skip(x) + h


class Attention2d(nn.Module):
    """Multi-head attention of grid pixels to themselves (tokens None) or to tokens (B, M, token_dim)."""

    def __init__(self, channels: int, heads: int, token_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(token_dim or channels, 2 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None, attn_bias: torch.Tensor | None = None,
                hooks: GridHooks = PLAIN_GRID) -> torch.Tensor:
        """x (B, C, H, W) → x + attention(x → tokens or x); ``attn_bias`` (B, 1, HW, M): added to the logits."""
        batch, channels, height, width = x.shape
        seq = hooks.norm(self.norm, x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.q(seq).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, HW, dh)
        k, v = self.kv(seq if tokens is None else tokens).chunk(2, dim=-1)
        k = k.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = v.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        if attn_bias is None:
            att = F.scaled_dot_product_attention(q, k, v)
        else:  # an additive bias on the logits (the brush: attention kept within regions)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        att = att.transpose(1, 2).flatten(2)  # (B, HW, C)
        return x + self.out(att).transpose(1, 2).reshape(batch, channels, height, width)


class UNO(nn.Module):
    """UNet on (B, in_channels, G, G) → same shape; time via ResBlocks, condition tokens at the bottleneck."""

    def __init__(self, in_channels: int, base: int, channel_mult: list[int], num_blocks: int, temb_dim: int,
                 heads: int, token_dim: int | None, dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, base, 3, padding=1)
        chans = [base * m for m in channel_mult]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, c = [base], base
        for level, ch in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(num_blocks):
                blocks.append(ResBlock(c, ch, temb_dim, dropout))
                c = ch
                skips.append(c)
            self.down.append(blocks)
            last = level == len(chans) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skips.append(c)
        self.mid1 = ResBlock(c, c, temb_dim, dropout)
        self.mid_self = Attention2d(c, heads)
        self.mid_cross = Attention2d(c, heads, token_dim) if token_dim else None
        self.mid2 = ResBlock(c, c, temb_dim, dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, ch in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(num_blocks + 1):
                blocks.append(ResBlock(c + skips.pop(), ch, temb_dim, dropout))
                c = ch
            self.up.append(blocks)
            self.upsample.append(nn.Conv2d(c, c, 3, padding=1) if level > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, tokens: torch.Tensor | None,
                hooks: GridHooks | None = None) -> torch.Tensor:
        """x (B, C, G, G), temb (B, E), tokens (B, M, token_dim) or None → (B, C, G, G). ``hooks``: where the
        normalisation and the bottleneck attention take other statistics or tokens (the brush's regions)."""
        hooks = PLAIN_GRID if hooks is None else hooks
        h = self.inp(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, temb, hooks)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid1(h, temb, hooks)
        h = hooks.self_attention(self.mid_self, h)
        if self.mid_cross is not None and tokens is not None:
            h = hooks.cross_attention(self.mid_cross, h, tokens)
        h = self.mid2(h, temb, hooks)
        for blocks, up in zip(self.up, self.upsample):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), temb, hooks)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(hooks.norm(self.out_norm, h)))
