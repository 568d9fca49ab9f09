"""Region conditions on the UNO grid (the brush): the ``GridHooks`` (models/uno.py) that give every GroupNorm
its statistics per region, keep the bottleneck self-attention within regions, and let each bottleneck cell
attend to its own regions' condition tokens.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from infbrush.models.uno import Attention2d


def region_group_norm(norm: nn.GroupNorm, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """GroupNorm with statistics per region: Σ_k w_k · (x − μ_k) / √(σ²_k + ε), affine after.

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


class RegionGrid:
    """``GridHooks`` of region conditions.

    ``token_weights`` (B, R, G, G): the region weights at the grid cells (each bottleneck cell attends to the
    tokens (B, R, M, E) of its regions, blended by the weights area-averaged onto the bottleneck cells).
    ``local_weights`` (B, K, G, G) | None: the weights of the K distinct conditions; where given, every GroupNorm
    takes its statistics per condition and the bottleneck self-attention stays within them (logit bias
    log Σ_k w_k(i) w_k(j)), so no statistic over the whole grid mixes the regions.
    """

    def __init__(self, token_weights: torch.Tensor | None, local_weights: torch.Tensor | None):
        self.token_weights, self.local_weights = token_weights, local_weights

    def norm(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        if self.local_weights is None:
            return norm(x)
        return region_group_norm(norm, x, F.adaptive_avg_pool2d(self.local_weights.float(), x.shape[-2:]))

    def self_attention(self, attn: Attention2d, h: torch.Tensor) -> torch.Tensor:
        if self.local_weights is None:
            return attn(h)
        weights = F.adaptive_avg_pool2d(self.local_weights.to(h.dtype), h.shape[-2:]).flatten(2)  # (B, K, g²)
        overlap = torch.einsum("bri,brj->bij", weights, weights)  # (B, g², g²)
        return attn(h, attn_bias=overlap.clamp_min(1e-6).log().unsqueeze(1), hooks=self)

    def cross_attention(self, attn: Attention2d, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.token_weights is None:
            return attn(h, tokens)
        weights = F.adaptive_avg_pool2d(self.token_weights.to(h.dtype), h.shape[-2:])  # (B, R, g, g)
        return region_cross_attention(attn, h, tokens, weights, self)


def region_cross_attention(attn: Attention2d, x: torch.Tensor, tokens: torch.Tensor, weights: torch.Tensor,
                           hooks: RegionGrid) -> torch.Tensor:
    """Cross-attention where each pixel attends to its own region's tokens.

    x (B, C, H, W), tokens (B, R, M, token_dim) one token set per region, weights (B, R, H, W) region weights at
    the pixel centres (summing to 1 over R) → x + out(Σ_r w_r · attention(x → tokens_r)). With one region (or
    all regions holding the same tokens) this equals ``attn(x, tokens_r)``; the normalisation is the hooks'.
    """
    batch, channels, height, width = x.shape
    n_regions = tokens.shape[1]
    seq = hooks.norm(attn.norm, x).flatten(2).transpose(1, 2)  # (B, HW, C)
    q = attn.q(seq).unflatten(-1, (attn.heads, -1)).transpose(1, 2)  # (B, h, HW, dh)
    k, v = attn.kv(tokens.flatten(0, 1)).chunk(2, dim=-1)  # (B·R, M, C)
    k = k.unflatten(-1, (attn.heads, -1)).transpose(1, 2).unflatten(0, (batch, n_regions))  # (B, R, h, M, dh)
    v = v.unflatten(-1, (attn.heads, -1)).transpose(1, 2).unflatten(0, (batch, n_regions))
    w = weights.flatten(2).to(seq.dtype)  # (B, R, HW)
    att = None
    for r in range(n_regions):
        part = F.scaled_dot_product_attention(q, k[:, r], v[:, r]).transpose(1, 2).flatten(2)  # (B, HW, C)
        part = part * w[:, r, :, None]
        att = part if att is None else att + part
    return x + attn.out(att).transpose(1, 2).reshape(batch, channels, height, width)
