"""∞-Brush conditional denoiser in function space (paper Fig. 2, sec. 4.2).

Point path (B images × N points, coords (x, y) in [0, 1]²), as segments separated by the operations that
are global over points:

    lift([x, γ(coords)])                                         seg 0 lift_points
    ── sparse kernel integral (splat sums) + CANO coordinate summary ──   stage 0
    sparse operator, FiLM-MLP, CANO(time, condition, coordinate tokens)  seg 1 after_kernel_in   [cano_attend]
    ── linear self-attention summary ──                                  stage 1                 [attention_summary]
    self-attention, FiLM-MLP                                             seg 2 after_attention   [attention_apply]
    ── kNN (k=3) interpolation to the G×G grid → UNO (cross-attn to c at the bottleneck) ──  stage 2   [grid_unet]
    + bilinear read-back of the grid (skip connection)                   seg 3 after_grid
    ── sparse kernel integral ──                                         stage 3
    sparse operator, FiLM-MLP, output head → ε̂                           seg 4 predict           [finish_output]

The interface (segments, stages as partial / merge / finalise, and the condition hooks in brackets) is written
down in models/staged.py. ``forward`` runs it in one pass. ``chunked_forward`` (models/chunked.py) runs the segments over chunks of
points, accumulating each stage's partial sums over all chunks before applying it, so peak memory is set by
the chunk size and the result equals ``forward``. With ``cano=False`` the CANO block is removed and the
condition enters only at the UNO bottleneck (the paper's ablation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from infbrush.models.cano import CrossAttentionNeuralOperator, LinearSelfAttention, add_summaries
from infbrush.models.chunked import StagedStreaming
from infbrush.models.embeddings import CondEmbedding, TimeEmbedding, Tokens, fourier_features
from infbrush.models.interp import knn_merge, knn_partial, knn_to_grid, knn_window
from infbrush.models.sparse import SparseKernelIntegral, bilinear_gather
from infbrush.models.staged import run_all
from infbrush.models.uno import UNO


class FiLMMLP(nn.Module):
    """h ← h + W₂ GELU(W₁ (LN(h)·(1 + s) + b)), (s, b) from the time embedding (per image)."""

    def __init__(self, dim: int, emb_dim: int, mult: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.film = nn.Linear(emb_dim, 2 * dim)
        self.fc1, self.fc2 = nn.Linear(dim, mult * dim), nn.Linear(mult * dim, dim)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(F.silu(temb)).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, dim) each
        return h + self.fc2(F.gelu(self.fc1(self.norm(h) * (1 + scale) + shift)))


@dataclass
class Context:
    """Per-call quantities that do not depend on the points: embeddings, token summaries, point count, and the
    object whose ``ConditionHooks`` the segments and stages call (the model itself, or the brush's regions)."""

    temb: torch.Tensor  # (B, E) time embedding (+ the condition embedding when cond_film)
    tokens: torch.Tensor | None  # (B, M, E) condition tokens (None: unconditional model)
    source_summaries: list  # CANO summaries of the time / condition tokens
    n_total: int  # points per image over all chunks
    window: int  # kNN proposal half-width (cells)
    hooks: Any = None  # ConditionHooks (models/staged.py)


@dataclass
class KernelPartial:
    """Stage 0's partial of one chunk: the splat sums of the input kernel integral and the CANO coordinate
    source's summary (None without CANO)."""

    splat: torch.Tensor
    coord: Any


@dataclass
class KernelSummary:
    """Stage 0 finished: the kernel integral's field on its grid and the coordinate source's summary."""

    field: torch.Tensor
    coord: Any


@dataclass(frozen=True)
class DenoiserConfig:
    """The denoiser's architecture (the ``model_args`` a checkpoint stores, less the registry ``name``); the size
    presets are in models/__init__.py. Shapes: C = in_channels, D = cond_dim, d = sparse_channels, E = emb_dim."""

    in_channels: int = 3
    cond_dim: int = 0  # 0: unconditional
    cano: bool = True  # False: the paper's ablation (the condition enters at the UNO bottleneck only)
    sparse_channels: int = 64
    sparse_grid: int = 64  # the kernel integrals' lattice (G_s × G_s)
    sparse_kernel: int = 5
    fourier_freqs: int = 8  # γ(coords): 2 + 4·freqs features
    emb_dim: int = 128
    cond_tokens: int = 4
    num_heads: int = 4
    grid_size: int = 64  # the UNO grid (G × G)
    grid_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_blocks: int = 1
    grid_heads: int = 4
    knn: int = 3  # neighbours interpolated onto each grid cell
    dropout: float = 0.0
    cond_normalize: bool = True
    prediction: str = "eps"  # "eps" or "v": what the output means
    value_skip: bool = False  # a time-dependent C × C map of x_t added to the output (see __init__)
    cond_film: bool = False  # the condition embedding also drives the FiLM layers (ADM-style)
    cond_standardize: bool = False
    cond_noise: float = 0.0
    cond_neighbors: int = 0


class InfBrushDenoiser(StagedStreaming, nn.Module):
    """ε̂ (or v̂ when ``prediction == "v"``) = model(x (B, N, C), coords (B, N, 2), t (B,), cond (B, D) | None,
    image_size) → (B, N, C). Built from a ``DenoiserConfig`` (``models.build_model`` from a checkpoint's dict)."""

    n_stages = 4
    Config = DenoiserConfig

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        c = config
        in_channels, cond_dim, cano, prediction = c.in_channels, c.cond_dim, c.cano, c.prediction
        if in_channels < 1 or cond_dim < 0:
            raise ValueError(f"bad in_channels={in_channels} or cond_dim={cond_dim}")
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        self.prediction = prediction  # what the output means: ε or v (the sampler converts v to ε̂)
        # cond_film: the condition embedding is also added to the time embedding that drives every FiLM layer
        # and the UNO (ADM-style class conditioning), beside its tokens in CANO and the UNO bottleneck.
        self.cond_film = bool(c.cond_film and cond_dim)
        d, e = c.sparse_channels, c.emb_dim
        self.in_channels, self.cond_dim, self.use_cano = in_channels, cond_dim, cano
        self.fourier_freqs, self.grid_size, self.knn = c.fourier_freqs, c.grid_size, c.knn
        n_fourier = 2 + 4 * c.fourier_freqs
        self.time_embed = TimeEmbedding(e)
        self.cond_embed = CondEmbedding(cond_dim, e, c.cond_normalize, c.cond_standardize, c.cond_noise,
                                        c.cond_neighbors) if cond_dim else None
        self.cond_tokens = Tokens(e, c.cond_tokens, e) if cond_dim else None
        self.lift = nn.Linear(in_channels + n_fourier, d)
        self.sparse_in = SparseKernelIntegral(d, c.sparse_grid, c.sparse_kernel)
        self.mlp1 = FiLMMLP(d, e)
        if cano:
            self.time_tokens = Tokens(e, c.cond_tokens, e)
            self.coord_embed = nn.Sequential(nn.Linear(n_fourier, d), nn.SiLU(), nn.Linear(d, d))
            sources = {"time": e, "coord": d} | ({"cond": e} if cond_dim else {})
            self.cano = CrossAttentionNeuralOperator(d, sources, c.num_heads)
        self.self_attn = LinearSelfAttention(d, c.num_heads)
        self.mlp2 = FiLMMLP(d, e)
        self.to_grid = nn.Linear(d, c.grid_channels)
        self.uno = UNO(c.grid_channels, c.grid_channels, list(c.channel_mult), c.num_blocks, e, c.grid_heads,
                       e if cond_dim else None, c.dropout)
        self.from_grid = nn.Linear(c.grid_channels, d)
        self.sparse_out = SparseKernelIntegral(d, c.sparse_grid, c.sparse_kernel)
        self.mlp3 = FiLMMLP(d, e)
        self.head_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, in_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # A time-dependent linear map of the point's own value x_t added to the output (C × C per image, from the
        # time embedding, zero at init): the linear part of the denoiser — exact for Gaussian data, dominant at
        # high noise — bypasses the saturating layers, which otherwise shrink the rare extreme noise values
        # (|ε| > 3σ) and leave them in x̂_0 as single-channel speckle.
        # Precision of the grid UNet alone (a run-time setting, not a weight: ``set_precision``); None = as the caller.
        self.grid_dtype: torch.dtype | None = None
        self._knn_cache: dict = {}  # the last kNN plan of an eval-mode single-chunk call (``knn_partial``)
        self.value_skip = nn.Linear(e, in_channels * in_channels) if c.value_skip else None
        if self.value_skip is not None:
            nn.init.zeros_(self.value_skip.weight)
            nn.init.zeros_(self.value_skip.bias)

    # ---- per-call context -------------------------------------------------------------------------
    def begin(self, t: torch.Tensor, cond: torch.Tensor | None, cond_mask: torch.Tensor | None,
              n_total: int) -> Context:
        """Embeddings and token summaries for t (B,), cond (B, D) | None, cond_mask (B,) bool | None."""
        batch = t.shape[0]
        temb = self.time_embed(t)
        tokens, film = None, temb
        if self.cond_dim:
            cemb = self.cond_embed(cond, batch, cond_mask)  # (B, E); the null embedding where dropped
            tokens = self.cond_tokens(cemb)  # (B, M, E)
            if self.cond_film:
                film = temb + cemb
        elif cond is not None and cond.numel():
            raise ValueError(f"model has cond_dim=0 but got cond of shape {tuple(cond.shape)}")
        summaries = []
        if self.use_cano:
            summaries.append(self.cano.summarize("time", self.time_tokens(temb)))
            if tokens is not None:
                summaries.append(self.cano.summarize("cond", tokens))
        return Context(film, tokens, summaries, n_total, knn_window(n_total, self.grid_size, 4.0 * self.knn),
                       hooks=self)

    # ---- segments (pointwise given the finished stages; see models/staged.py) --------------------------
    def segment(self, k: int, h: torch.Tensor | None, x: torch.Tensor, coords: torch.Tensor, ctx: Context,
                summ: list) -> torch.Tensor:
        """Run segment k on one chunk of points: (B, n, ·) → (B, n, d) (segment 4 → the prediction (B, n, C))."""
        segments = (self.lift_points, self.after_kernel_in, self.after_attention, self.after_grid, self.predict)
        return segments[k](h, x, coords, ctx, summ)

    def lift_points(self, h, x: torch.Tensor, coords: torch.Tensor, ctx: Context, summ: list) -> torch.Tensor:
        """Segment 0: lift [x, γ(coords)] to d channels."""
        return self.lift(torch.cat([x.float(), fourier_features(coords.float(), self.fourier_freqs)], dim=-1))

    def after_kernel_in(self, h: torch.Tensor, x, coords: torch.Tensor, ctx: Context, summ: list) -> torch.Tensor:
        """Segment 1: the sparse operator read at the points, FiLM-MLP, CANO (a condition hook)."""
        h = self.mlp1(self.sparse_in(h, coords, summ[0].field), ctx.temb)
        return ctx.hooks.cano_attend(h, coords, ctx, summ[0].coord) if self.use_cano else h

    def after_attention(self, h: torch.Tensor, x, coords: torch.Tensor, ctx: Context, summ: list) -> torch.Tensor:
        """Segment 2: the self-attention read from its summary (a condition hook), FiLM-MLP."""
        return self.mlp2(ctx.hooks.attention_apply(h, coords, ctx, summ[1]), ctx.temb)

    def after_grid(self, h: torch.Tensor, x, coords: torch.Tensor, ctx: Context, summ: list) -> torch.Tensor:
        """Segment 3: the UNO grid read back at the points (bilinear), added as a skip."""
        return h + self.from_grid(bilinear_gather(summ[2], coords))

    def predict(self, h: torch.Tensor, x: torch.Tensor, coords: torch.Tensor, ctx: Context,
                summ: list) -> torch.Tensor:
        """Segment 4: the output kernel integral, FiLM-MLP, head (+ the value skip) → ε̂ or v̂ (B, n, C)."""
        h = self.mlp3(self.sparse_out(h, coords, summ[3]), ctx.temb)
        out = self.head(self.head_norm(h))
        if self.value_skip is not None:
            c = self.in_channels
            skip = self.value_skip(ctx.temb).view(-1, c, c)  # (B, C, C)
            out = out + torch.einsum("bij,bnj->bni", skip, x.float())
        return ctx.hooks.finish_output(out, coords, ctx)

    # ---- stages (global over points) --------------------------------------------------------------
    def stage_partial(self, k: int, h: torch.Tensor, coords: torch.Tensor, ctx: Context, index_offset: int = 0) -> Any:
        """Contribution of one chunk (h = output of segment k) to stage k's accumulator."""
        if k == 0:  # the input kernel integral's splats and the CANO coordinate source
            coord = self.cano.summarize("coord", self.coord_embed(fourier_features(coords.float(), self.fourier_freqs))) \
                if self.use_cano else None
            return KernelPartial(self.sparse_in.partial(h, coords), coord)
        if k == 1:  # the self-attention summary (a condition hook)
            return ctx.hooks.attention_summary(h, coords, ctx)
        if k == 2:  # the kNN grid
            # sampling (eval mode) evaluates the same lattice at every step: reuse the kNN selection of a
            # single-chunk call (a chunked call over many chunks would need one plan per chunk: not cached)
            cache = self._knn_cache if not self.training and index_offset == 0 and coords.shape[1] == ctx.n_total \
                else None
            return knn_partial(self.to_grid(h), coords, self.grid_size, self.knn, ctx.window, index_offset, cache)
        return self.sparse_out.partial(h, coords)  # the output kernel integral's splats

    @staticmethod
    def stage_merge(k: int, acc: Any, part: Any) -> Any:
        """Accumulate a chunk's partial into ``acc`` (None at the first chunk)."""
        if acc is None:
            return part
        if k == 0:
            coord = add_summaries(acc.coord, part.coord) if part.coord is not None else None
            return KernelPartial(acc.splat + part.splat, coord)
        if k == 1:
            return add_summaries(acc, part)
        if k == 2:
            return knn_merge(acc, part)
        return acc + part

    def stage_finalize(self, k: int, acc: Any, ctx: Context) -> Any:
        """Turn the accumulated partials into what segment k + 1 reads (fields, summaries, the UNO grid)."""
        if k == 0:
            return KernelSummary(self.sparse_in.finalize(acc.splat), acc.coord)
        if k == 1:
            return acc
        if k == 2:
            grid = knn_to_grid(acc, self.grid_size)  # (B, Cg, G, G)
            if self.grid_dtype is None:
                return grid + ctx.hooks.grid_unet(grid, ctx)
            with torch.autocast(grid.device.type, dtype=self.grid_dtype):  # the grid UNet in bf16
                return grid + ctx.hooks.grid_unet(grid, ctx).float()
        return self.sparse_out.finalize(acc)

    # ---- condition hooks (models/staged.py ConditionHooks): one condition per image -----------------
    def cano_attend(self, h: torch.Tensor, coords: torch.Tensor, ctx: Context, coord_summary: Any) -> torch.Tensor:
        return self.cano(h, ctx.source_summaries + [coord_summary])

    def attention_summary(self, h: torch.Tensor, coords: torch.Tensor, ctx: Context) -> Any:
        return self.self_attn.summarize(h)

    def attention_apply(self, h: torch.Tensor, coords: torch.Tensor, ctx: Context, summary: Any) -> torch.Tensor:
        return self.self_attn(h, summary)

    def grid_unet(self, grid: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.uno(grid, ctx.temb, ctx.tokens)

    def finish_output(self, out: torch.Tensor, coords: torch.Tensor, ctx: Context) -> torch.Tensor:
        return out

    # ---- one-pass forward -------------------------------------------------------------------------
    def check_inputs(self, x: torch.Tensor, coords: torch.Tensor, t: torch.Tensor) -> None:
        """Shape checks: x (B, N, C), coords (B, N, 2), t (B,)."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must be (B, N, {self.in_channels}), got {tuple(x.shape)}")
        if coords.shape != (*x.shape[:2], 2):
            raise ValueError(f"coords must be {(*x.shape[:2], 2)}, got {tuple(coords.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be ({x.shape[0]},), got {tuple(t.shape)}")

    def forward(self, x: torch.Tensor, coords: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                image_size: tuple[int, int] | None = None, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, C) noisy values, coords (B, N, 2) (x, y) pixel centres in [0, 1], t (B,) in [0, T),
        cond (B, D) | None, image_size (H, W) of the lattice (geometry lives in coords; accepted for the
        API), cond_mask (B,) bool (False → null condition) → ε̂ (B, N, C) float32."""
        self.check_inputs(x, coords, t)
        return run_all(self, x, coords, self.begin(t, cond, cond_mask, x.shape[1]))
