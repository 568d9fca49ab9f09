"""Benchmark: WSI tiling throughput and training-loader throughput, side by side in one run.

1. Tiling (coords + reading every patch's pixels), patches/s: ``infbrush tile`` (tissue mask at a low level,
   pyramid level nearest the target, parallel workers) against a naive single-process loop of
   ``read_region`` at level 0 followed by a resize, over the same patches. Two settings:
   ``10x_from_40x`` (0.25 µm/px slide, 128² patches at 1 µm/px: pyramid level 1 is read directly; 128²
   rather than 256² so that an 8192² test slide has TCGA-like hundreds of patches per slide) and
   ``demo`` (0.5 µm/px slide, 1 µm/px patches: level 0 read and resized, so only the workers help).
2. Loader, large images/s in random order: the HDF5 image-store cache (the default training path) against
   on-the-fly OpenSlide reads (``SlidePatchDataset``), at the demo 256² setting and at 4096², next to the
   model's training step time when the model package provides a preset.

Files are written here (pyramidal SVS with tifffile) into a temporary directory; the last line printed is
one JSON object. Runs in about two minutes on 2 CPU cores.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from infbrush.data.patches import CHUNK, SlidePatchDataset, extract_patches, read_patches
from infbrush.data.store import ImageStore
from infbrush.data.tiling import TilingParams, process_context, read_coords, tile_slides, write_pyramidal_tiff

WORKERS = 2


def synthetic_slide(width: int, height: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 H&E-like slide: textured pink/purple blobs on glass."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height:8, 0:width:8]
    field = np.zeros(yy.shape, np.float32)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.15, 0.3) * min(width, height)
        field += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r ** 2))
    tissue = np.kron(field > 0.5, np.ones((8, 8), bool))[:height, :width]
    image = np.full((height, width, 3), 236, np.uint8)
    noise = rng.integers(-30, 30, (height // 4 + 1, width // 4 + 1, 1)).astype(np.int16)
    noise = np.kron(noise, np.ones((4, 4, 1), np.int16))[:height, :width]
    pink = np.clip(np.array([200, 110, 180], np.int16) + noise, 0, 255).astype(np.uint8)
    image[tissue] = pink[tissue]
    return image


def naive_read(slide_path: str, coords: np.ndarray, patch_level0: int, patch_size: int) -> int:
    """Single process: read_region at level 0, then resize; returns the number of patches read."""
    import openslide
    from PIL import Image

    with openslide.OpenSlide(slide_path) as slide:
        for x, y in coords:
            region = slide.read_region((int(x), int(y)), 0, (patch_level0, patch_level0)).convert("RGB")
            np.asarray(region.resize((patch_size, patch_size), Image.Resampling.BICUBIC))
    return len(coords)


def tiling_setting(root: Path, name: str, mpp: float, target_mpp: float, size: tuple[int, int],
                   patch_size: int = 256) -> dict:
    slides = root / name
    slides.mkdir()
    write_pyramidal_tiff(slides / "a.svs", synthetic_slide(*size, seed=1), mpp)
    shutil.copy(slides / "a.svs", slides / "b.svs")
    params = TilingParams(patch_size=patch_size, target_mpp=target_mpp, mask_max_side=1024)
    tiles = root / f"{name}_tiles"

    start = time.perf_counter()
    tile_slides(sorted(slides.glob("*.svs")), tiles, params, workers=WORKERS, progress=False)
    coords_s = time.perf_counter() - start
    tasks = []
    for h5 in sorted(tiles.glob("*.h5")):
        coords, attrs = read_coords(h5)
        tasks += [(str(slides / f"{attrs['slide_id']}.svs"), coords[i:i + CHUNK], attrs)
                  for i in range(0, len(coords), CHUNK)]
    with ProcessPoolExecutor(WORKERS, mp_context=process_context()) as pool:
        n_ours = sum(len(chunk) for chunk in pool.map(read_patches, tasks))
    ours = time.perf_counter() - start
    read_s = ours - coords_s

    start = time.perf_counter()
    n_naive = sum(naive_read(path, coords, int(attrs["patch_size_level0"]), patch_size)
                  for path, coords, attrs in tasks)
    naive = time.perf_counter() - start
    assert n_naive == n_ours
    level = int(tasks[0][2]["patch_level"])
    return {"patches": n_ours, "patch_size": patch_size, "patch_level": level, "coords_s": coords_s,
            "ours_patches_per_s": n_ours / ours, "naive_patches_per_s": n_naive / naive, "speedup": naive / ours,
            "read_only_speedup": naive / read_s}


def loader_setting(root: Path, name: str, patch_size: int, mpp: float, size: tuple[int, int], reads: int) -> dict:
    slides = root / name
    slides.mkdir()
    write_pyramidal_tiff(slides / "a.svs", synthetic_slide(*size, seed=2), mpp)
    tiles = root / f"{name}_tiles"
    params = TilingParams(patch_size=patch_size, target_mpp=mpp, mask_max_side=1024, min_tissue_fraction=0.25)
    tile_slides([slides / "a.svs"], tiles, params, progress=False)
    store_path = root / f"{name}.h5"
    start = time.perf_counter()
    extract_patches(tiles, [slides], store_path, thumb_size=64, class_maps=False, workers=WORKERS, progress=False)
    build = time.perf_counter() - start
    store, on_the_fly = ImageStore(store_path), SlidePatchDataset(tiles, [slides])
    order = np.random.default_rng(0).integers(0, len(store), reads)
    rates = {}
    for label, dataset in (("store", store.image), ("on_the_fly", on_the_fly.__getitem__)):
        dataset(int(order[0]))  # open handles outside the timing
        start = time.perf_counter()
        for i in order:
            dataset(int(i))
        rates[label] = reads / (time.perf_counter() - start)
    return {"images": len(store), "store_build_s": build, "store_images_per_s": rates["store"],
            "on_the_fly_images_per_s": rates["on_the_fly"], "store_vs_on_the_fly": rates["store"] / rates["on_the_fly"]}


def model_step_seconds(image_size: int, n_points: int, batch: int) -> float | None:
    """Seconds per training step of the demo-preset model on CPU, or None if the model package lacks one."""
    try:
        import torch

        from infbrush.diffusion import cosine_alpha_bar, training_loss
        from infbrush.models import build_model, model_args_from_preset
    except ImportError:
        return None
    torch.manual_seed(0)
    model = build_model(model_args_from_preset("demo", 3, 64, True))
    images = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    cond = torch.randn(batch, 64)
    alpha_bar = cosine_alpha_bar(1000)
    generators = [torch.Generator().manual_seed(i) for i in range(batch)]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loss = training_loss(model, images, cond, n_points, generators, alpha_bar=alpha_bar,
                             mollify_sigma=1.0 / image_size)
        loss.backward()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main() -> int:
    result: dict = {"workers": WORKERS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result["tiling_10x_from_40x"] = tiling_setting(root, "t40", 0.25, 1.0, (8192, 6144), patch_size=128)
        print("tiling 10x from 40x:", result["tiling_10x_from_40x"], file=sys.stderr)
        result["tiling_demo"] = tiling_setting(root, "tdemo", 0.5, 1.0, (4096, 3072))
        print("tiling demo:", result["tiling_demo"], file=sys.stderr)
        result["loader_256"] = loader_setting(root, "l256", 256, 0.5, (4096, 3072), reads=200)
        print("loader 256:", result["loader_256"], file=sys.stderr)
        result["loader_4096"] = loader_setting(root, "l4096", 4096, 0.5, (8192, 4096), reads=4)
        print("loader 4096:", result["loader_4096"], file=sys.stderr)
    try:
        result["model_step_s_demo_256"] = model_step_seconds(256, 4096, 4)
    except Exception as err:  # noqa: BLE001 - the model is another stage's; report, do not fail
        result["model_step_s_demo_256"] = f"unavailable: {type(err).__name__}: {err}"
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
