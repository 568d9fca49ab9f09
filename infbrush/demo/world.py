"""The embedded demo world: synthetic inputs in the same file formats as the real ones.

Layout under ``out`` (every file is listed with its sha256 and role in ``manifest.json``)::

    slides/demo_slide_XX.svs          Aperio SVS: JPEG-tiled pyramid (downsamples 1, 4, 16, ...) + thumbnail
    slides/demo_slide_NN.tiff         generic pyramidal tiled TIFF (NN = n_slides), resolution tags for MPP
    slides/demo_slide_XX_classes.png  uint8 class index per class_map_downsample x class_map_downsample cell
                                      (0 normal, 1 benign, 2 in_situ, 3 invasive, 255 background)
    slides/broken_slide.svs           truncated copy of slide 00: OpenSlide refuses it
    slides/empty_slide.svs            zero bytes
    naip/demo_naip.tif                4-band (R, G, B, NIR) uint8 GeoTIFF, EPSG:26918, 1 m pixels, nodata 0
    naip/demo_naip_landcover.tif      uint8 land cover (0 water, 1 forest, 2 field, 3 developed, 255 nodata)
    bach/{train,test}/{Normal,Benign,InSitu,Invasive}/{n,b,is,iv}NNN.tif   BACH-like RGB images
    manifest.json

Every pixel is a deterministic function of the seed: slides, NAIP and BACH images draw from
separate ``numpy.random.SeedSequence(seed, spawn_key=(stream, ...))`` streams.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from infbrush.demo import landcover, tissue
from infbrush.demo.writers import NAIP_CRS, write_aperio_svs, write_generic_tiff, write_geotiff
from infbrush.errors import InfbrushError
from infbrush.io import atomic_path, sha256_file

FORMAT_VERSION = 1
BACH_FOLDERS: dict[str, str] = {"normal": "Normal", "benign": "Benign", "in_situ": "InSitu", "invasive": "Invasive"}
BACH_PREFIXES: dict[str, str] = {"normal": "n", "benign": "b", "in_situ": "is", "invasive": "iv"}
NAIP_BANDS = ("red", "green", "blue", "nir")
_STREAM_SLIDES, _STREAM_NAIP, _STREAM_BACH = 1, 2, 3


@dataclass(frozen=True)
class DemoWorldConfig:
    """What to generate. Sizes are (width, height) for slides, side length for NAIP and BACH."""

    seed: int = 0  # every pixel is a deterministic function of it (and byte-identical across CPUs)
    n_slides: int = 5  # Aperio .svs slides, plus one generic .tiff and two broken files
    slide_size: tuple[int, int] = (4096, 3072)  # level-0 (width, height) in pixels
    naip_size: int = 2048  # side of the NAIP-like GeoTIFF, 1 m pixels
    bach_per_class: int = 24  # BACH-like images per class (train and test together)
    bach_size: int = 256  # their side in pixels
    bach_train_fraction: float = 0.75  # of each class, the rest is the test split
    mpp: float = 0.5  # slides' level-0 µm per pixel (20× objective)
    app_mag: int = 20  # the objective written into the Aperio header
    class_map_downsample: int = 16  # slide pixels per class-map pixel
    tile_size: int = 256  # TIFF tile side
    jpeg_quality: int = 85  # of the slides' JPEG tiles, as scanners write them

    def validate(self) -> None:
        """Raise InfbrushError naming the first bad field."""
        checks = [
            ("seed", self.seed >= 0, "an integer >= 0"),
            ("n_slides", self.n_slides >= 1, "an integer >= 1"),
            ("slide_size", len(self.slide_size) == 2 and min(self.slide_size) >= 256, "two integers >= 256 (width height)"),
            ("naip_size", self.naip_size >= 256, "an integer >= 256"),
            ("bach_per_class", self.bach_per_class >= 2, "an integer >= 2 (one train and one test image at least)"),
            ("bach_size", self.bach_size >= 64, "an integer >= 64"),
            ("bach_train_fraction", 0.0 < self.bach_train_fraction < 1.0, "a number strictly between 0 and 1"),
            ("mpp", self.mpp > 0, "a positive number"),
            ("class_map_downsample", self.class_map_downsample >= 4 and self.class_map_downsample % 4 == 0,
             "a positive multiple of 4"),
            ("tile_size", self.tile_size >= 16 and self.tile_size % 16 == 0, "a positive multiple of 16"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "an integer in 1..100"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InfbrushError(f"demo world: {name} = {getattr(self, name)!r} is invalid; expected {expected}")

    def arguments(self) -> dict[str, Any]:
        """JSON-ready dict of every field (what the manifest records and compares)."""
        args = asdict(self)
        args["slide_size"] = list(self.slide_size)
        return args


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent generator for one stream/item."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _slide_jobs(config: DemoWorldConfig, root: Path) -> list[tuple[str, Callable[[], list[dict]]]]:
    """One job per slide (image + class map), then the broken and empty slides."""
    width, height = config.slide_size
    jobs = []

    def make(index: int, fmt: str) -> Callable[[], list[dict]]:
        def job() -> list[dict]:
            artifacts = ["pen_mark"] if index == 0 else ["faint_tissue"] if index == 1 else []
            render = tissue.render_slide(
                _rng(config.seed, _STREAM_SLIDES, index), height, width, config.class_map_downsample,
                pen_mark="pen_mark" in artifacts, intensity=0.4 if "faint_tissue" in artifacts else 1.0)
            stem = f"demo_slide_{index:02d}"
            suffix = ".svs" if fmt == "aperio" else ".tiff"
            image_path = root / "slides" / f"{stem}{suffix}"
            if fmt == "aperio":
                n_levels = write_aperio_svs(image_path, render.rgb, config.mpp, config.app_mag, stem,
                                            config.tile_size, config.jpeg_quality)
            else:
                n_levels = write_generic_tiff(image_path, render.rgb, config.mpp, config.tile_size, config.jpeg_quality)
            from PIL import Image

            map_path = root / "slides" / f"{stem}_classes.png"
            Image.fromarray(render.class_map).save(map_path)
            rel_image, rel_map = f"slides/{stem}{suffix}", f"slides/{stem}_classes.png"
            return [
                {"path": rel_image, "role": "slide", "format": fmt, "vendor": "aperio" if fmt == "aperio" else "generic-tiff",
                 "width": width, "height": height, "mpp": config.mpp, "level_count": n_levels,
                 "class_map": rel_map, "classes_present": list(render.classes_present), "artifacts": artifacts},
                {"path": rel_map, "role": "slide_class_map", "slide": rel_image,
                 "downsample": config.class_map_downsample, "background": tissue.BACKGROUND},
            ]
        return job

    for index in range(config.n_slides):
        jobs.append((f"slide {index:02d}", make(index, "aperio")))
    jobs.append((f"slide {config.n_slides:02d}", make(config.n_slides, "generic-tiff")))

    def broken() -> list[dict]:
        good = (root / "slides" / "demo_slide_00.svs").read_bytes()
        (root / "slides" / "broken_slide.svs").write_bytes(good[: len(good) // 2])
        (root / "slides" / "empty_slide.svs").write_bytes(b"")
        return [{"path": "slides/broken_slide.svs", "role": "broken_slide", "problem": "truncated to half its bytes"},
                {"path": "slides/empty_slide.svs", "role": "broken_slide", "problem": "zero bytes"}]

    jobs.append(("broken slides", broken))
    return jobs


def _naip_job(config: DemoWorldConfig, root: Path) -> Callable[[], list[dict]]:
    def job() -> list[dict]:
        from rasterio.transform import Affine

        rng = _rng(config.seed, _STREAM_NAIP)
        origin_x = 300_000.0 + 1000.0 * int(rng.integers(0, 150))  # UTM 18N eastings/northings in Maryland
        origin_y = 4_200_000.0 + 1000.0 * int(rng.integers(0, 200))
        transform = Affine(1.0, 0.0, origin_x, 0.0, -1.0, origin_y)  # 1 m pixels, north up
        image, labels = landcover.render_naip(rng, config.naip_size, config.naip_size)
        write_geotiff(root / "naip" / "demo_naip.tif", image, transform, landcover.NODATA_VALUE, NAIP_BANDS)
        palette = {0: (31, 78, 181, 255), 1: (24, 110, 40, 255), 2: (214, 190, 90, 255), 3: (200, 40, 40, 255)}
        write_geotiff(root / "naip" / "demo_naip_landcover.tif", labels[None], transform,
                      landcover.NODATA_LABEL, ("landcover",), palette)
        common = {"crs": NAIP_CRS, "pixel_size_m": 1.0, "width": config.naip_size, "height": config.naip_size,
                  "origin": [origin_x, origin_y]}
        return [
            {"path": "naip/demo_naip.tif", "role": "naip_image", "bands": list(NAIP_BANDS),
             "nodata": landcover.NODATA_VALUE, **common},
            {"path": "naip/demo_naip_landcover.tif", "role": "naip_landcover",
             "classes": list(landcover.LANDCOVER_NAMES), "nodata": landcover.NODATA_LABEL, **common},
        ]
    return job


def _bach_job(config: DemoWorldConfig, root: Path, cls: int) -> Callable[[], list[dict]]:
    def job() -> list[dict]:
        import tifffile

        name = tissue.CLASS_NAMES[cls]
        n_train = min(config.bach_per_class - 1, max(1, round(config.bach_per_class * config.bach_train_fraction)))
        records = []
        for index in range(config.bach_per_class):
            split = "train" if index < n_train else "test"
            rgb = tissue.render_patch(_rng(config.seed, _STREAM_BACH, cls, index), config.bach_size, cls)
            rel = f"bach/{split}/{BACH_FOLDERS[name]}/{BACH_PREFIXES[name]}{index + 1:03d}.tif"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / rel, rgb, photometric="rgb", metadata=None)
            records.append({"path": rel, "role": "bach_image", "split": split, "class": name, "label": cls})
        return records
    return job


def _is_complete(out: Path, arguments: dict[str, Any]) -> dict | None:
    """The existing manifest if ``out`` holds a complete demo world made with ``arguments``, else None."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("arguments") != arguments:
        return None
    for record in manifest.get("files", []):
        path = out / record["path"]
        if not path.is_file() or path.stat().st_size != record["bytes"] or sha256_file(path) != record["sha256"]:
            return None
    return manifest


def generate_demo_world(out: str | Path, config: DemoWorldConfig = DemoWorldConfig(), force: bool = False,
                        progress: bool = True) -> tuple[dict, bool]:
    """Write the demo world into ``out`` (atomically, as a whole directory).

    Returns ``(manifest, written)``; ``written`` is False when ``out`` already held a complete
    demo world made with the same config (and ``force`` is False).
    """
    from tqdm import tqdm

    config.validate()
    out = Path(out)
    arguments = config.arguments()
    if out.exists() and not out.is_dir():
        raise InfbrushError(f"{out}: exists and is not a directory")
    if out.exists() and not force:
        existing = _is_complete(out, arguments)
        if existing is not None:
            return existing, False
        if any(out.iterdir()) and not (out / "manifest.json").exists():
            raise InfbrushError(f"{out}: exists, is not empty and holds no demo-world manifest.json; "
                                f"choose another --out or pass --force to replace it")
    with atomic_path(out, suffix="") as tmp:
        for sub in ("slides", "naip", "bach"):
            (tmp / sub).mkdir(parents=True)
        jobs = _slide_jobs(config, tmp) + [("naip", _naip_job(config, tmp))]
        jobs += [(f"bach {name}", _bach_job(config, tmp, cls)) for cls, name in enumerate(tissue.CLASS_NAMES)]
        files: list[dict] = []
        bar = tqdm(jobs, desc="demo-world", unit="job", disable=not progress)
        for label, job in bar:
            bar.set_postfix_str(label)
            files.extend(job())
        for record in files:
            path = tmp / record["path"]
            record["bytes"] = path.stat().st_size
            record["sha256"] = sha256_file(path)
        manifest = {
            "generator": "infbrush demo-world",
            "format_version": FORMAT_VERSION,
            "arguments": arguments,
            "seed": config.seed,
            "slide_mpp": config.mpp,
            "slide_app_mag": config.app_mag,
            "class_names": list(tissue.CLASS_NAMES),
            "class_map_downsample": config.class_map_downsample,
            "class_map_background": tissue.BACKGROUND,
            "bach_class_folders": BACH_FOLDERS,
            "landcover_names": list(landcover.LANDCOVER_NAMES),
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest, True
