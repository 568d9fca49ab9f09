"""Sampling the image function on any H×W pixel lattice (paper sec. 5.2): DDIM (eta = 0) and the other
pointwise samplers of ``samplers.py``, guidance as a wrapper (``guidance.py``).

Memory: the only per-pixel state kept between steps is x_t itself, (B, H·W, C) float32 (12 bytes per RGB
pixel), and a multistep sampler's history (one to three more such buffers), in RAM or — with ``state_dir`` —
in unlinked scratch files read and written one chunk at a time, so peak RSS is set by the chunk, not the image. Everything else is made per chunk of points: coordinates from
the lattice index, x_T from the mollified-noise function of the seed (one band of rows at a time), ε̂ from a
streamed chunked forward, and the sampler's pointwise update of x̂_0, written back in place.
"""
from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import torch

from infbrush.diffusion.guidance import GuidedDenoiser, check_guidance_interval
from infbrush.diffusion.mollifier import mollified_noise_grid, noise_bands
from infbrush.diffusion.points import index_to_coords
from infbrush.diffusion.samplers import make_sampler
from infbrush.diffusion.schedule import PREDICTIONS, eps_from_v, eps_from_x0, predict_x0, sampling_timesteps, x0_from_v
from infbrush.diffusion.settings import SamplingMemory, SamplingSettings
from infbrush.runtime.chunks import check_chunk_points

if TYPE_CHECKING:
    from infbrush.diffusion.process import Diffusion

NOISE_BAND_POINTS = 1 << 22  # x_T is made in bands of at most this many points (48 MiB for RGB)


def _device_of(model, cond: torch.Tensor | None) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return cond.device if cond is not None else torch.device("cpu")


def initial_noise(size: tuple[int, int], seeds: list[int], mollify_sigma: float, channels: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """x_T: the mollified noise function of each seed on the H×W lattice → (B, H·W, C) (row-major points)."""
    height, width = size
    return torch.stack([
        mollified_noise_grid(size, s, mollify_sigma, channels, device).permute(1, 2, 0).reshape(height * width, channels)
        for s in seeds
    ])


class SamplerState:
    """x_t of B images as (B, N, C) float32, in RAM or in an anonymous scratch file under ``state_dir``.

    ``read(s, e)`` → (B, e-s, C) tensor of points s..e-1 (a view in RAM, a fresh buffer from the file);
    ``write(s, e, values)`` stores them. The file is unlinked at creation, so nothing is left behind.
    """

    def __init__(self, batch: int, n_points: int, channels: int, device: torch.device,
                 state_dir: str | os.PathLike | None = None):
        self.batch, self.n_points, self.channels, self.device = batch, n_points, channels, device
        self.file = None
        if state_dir is None:
            self.x = torch.empty(batch, n_points, channels, device=device)
            return
        if device.type != "cpu":
            raise ValueError(f"state_dir keeps x_t on disk and needs device cpu, got {device}")
        os.makedirs(state_dir, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=state_dir, prefix="ddim_state_")
        self.file.truncate(batch * n_points * channels * 4)
        self._row = n_points * channels * 4  # bytes per image

    def read(self, start: int, stop: int) -> torch.Tensor:
        if self.file is None:
            return self.x[:, start:stop]
        out = np.empty((self.batch, stop - start, self.channels), dtype=np.float32)
        for b in range(self.batch):
            view = memoryview(out[b]).cast("B")
            got = os.preadv(self.file.fileno(), [view], b * self._row + start * self.channels * 4)
            if got != view.nbytes:
                raise OSError(f"short read of the DDIM state file ({got} of {view.nbytes} bytes)")
        return torch.from_numpy(out)

    def write(self, start: int, stop: int, values: torch.Tensor, image: int | None = None) -> None:
        """Store points start..stop-1 of every image from values (B, n, C), or of one ``image`` from (n, C)."""
        if self.file is None:
            target = self.x[:, start:stop] if image is None else self.x[image, start:stop]
            target.copy_(values)
            return
        arr = np.ascontiguousarray(values.detach().to("cpu", torch.float32).numpy())
        rows = range(self.batch) if image is None else [image]
        for j, b in enumerate(rows):
            view = memoryview(arr[j] if image is None else arr).cast("B")
            if os.pwrite(self.file.fileno(), view, b * self._row + start * self.channels * 4) != view.nbytes:
                raise OSError("short write to the DDIM state file")

    def images(self, size: tuple[int, int]) -> torch.Tensor:
        """The state as (B, C, H, W) (a view; memory-mapped from the scratch file when on disk)."""
        height, width = size
        if self.file is None:
            x = self.x
        else:
            self.file.flush()
            x = torch.from_numpy(np.memmap(self.file, dtype=np.float32, mode="r+",
                                           shape=(self.batch, self.n_points, self.channels)))
            self.file.close()  # the mapping keeps the (unlinked) file alive
        return x.view(self.batch, height, width, self.channels).permute(0, 3, 1, 2)


def noise_rows_per_band(width: int) -> int:
    """Rows of x_T made at once: 512 (as ``initial_noise``) up to 8192 columns, fewer beyond (≤ 2²² points).

    A function of the width only, never of the chunking: the band split changes x_T by float rounding, which
    the first DDIM step (1/sqrt(ᾱ_T) ≫ 1) amplifies where x̂_0 is not clipped.
    """
    return max(1, min(512, NOISE_BAND_POINTS // width))


def fill_initial_noise(state: SamplerState, size: tuple[int, int], seeds: list[int], mollify_sigma: float,
                       rows_per_band: int) -> None:
    """Write x_T (the mollified noise of each seed, ``initial_noise``) into ``state`` one band of rows at a time."""
    width = size[1]
    step = max(1, (1 << 18) // width)  # rows converted and written at once: copies of ≤ 256k points, not the band
    for b, seed in enumerate(seeds):
        for r0, band in noise_bands(size, seed, mollify_sigma, state.channels, state.device, rows_per_band):
            for i in range(0, band.shape[1], step):  # the band itself (hence x_T) is unchanged by this split
                part = band[:, i:i + step]
                values = part.permute(1, 2, 0).reshape(part.shape[1] * width, state.channels)  # (n, C)
                state.write((r0 + i) * width, (r0 + i + part.shape[1]) * width, values, image=b)


def _lattice_chunk_coords(start: int, stop: int, size: tuple[int, int], batch: int,
                          device: torch.device) -> torch.Tensor:
    """Pixel-centre coords of row-major lattice points start..stop-1 → (batch, n, 2) (a broadcast view)."""
    coords = index_to_coords(torch.arange(start, stop, device=device), size)  # (n, 2)
    return coords.unsqueeze(0).expand(batch, -1, -1)


def _evaluate(model, size: tuple[int, int], n_points: int, read, write, t, cond, chunk_points, cache_bytes) -> None:
    """The denoiser's prediction over all points: streamed chunk by chunk when it streams, else one call."""
    if hasattr(model, "stream"):
        model.stream(n_points, read, write, t, cond, chunk_points=chunk_points, cache_bytes=cache_bytes)
    else:
        x, coords = read(0, n_points)
        write(0, n_points, model(x, coords, t, cond, size))


@torch.no_grad()
def ddim_sample(
    model,
    cond: torch.Tensor | None,
    size: tuple[int, int],
    *,
    seeds: list[int],
    diffusion: Diffusion,
    settings: SamplingSettings = SamplingSettings(),
    memory: SamplingMemory = SamplingMemory(),
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample B = len(seeds) images of the process ``diffusion`` on the H×W lattice → (B, C, H, W) in [-1, 1].

    ``model`` is a denoiser (or any callable with its signature); its ``prediction`` attribute says what it
    outputs, "eps" or "v" (absent: "eps"), and ``in_channels`` how many channels C (absent: 3). After guidance,
    v̂ gives ε̂ = sqrt(1-ᾱ) x_t + sqrt(ᾱ) v̂ and x̂_0 = sqrt(ᾱ) x_t - sqrt(1-ᾱ) v̂. One with a ``stream`` method
    (the denoiser, or a wrapper such as ``RankSplitDenoiser``) is evaluated over chunks of
    ``memory.chunk_points`` points, so peak memory is set by the chunk (plus the ``memory.cache_bytes`` of
    activations kept between its passes), not by H·W. x_T is the mollified noise function of seeds[i] (std
    ``diffusion.mollify_sigma`` × image side) read on the lattice, so image i depends only on seeds[i] and
    cond[i], never on the batch size or the chunking, and the output size is free.
    ``settings`` (:class:`SamplingSettings`): ``sampler`` a name of ``SAMPLERS`` (``diffusion/samplers.py``),
    ``steps`` network evaluations each (two at guided steps), at timesteps spaced by ``spacing`` ("linear" in t,
    the paper's; "lambda": even in log-SNR, ``sampling_timesteps``); ``clip_x0`` clips x̂_0 to [-1, 1] at each
    step (ε is made consistent with the clipped x̂_0); classifier-free guidance of scale ``guidance_scale`` at
    the steps with t_lo ≤ t ≤ t_hi of ``guidance_interval`` (None: every step; ``GuidedDenoiser``), the other
    steps running one conditional pass. Multistep samplers keep their per-point history beside x_t.
    ``memory.state_dir``: keep x_t (and that history) in anonymous scratch files there instead of RAM (for
    outputs beyond RAM; CPU only); the result is then a read-write memory map of that file (B, C, H, W), freed
    with the tensor.
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    batch = len(seeds)
    if batch == 0:
        raise ValueError("seeds must name at least one image")
    if cond is not None and cond.shape[0] != batch:
        raise ValueError(f"cond has {cond.shape[0]} rows for {batch} seeds")
    chunk_points, cache_bytes, state_dir = memory.chunk_points, memory.cache_bytes, memory.state_dir
    if cache_bytes < 0:
        raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes}")
    prediction = getattr(model, "prediction", "eps")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    in_channels = int(getattr(model, "in_channels", 3))
    n_points = height * width
    check_chunk_points(chunk_points)  # before any work (the chunks themselves are the model's)
    alpha_bar = diffusion.alpha_bar().to(torch.float64)
    ts = sampling_timesteps(settings.steps, alpha_bar, settings.spacing)
    rule = make_sampler(settings.sampler, alpha_bar, ts)
    interval = check_guidance_interval(settings.guidance_interval, alpha_bar.shape[0])
    device = torch.device(device) if device is not None else _device_of(model, cond)
    cond = cond.to(device) if cond is not None else None
    if cond is not None and settings.guidance_scale != 1.0:
        model = GuidedDenoiser(model, settings.guidance_scale, interval)
    state = SamplerState(batch, n_points, in_channels, device, state_dir)
    history = {name: SamplerState(batch, n_points, in_channels, device, state_dir) for name in rule.buffers}
    fill_initial_noise(state, size, seeds, diffusion.mollify_sigma, noise_rows_per_band(width))
    iterator = ts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ts, desc=f"{settings.sampler} {height}x{width}")
    for i, t in enumerate(iterator):
        a_t = float(alpha_bar[t])
        last_step = i + 1 == len(ts)
        last: dict = {}  # the chunk most recently read: its x_t is reused by the update

        def read(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = state.read(start, stop)  # (B, n, C)
            last.update(span=(start, stop), x=x)
            return x, _lattice_chunk_coords(start, stop, size, batch, device)

        def update(start: int, stop: int, out: torch.Tensor) -> None:
            x = last["x"] if last.get("span") == (start, stop) else state.read(start, stop)
            out = out.to(x.dtype)
            if prediction == "v":  # x̂_0 straight from v̂: no cancellation at high noise
                eps, x0 = eps_from_v(x, out, a_t), x0_from_v(x, out, a_t)
            else:
                eps, x0 = out, predict_x0(x, out, a_t)
            if settings.clip_x0:
                x0 = x0.clamp(-1, 1)
                eps = eps_from_x0(x, x0, a_t)
            # copies, not views of the buffers: a sampler may hand one buffer's old value on to another
            hist = {name: buf.read(start, stop).clone() for name, buf in history.items()}
            x_prev, hist = rule.step(i, x, x0, eps, hist)
            for name, buf in history.items():
                buf.write(start, stop, hist[name])
            state.write(start, stop, x_prev.clamp(-1, 1) if last_step else x_prev)

        t_model = torch.full((batch,), t, device=device, dtype=torch.long)
        _evaluate(model, size, n_points, read, update, t_model, cond, chunk_points, cache_bytes)
    if hasattr(model, "gather_state"):  # split over processes: each updated its own chunks; bring them together
        model.gather_state(n_points, state.read, state.write, chunk_points)
    return state.images(size)
