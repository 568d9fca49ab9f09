"""Embeddings of the timestep, the coordinates and the condition (paper sec. 4.2: e_t, e_c, e_x)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps (float or long) → (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().unsqueeze(-1) * freqs  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def max_fourier_freqs(size: tuple[int, int] | int) -> int:
    """Most Fourier octaves that do not alias on an H×W training lattice (∞-Diff uses fixed octaves).

    Octave k has 2^k periods per image side; the top one must keep ≥ 4 pixels per period, 2^(F-1) ≤ side / 4
    (at 2 pixels per period — Nyquist — its cosine is 0 at every pixel centre, so its weights never train and
    switch on as a fixed lattice pattern at higher sampling resolutions). → F = floor(log2(side / 4)) + 1 ≥ 1.
    """
    side = min(size) if isinstance(size, (tuple, list)) else int(size)
    if side < 1:
        raise ValueError(f"training size must be positive, got {size}")
    return max(1, int(math.floor(math.log2(max(side, 4) / 4))) + 1)


def fourier_features(coords: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """Coords (..., 2) in [0, 1] → (..., 2 + 4·n_freqs): [coords, sin/cos(2π 2^k coords)], k < n_freqs."""
    freqs = (2.0 ** torch.arange(n_freqs, device=coords.device, dtype=torch.float32)) * (2 * math.pi)
    args = coords.unsqueeze(-1) * freqs  # (..., 2, F)
    return torch.cat([coords, torch.sin(args).flatten(-2), torch.cos(args).flatten(-2)], dim=-1)


class TimeEmbedding(nn.Module):
    """t (B,) → (B, dim) through a sinusoidal table and a 2-layer SiLU MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim))


class CondEmbedding(nn.Module):
    """Condition vector (B, D) → (B, dim), with a learned null embedding for classifier-free guidance.

    Rows with ``cond_mask`` False (or all rows when cond is None) get the null embedding. The vector is
    L2-normalised first when ``normalize`` (as Graikos et al. do for SSL embeddings). With ``standardize`` each
    dimension of that unit vector is then shifted and scaled by the training set's mean and standard deviation
    (buffers set by ``fit``, saved with the weights) and L2-normalised again: SSL embeddings share
    a large common direction (mean cosine 0.47 between demo DINO embeddings), which standardising removes so that
    what tells images apart is what the network sees (paper silent). ``noise`` > 0 adds Gaussian noise
    of that standard deviation (in standardised units) to the standardised condition in training mode only
    (condition augmentation; paper silent; an A/B row of benchmarks/bench_learning.py, not a demo default).
    ``neighbors`` = k > 0 replaces each (L2-normalised) condition by the mean of its k nearest training conditions
    (cosine similarity; a training condition counts itself), L2-normalised again, before standardising: the model
    is steered by the neighbourhood an embedding falls in rather than by what is peculiar to one patch, and a new
    embedding (a held-out patch, a text prompt) is drawn onto the training conditions the model has learned
    (paper silent). The training table is a buffer saved with the weights (n × D floats).
    """

    def __init__(self, cond_dim: int, dim: int, normalize: bool = True, standardize: bool = False,
                 noise: float = 0.0, neighbors: int = 0):
        super().__init__()
        if neighbors < 0:
            raise ValueError(f"cond_neighbors must be >= 0, got {neighbors}")
        self.cond_dim, self.normalize, self.standardize, self.noise = cond_dim, normalize, standardize, noise
        self.neighbors = int(neighbors)
        self.proj = nn.Sequential(nn.Linear(cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))
        if standardize:  # identity until fit
            self.register_buffer("cond_mean", torch.zeros(cond_dim))
            self.register_buffer("cond_std", torch.ones(cond_dim))
        if self.neighbors:  # (n, D) normalised training conditions; empty (no smoothing) until fit
            self.register_buffer("cond_bank", torch.zeros(0, cond_dim))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        bank = state_dict.get(prefix + "cond_bank")
        if self.neighbors and bank is not None:  # the bank's length is the training set's, known only at load
            self.cond_bank = torch.empty_like(bank, device=self.cond_bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, table: torch.Tensor) -> None:
        """Take what the configured transforms need from the training conditions ``table`` (n, D): the
        neighbour bank, then the per-dimension mean and standard deviation of the (smoothed) conditions."""
        if not (self.standardize or self.neighbors):
            raise ValueError("fit needs a CondEmbedding built with standardize=True or neighbors > 0")
        x = table.double()
        if self.normalize:
            x = F.normalize(x, dim=-1)
        if self.neighbors:
            self.cond_bank = x.to(self.null.dtype).to(self.null.device)
            x = self.smooth(x)
        if self.standardize:
            self.cond_mean.copy_(x.mean(0))
            self.cond_std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def smooth(self, c: torch.Tensor) -> torch.Tensor:
        """(B, D) → (B, D): the mean of each row's k nearest bank rows (cosine), re-normalised where configured."""
        if not self.neighbors or not len(self.cond_bank):
            return c
        bank = self.cond_bank.to(c.dtype)  # (n, D)
        sim = F.normalize(c, dim=-1) @ bank.T  # (B, n)
        idx = sim.topk(min(self.neighbors, len(bank)), dim=-1).indices  # (B, k)
        c = bank[idx].mean(1)  # (B, D)
        return F.normalize(c, dim=-1) if self.normalize else c

    def features(self, cond: torch.Tensor) -> torch.Tensor:
        """The vector the projection sees: (B, D) → (B, D), normalised (smoothed, standardised) as configured."""
        c = cond.float()
        if self.normalize:
            c = F.normalize(c, dim=-1)
        c = self.smooth(c)
        if self.standardize:
            c = (c - self.cond_mean) / self.cond_std
            if self.training and self.noise > 0:  # condition augmentation: Gaussian noise in standardised units
                c = c + self.noise * torch.randn_like(c)
            c = F.normalize(c, dim=-1) if self.normalize else c
        return c

    def forward(self, cond: torch.Tensor | None, batch: int, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        null = self.null.unsqueeze(0).expand(batch, -1)
        if cond is None:
            return null
        if cond.shape != (batch, self.cond_dim):
            raise ValueError(f"cond must be ({batch}, {self.cond_dim}), got {tuple(cond.shape)}")
        emb = self.proj(self.features(cond))
        if cond_mask is None:
            return emb
        return torch.where(cond_mask.view(batch, 1).to(emb.device), emb, null)


class Tokens(nn.Module):
    """A (B, E) vector → (B, M, dim) tokens: a linear map to M·dim plus learned per-token offsets."""

    def __init__(self, in_dim: int, n_tokens: int, dim: int):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        self.proj = nn.Linear(in_dim, n_tokens * dim)
        self.offset = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.proj(v).view(v.shape[0], self.n_tokens, self.dim) + self.offset
