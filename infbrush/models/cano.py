"""Cross-attention neural operator (CANO, paper eq. 15) and linear self-attention over points.

GNOT-style normalised linear attention: q̃ = softmax(q) and k̃ = softmax(k) over the feature dimension
(per head), then for each condition source s with tokens m:

    out_i = Σ_s  q̃_i (Σ_m k̃_m v_mᵀ) / (q̃_i · Σ_m k̃_m)

computed right-to-left, so the cost is O(N·d²) in the number of points N, never O(N·M). The sums over
tokens (Σ k̃ vᵀ, Σ k̃) are *summaries*: for a source whose tokens are the points themselves (the coordinate
embedding, or the features for self-attention) they are accumulated over chunks of points and applied per
chunk, which makes a chunked forward equal to the unchunked one. Each source is normalised by its own Σ k̃,
so a source with N point-tokens is an average over the points (a Monte-Carlo integral: the output does not
depend on the sampling density).
"""
from __future__ import annotations

import torch
import torch.nn as nn

Summary = tuple[torch.Tensor, torch.Tensor]  # (Σ k̃ vᵀ (B, h, dh, dh), Σ k̃ (B, h, dh))


def feature_softmax(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, h·dh) → (B, N, h, dh) softmax over each head's feature dimension (float32).

    Written out (max-shift, exp, normalise): torch's softmax kernel is 3-4× slower on rows this short (dh ≈ 12-16).
    """
    y = x.float().unflatten(-1, (heads, -1))
    e = (y - y.amax(dim=-1, keepdim=True).detach()).exp()
    return e / e.sum(dim=-1, keepdim=True)


def linear_summary(k: torch.Tensor, v: torch.Tensor) -> Summary:
    """k̃ (B, M, h, dh) normalised keys, v (B, M, h, dh) values → (Σ_m k̃ vᵀ (B, h, dh, dh), Σ_m k̃ (B, h, dh))."""
    return torch.einsum("bmhk,bmhv->bhkv", k, v.float()), k.sum(dim=1)


def add_summaries(a: Summary | None, b: Summary) -> Summary:
    """Sum of two partial summaries (accumulation over chunks); ``a`` may be None."""
    return b if a is None else (a[0] + b[0], a[1] + b[1])


def linear_apply(q: torch.Tensor, summary: Summary, eps: float = 1e-12) -> torch.Tensor:
    """q̃ (B, N, h, dh) with a summary → q̃ (Σ k̃ vᵀ) / (q̃ · Σ k̃), (B, N, h, dh). Cost O(N·h·dh²)."""
    kv, ksum = summary
    num = torch.einsum("bnhk,bhkv->bnhv", q, kv)
    den = torch.einsum("bnhk,bhk->bnh", q, ksum).unsqueeze(-1)
    return num / den.clamp_min(eps)


def quadratic_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same operator computed explicitly with the (N, M) weight matrix A_im = q̃_i·k̃_m / Σ_m' q̃_i·k̃_m'.

    q̃ (B, N, h, dh), k̃ (B, M, h, dh), v (B, M, h, dh) → (B, N, h, dh). For tests; O(N·M) memory.
    """
    scores = torch.einsum("bnhk,bmhk->bhnm", q.double(), k.double())
    weights = scores / scores.sum(dim=-1, keepdim=True)
    return torch.einsum("bhnm,bmhv->bnhv", weights, v.double())


def _check_heads(dim: int, heads: int) -> int:
    """``dim`` when it splits into ``heads`` equal heads, else ValueError."""
    if dim % heads:
        raise ValueError(f"dim {dim} is not divisible by heads {heads}")
    return dim


class CrossAttentionNeuralOperator(nn.Module):
    """CANO: h (B, N, dim) ← h + W_o Σ_s LinearCrossAttn(q(h), k_s(tokens_s), v_s(tokens_s)).

    ``sources`` maps a source name to its token width (e.g. {"time": e, "cond": e, "coord": e}).
    """

    def __init__(self, dim: int, sources: dict[str, int], heads: int):
        super().__init__()
        self.heads, self.norm, self.q = heads, nn.LayerNorm(dim), nn.Linear(dim, _check_heads(dim, heads))
        self.k = nn.ModuleDict({s: nn.Linear(w, dim) for s, w in sources.items()})
        self.v = nn.ModuleDict({s: nn.Linear(w, dim) for s, w in sources.items()})
        self.out = nn.Linear(dim, dim)

    def summarize(self, source: str, tokens: torch.Tensor) -> Summary:
        """Tokens (B, M, width) of one source → its (partial) summary; sums over M."""
        k = feature_softmax(self.k[source](tokens), self.heads)
        v = self.v[source](tokens).unflatten(-1, (self.heads, -1))
        return linear_summary(k, v)

    def query(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, N, dim) → q̃ (B, N, heads, dh)."""
        return feature_softmax(self.q(self.norm(h)), self.heads)

    def forward(self, h: torch.Tensor, summaries: list[Summary]) -> torch.Tensor:
        """h (B, N, dim) and one summary per source → h + output, (B, N, dim)."""
        q = self.query(h)
        att = sum(linear_apply(q, s) for s in summaries)  # (B, N, heads, dh)
        return h + self.out(att.flatten(-2).to(h.dtype))


class LinearSelfAttention(nn.Module):
    """Normalised linear self-attention over all points of an image; summaries are sums over points."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.norm, self.q = heads, nn.LayerNorm(dim), nn.Linear(dim, _check_heads(dim, heads))
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def summarize(self, h: torch.Tensor) -> Summary:
        """h (B, n, dim) (a chunk of the points) → partial summary."""
        k, v = self.kv(self.norm(h)).chunk(2, dim=-1)
        return linear_summary(feature_softmax(k, self.heads), v.unflatten(-1, (self.heads, -1)))

    def forward(self, h: torch.Tensor, summary: Summary) -> torch.Tensor:
        """h (B, N, dim) with the summary over *all* points → h + output (B, N, dim)."""
        q = feature_softmax(self.q(self.norm(h)), self.heads)
        return h + self.out(linear_apply(q, summary).flatten(-2).to(h.dtype))
