"""Sampling driver: EMA weights + ``SampleSpec`` list → images at one resolution, resumable per image.

Memory: ``ddim_sample`` keeps only the DDIM state x_t of the whole image (12 bytes per pixel for RGB float32:
0.2 GB at 4096², 3.2 GB at 16384²) because every denoiser call has stages that are global over points; the
denoiser itself runs over ``chunk_points`` points at a time (``SamplingMemory``), so its activations stay
bounded. With ``state_dir`` x_t lives in a scratch file there instead of RAM (CPU), so peak memory is bounded by
the chunk whatever the output size. The result is converted to uint8 and written one row band at a time (a
pyramidal TIFF for large images), so no uint8 copy of the full image is ever made.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from infbrush.diffusion.settings import SamplingMemory, SamplingSettings
from infbrush.errors import InfbrushError
from infbrush.sample.conditions import SampleSpec
from infbrush.sample.outputs import PNG_MAX_SIDE, SampleIndex, choose_format, write_image
from infbrush.sample.tiff import PyramidOptions

if TYPE_CHECKING:
    from infbrush.diffusion.process import Diffusion

# What `infbrush sample` does unless told otherwise (the rest of its defaults are those of SamplingSettings,
# ImageOutput and Execution):
DEFAULT_CHUNK_POINTS = 1 << 16  # points per denoiser chunk: bounds activation memory (0 / None: whole image at once)
DEFAULT_SEED = 0                # image i uses seed DEFAULT_SEED + i
DEFAULT_PER_CLASS = 4           # images per prompt / class label


@dataclass(frozen=True)
class ImageOutput:
    """How ``sample_resolution`` writes an image: ``fmt`` "png", "tiff" (pyramidal) or "auto" (PNG up to
    ``png_max_side``, TIFF above), the TIFF tiles' ``compression`` ("jpeg" or "deflate"), and ``mpp`` (microns per
    pixel) recorded in the file when known."""

    fmt: str = "auto"
    png_max_side: int = PNG_MAX_SIDE
    compression: str = PyramidOptions.compression
    mpp: float | None = None


@dataclass(frozen=True)
class Execution:
    """Where and how ``sample_resolution`` computes its images; only ``precision`` changes them beyond float
    rounding. ``precision``: "off" (float32), "bf16" (autocast of the whole denoiser) or "bf16-grid" (its grid UNet
    only); ``memory``: the sampler's chunking and where x_t lives; ``batch_pixels``: images per batch =
    max(1, batch_pixels // (H·W)), 16 at 256², 1 from 1024²."""

    device: str = "cpu"
    precision: str = "off"
    memory: SamplingMemory = SamplingMemory()
    batch_pixels: int = 1 << 20


def load_weights(path: str | os.PathLike, device: str = "cpu"):
    """(model in eval mode on ``device``, checkpoint dict) from an exported ``ema.pt`` (or a training checkpoint)."""
    import torch

    from infbrush.models import build_model

    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: model weights not found (run `infbrush train` first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, not a torch file, unsafe pickle
        from infbrush.runtime.checkpoint import unreadable_reason

        raise InfbrushError(f"{path}: cannot load weights: {unreadable_reason(path, err)}; expected the model export "
                            f"of `infbrush train --export` (ema.pt) or a training checkpoint ckpt_*.pt") from None
    if not isinstance(ckpt, dict) or "model_args" not in ckpt or ("model" not in ckpt and "ema" not in ckpt):
        raise InfbrushError(f"{path}: not an infbrush export (needs 'model' and 'model_args')")
    try:
        model = build_model(ckpt["model_args"])
        model.load_state_dict(ckpt["model"] if "model" in ckpt and "ema" not in ckpt else ckpt["ema"])
    except (ValueError, RuntimeError) as err:
        raise InfbrushError(f"{path}: weights do not fit model_args ({str(err).splitlines()[0]})") from None
    return model.to(device).eval().requires_grad_(False), ckpt


def split_over_ranks(model, device: str):
    """Under ``torchrun`` / ``srun`` with more than one process: join the process group (gloo on CPU, NCCL on
    GPUs) and wrap ``model`` so that all ranks sample each image together, its chunks split over them.
    → (model or its wrapper, device, rank); a single process gets (model, device, 0) unchanged."""
    from infbrush.runtime.distributed import init_distributed, rank_layout

    if rank_layout()[1] <= 1:
        return model, device, 0
    from infbrush.models.ranks import RankSplitDenoiser

    info = init_distributed(device)
    return RankSplitDenoiser(model.to(info.device)), str(info.device), info.rank


def sample_resolution(
    model,
    specs: Sequence[SampleSpec],
    out_dir: str | os.PathLike,
    size: tuple[int, int],
    *,
    diffusion: Diffusion,
    settings: SamplingSettings = SamplingSettings(),
    record: dict,
    output: ImageOutput = ImageOutput(),
    execution: Execution = Execution(),
    progress: bool = True,
) -> list[dict]:
    """Generate every spec at ``size`` (H, W) into ``out_dir`` (PNG/TIFF + index.json); skip complete ones.

    Image i is ``ddim_sample`` of the process ``diffusion`` with ``settings`` and seed ``spec.seed``: independent
    of batching and of resumption. ``record``: what index.json records of the run; finished images made under
    another record are made again. A ``RankSplitDenoiser`` (``model.rank``, ``model.world``): every rank runs this
    with the same arguments and only rank 0 writes. Returns the index entries, in ``specs`` order.
    """
    import contextlib

    import torch
    from tqdm import tqdm

    from infbrush.diffusion import ddim_sample
    from infbrush.models import set_precision

    device, precision, chunk_points = execution.device, execution.precision, execution.memory.chunk_points
    if getattr(model, "world", 1) > 1:  # split over ranks: every rank needs a chunk of every image
        from infbrush.models.ranks import rank_spans

        try:
            rank_spans(size[0] * size[1], chunk_points, 0, model.world)
        except ValueError as err:
            raise InfbrushError(f"--chunk-points {chunk_points} at {size[0]}x{size[1]}: {err}") from None
    if precision != "off" and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InfbrushError(f"--amp {precision}: this GPU has no bf16 support; use --amp off")
    # (on a CPU without AVX-512-bf16/AMX, torch emulates bf16: same results, slower — use --amp off there)
    set_precision(getattr(model, "model", model), precision)
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
    main = getattr(model, "rank", 0) == 0

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = size
    kind = choose_format(output.fmt, size, output.png_max_side)
    suffix = ".png" if kind == "png" else ".tiff"
    index = SampleIndex(out_dir, size, record)
    todo = [s for s in specs if not index.is_complete(s.name)]
    per_batch = max(1, execution.batch_pixels // (height * width))
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=f"sample {height}x{width}", unit="img",
               disable=not progress or not main)
    for b0 in range(0, len(todo), per_batch):
        batch = todo[b0:b0 + per_batch]
        cond = None
        if batch[0].cond is not None:
            cond = torch.stack([torch.as_tensor(s.cond, dtype=torch.float32) for s in batch]).to(device)  # (B, D)
        with torch.no_grad(), autocast():
            images = ddim_sample(model, cond, (height, width), seeds=[s.seed for s in batch], diffusion=diffusion,
                                 settings=settings, memory=execution.memory,
                                 progress=progress and main and len(batch) == 1)  # (B, C, H, W) in [-1, 1]
        if not main:  # another rank holds the image; rank 0 writes it
            bar.update(len(batch))
            continue
        for spec, image in zip(batch, images):
            file = spec.name + suffix
            write_image(out_dir / file, image, kind, mpp=output.mpp,
                        options=PyramidOptions(compression=output.compression))
            index.add({"file": file, "name": spec.name, "seed": spec.seed, "source": spec.source,
                       "source_id": spec.source_id, "label": spec.label, "label_name": spec.label_name,
                       "resolution": [height, width], "format": kind})
            bar.update(1)
        del images
        index.save()
    bar.close()
    if not main:
        return []
    index.save(order=[s.name for s in specs])
    return [index.entries[s.name] for s in specs]
