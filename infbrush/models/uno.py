"""Grid level: a small UNet ("UNO", ∞-Diff) on the fixed G×G grid, with vanilla cross-attention to the
condition tokens at the bottleneck (paper sec. 4.2). Attention uses ``scaled_dot_product_attention``
(flash / memory-efficient kernels where the device has them)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


def region_group_norm(norm: nn.GroupNorm, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """GroupNorm with statistics per region (the brush): Σ_k w_k · (x − μ_k) / √(σ²_k + ε), affine after.

    x (B, C, H, W); weights (B, K, H, W), summing to 1 over K at every cell; μ_k, σ²_k are the w_k-weighted mean
    and variance of each channel group over the grid. With one region (weights all 1) this is ``norm(x)``.
    """
    batch, channels, height, width = x.shape
    groups = norm.num_groups
    xf = x.float().reshape(batch, channels, height * width)
    xg = xf.view(batch, groups, -1, height * width)  # (B, g, C/g, HW)
    w = weights.float().flatten(2)  # (B, K, HW)
    mass = (w.sum(-1) * xg.shape[2]).clamp_min(1e-12).unsqueeze(-1)  # (B, K, 1)
    mean = torch.einsum("bgcn,bkn->bkg", xg, w) / mass  # (B, K, g)
    var = (torch.einsum("bgcn,bkn->bkg", xg * xg, w) / mass - mean * mean).clamp_min(0)
    inv = torch.rsqrt(var + norm.eps)
    scale = torch.einsum("bkn,bkg->bgn", w, inv).repeat_interleave(channels // groups, dim=1)  # (B, C, HW)
    shift = torch.einsum("bkn,bkg->bgn", w, mean * inv).repeat_interleave(channels // groups, dim=1)
    if norm.affine:  # the affine folded into the per-cell scale and shift: y = x·scale' + shift'
        scale = scale * norm.weight[:, None]
        shift = norm.bias[:, None] - shift * norm.weight[:, None]
    else:
        shift = -shift
    y = torch.addcmul(shift, xf, scale).reshape(batch, channels, height, width)
    return y.to(x.dtype)


def _norm(norm: nn.GroupNorm, x: torch.Tensor, region_weights: torch.Tensor | None) -> torch.Tensor:
    """``norm(x)``, or per region when ``region_weights`` (B, K, G, G) are given (area-averaged onto x's cells)."""
    if region_weights is None:
        return norm(x)
    return region_group_norm(norm, x, F.adaptive_avg_pool2d(region_weights.float(), x.shape[-2:]))


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

    def forward(self, x: torch.Tensor, temb: torch.Tensor, region_weights: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(_norm(self.norm1, x, region_weights))) + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(_norm(self.norm2, h, region_weights))))
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
                region_weights: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        seq = _norm(self.norm, x, region_weights).flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.q(seq).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, HW, dh)
        k, v = self.kv(seq if tokens is None else tokens).chunk(2, dim=-1)
        k = k.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = v.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        if attn_bias is None:
            att = F.scaled_dot_product_attention(q, k, v)
        else:  # an additive bias (B, 1, HW, M) on the logits (the brush: attention kept within regions)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        att = att.transpose(1, 2).flatten(2)  # (B, HW, C)
        return x + self.out(att).transpose(1, 2).reshape(batch, channels, height, width)

    def forward_regions(self, x: torch.Tensor, tokens: torch.Tensor, weights: torch.Tensor,
                        region_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-attention where each pixel attends to its own region's tokens (the brush).

        x (B, C, H, W), tokens (B, R, M, token_dim) one token set per region, weights (B, R, H, W) region weights
        at the pixel centres (summing to 1 over R) → x + out(Σ_r w_r · attention(x → tokens_r)). With one region
        (or all regions holding the same tokens) this equals ``forward(x, tokens_r)``. ``region_weights``: the
        normalisation's statistics per region (``region_group_norm``).
        """
        batch, channels, height, width = x.shape
        n_regions = tokens.shape[1]
        seq = _norm(self.norm, x, region_weights).flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.q(seq).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, HW, dh)
        k, v = self.kv(tokens.flatten(0, 1)).chunk(2, dim=-1)  # (B·R, M, C)
        k = k.unflatten(-1, (self.heads, -1)).transpose(1, 2).unflatten(0, (batch, n_regions))  # (B, R, h, M, dh)
        v = v.unflatten(-1, (self.heads, -1)).transpose(1, 2).unflatten(0, (batch, n_regions))
        w = weights.flatten(2).to(seq.dtype)  # (B, R, HW)
        att = None
        for r in range(n_regions):
            part = F.scaled_dot_product_attention(q, k[:, r], v[:, r]).transpose(1, 2).flatten(2)  # (B, HW, C)
            part = part * w[:, r, :, None]
            att = part if att is None else att + part
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
                token_weights: torch.Tensor | None = None, local_weights: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, G, G), temb (B, E), tokens (B, M, token_dim) or None → (B, C, G, G).

        Region conditions (the brush): tokens (B, R, M, token_dim) with ``token_weights`` (B, R, G, G),
        the region weights at the grid cells; each bottleneck cell attends to the tokens of its regions, blended
        by the weights area-averaged onto the bottleneck cells. ``local_weights`` (B, K, G, G), the weights of
        the K distinct conditions: every GroupNorm takes its statistics per condition (``region_group_norm``) and
        the bottleneck self-attention stays within them (logit bias log Σ_k w_k(i) w_k(j)), so no statistic
        over the whole grid mixes the regions.
        """
        lw = local_weights
        h = self.inp(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, temb, lw)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid1(h, temb, lw)
        if lw is not None:
            weights = F.adaptive_avg_pool2d(lw.to(h.dtype), h.shape[-2:]).flatten(2)  # (B, K, g²)
            overlap = torch.einsum("bri,brj->bij", weights, weights)  # (B, g², g²)
            h = self.mid_self(h, attn_bias=overlap.clamp_min(1e-6).log().unsqueeze(1), region_weights=lw)
        else:
            h = self.mid_self(h)
        if self.mid_cross is not None and tokens is not None:
            if token_weights is None:
                h = self.mid_cross(h, tokens)
            else:
                weights = F.adaptive_avg_pool2d(token_weights.to(h.dtype), h.shape[-2:])  # (B, R, g, g)
                h = self.mid_cross.forward_regions(h, tokens, weights, region_weights=lw)
        h = self.mid2(h, temb, lw)
        for blocks, up in zip(self.up, self.upsample):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), temb, lw)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(_norm(self.out_norm, h, lw)))
