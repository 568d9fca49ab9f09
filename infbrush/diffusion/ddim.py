"""DDIM sampling (eta = 0) of the image function on any H×W pixel lattice (paper sec. 5.2)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from infbrush.diffusion.mollifier import mollified_noise_grid
from infbrush.diffusion.points import lattice_coords
from infbrush.diffusion.schedule import ddim_step, ddim_timesteps, eps_from_x0, predict_x0


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


def guided_eps(denoise: Callable, x: torch.Tensor, coords: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
               size: tuple[int, int], guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance ε = ε_∅ + s (ε_c - ε_∅) (one batched call); s = 1 or no cond: ε_c alone."""
    if cond is None or guidance_scale == 1.0:
        return denoise(x, coords, t, cond, size)
    batch = x.shape[0]
    mask = torch.cat([torch.ones(batch, dtype=torch.bool), torch.zeros(batch, dtype=torch.bool)]).to(x.device)
    eps = denoise(torch.cat([x, x]), torch.cat([coords, coords]), torch.cat([t, t]), torch.cat([cond, cond]), size,
                  cond_mask=mask)
    eps_c, eps_u = eps[:batch], eps[batch:]
    return eps_u + guidance_scale * (eps_c - eps_u)


@torch.no_grad()
def ddim_sample(
    model,
    cond: torch.Tensor | None,
    size: tuple[int, int],
    *,
    steps: int,
    seeds: list[int],
    alpha_bar: torch.Tensor,
    mollify_sigma: float,
    guidance_scale: float = 1.0,
    chunk_points: int | None = None,
    in_channels: int = 3,
    progress: bool = False,
    clip_x0: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sample B = len(seeds) images on the H×W lattice → (B, C, H, W) in [-1, 1].

    ``model`` is a denoiser (or any callable with its signature); with ``chunk_points`` it is evaluated by
    ``chunked_forward`` so peak model memory is set by the chunk, not by H·W. x_T is the mollified noise
    function of seeds[i] (std ``mollify_sigma`` × image side) read on the lattice, so image i depends only
    on seeds[i] and cond[i], never on the batch size or the chunking, and the output size is free.
    ``clip_x0`` clips x̂_0 to [-1, 1] at each step (ε is made consistent with the clipped x̂_0).
    """
    from infbrush.models.chunked import ChunkedDenoiser  # diffusion does not import models at module level

    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    batch = len(seeds)
    if batch == 0:
        raise ValueError("seeds must name at least one image")
    if cond is not None and cond.shape[0] != batch:
        raise ValueError(f"cond has {cond.shape[0]} rows for {batch} seeds")
    device = torch.device(device) if device is not None else _device_of(model, cond)
    denoise = ChunkedDenoiser(model, chunk_points) if chunk_points else model
    coords = lattice_coords(size, device).unsqueeze(0).expand(batch, -1, -1)  # (B, N, 2)
    x = initial_noise(size, seeds, mollify_sigma, in_channels, device)  # (B, N, C)
    cond = cond.to(device) if cond is not None else None
    alpha_bar = alpha_bar.to(torch.float64)
    ts = ddim_timesteps(steps, alpha_bar.shape[0])
    iterator = ts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ts, desc=f"DDIM {height}x{width}")
    for i, t in enumerate(iterator):
        a_t = float(alpha_bar[t])
        a_prev = float(alpha_bar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        t_batch = torch.full((batch,), t, device=device, dtype=torch.long)
        eps = guided_eps(denoise, x, coords, t_batch, cond, size, guidance_scale).to(x.dtype)
        if clip_x0:
            eps = eps_from_x0(x, predict_x0(x, eps, a_t).clamp(-1, 1), a_t)
        x = ddim_step(x, eps, a_t, a_prev)
    return x.view(batch, height, width, in_channels).permute(0, 3, 1, 2).clamp(-1, 1)
