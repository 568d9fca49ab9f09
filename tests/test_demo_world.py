"""The embedded demo world opens in the real readers (OpenSlide, Rasterio) and is a function of its seed."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
rasterio = pytest.importorskip("rasterio")
tifffile = pytest.importorskip("tifffile")

from PIL import Image  # noqa: E402
from scipy.ndimage import binary_erosion  # noqa: E402

from infbrush.demo.world import BACH_FOLDERS, DemoWorldConfig, generate_demo_world  # noqa: E402
from infbrush.errors import InfbrushError  # noqa: E402

SMALL = DemoWorldConfig(seed=3, n_slides=2, slide_size=(1024, 768), naip_size=512, bach_per_class=4, bach_size=96)
TINY = dict(n_slides=1, slide_size=(512, 384), naip_size=256, bach_per_class=2, bach_size=64)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "world"
    manifest, written = generate_demo_world(out, SMALL, progress=False)
    assert written
    return out, manifest


def _files(manifest: dict, role: str) -> list[dict]:
    return [f for f in manifest["files"] if f["role"] == role]


def _brightness(slide, x: int, y: int, size: int) -> float:
    """Mean of RGB over a level-0 square."""
    return float(np.asarray(slide.read_region((x, y), 0, (size, size)).convert("RGB"), np.float32).mean())


def test_manifest_lists_every_file_with_hash_and_role(world):
    out, manifest = world
    assert manifest["seed"] == 3 and manifest["slide_mpp"] == 0.5
    assert manifest["class_names"] == ["normal", "benign", "in_situ", "invasive"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == {f["path"] for f in manifest["files"]}
    for record in manifest["files"]:
        assert len(record["sha256"]) == 64 and record["bytes"] == (out / record["path"]).stat().st_size
    assert len(_files(manifest, "slide")) == SMALL.n_slides + 1
    assert len(_files(manifest, "bach_image")) == 4 * SMALL.bach_per_class


def test_svs_opens_as_aperio_pyramid(world):
    out, manifest = world
    svs = [f for f in _files(manifest, "slide") if f["path"].endswith(".svs")]
    assert len(svs) == SMALL.n_slides
    for record in svs:
        with openslide.OpenSlide(out / record["path"]) as slide:
            props = slide.properties
            assert props[openslide.PROPERTY_NAME_VENDOR] == "aperio"
            assert slide.dimensions == SMALL.slide_size
            assert slide.level_count >= 2
            assert np.allclose(slide.level_downsamples, [4.0 ** k for k in range(slide.level_count)], rtol=0.01)
            assert float(props[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
            assert float(props[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.5)
            assert props["aperio.AppMag"] == "20" and props[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "20"
            assert "thumbnail" in slide.associated_images


def test_generic_tiff_opens_with_mpp(world):
    out, manifest = world
    (record,) = [f for f in _files(manifest, "slide") if f["path"].endswith(".tiff")]
    with openslide.OpenSlide(out / record["path"]) as slide:
        assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "generic-tiff"
        assert slide.level_count >= 2 and slide.level_downsamples[1] == pytest.approx(4.0, rel=0.01)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)


def test_class_map_agrees_with_slide_pixels(world):
    out, manifest = world
    ds = manifest["class_map_downsample"]
    rng = np.random.default_rng(0)
    for record in _files(manifest, "slide"):
        class_map = np.asarray(Image.open(out / record["class_map"]))
        assert class_map.shape == (-(-SMALL.slide_size[1] // ds), -(-SMALL.slide_size[0] // ds))
        assert set(np.unique(class_map)) <= {0, 1, 2, 3, 255}
        assert record["classes_present"] and len(record["classes_present"]) >= 2
        with openslide.OpenSlide(out / record["path"]) as slide:
            tissue_cells = np.argwhere(binary_erosion(class_map != 255, iterations=1))
            glass_cells = np.argwhere(binary_erosion(class_map == 255, iterations=2))
            assert len(tissue_cells) > 20 and len(glass_cells) > 20
            tissue = np.array([_brightness(slide, x * ds, y * ds, ds)
                               for y, x in tissue_cells[rng.permutation(len(tissue_cells))[:60]]])
            glass = np.array([_brightness(slide, x * ds, y * ds, ds)
                              for y, x in glass_cells[rng.permutation(len(glass_cells))[:60]]])
        assert np.median(glass) > 225, record["path"]  # white-ish glass
        # tissue cells are stained, faint slide included (a few may fall inside a wide duct lumen)
        assert np.mean(tissue < np.median(glass) - 8) > 0.85, (record["path"], tissue, np.median(glass))
        assert np.median(tissue) < np.median(glass) - 20, record["path"]


def test_tumour_classes_are_darker_than_normal_tissue(world):
    """In situ / invasive regions hold crowded large nuclei: darker than normal / benign on the same slide."""
    out, manifest = world
    ds = manifest["class_map_downsample"]
    record = next(f for f in _files(manifest, "slide") if not f["artifacts"])
    class_map = np.asarray(Image.open(out / record["class_map"]))
    with openslide.OpenSlide(out / record["path"]) as slide:
        region = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"), np.float32).mean(-1)
    cells = region[: class_map.shape[0] * ds, : class_map.shape[1] * ds]
    cells = cells.reshape(class_map.shape[0], ds, class_map.shape[1], ds).mean(axis=(1, 3))
    mean = {c: cells[binary_erosion(class_map == c)].mean() for c in range(4) if binary_erosion(class_map == c).any()}
    benign_side = [mean[c] for c in (0, 1) if c in mean]
    tumour_side = [mean[c] for c in (2, 3) if c in mean]
    assert benign_side and tumour_side
    assert max(tumour_side) < min(benign_side)


def test_broken_and_empty_slides_fail_in_openslide(world):
    out, manifest = world
    broken = _files(manifest, "broken_slide")
    assert {Path(f["path"]).name for f in broken} == {"broken_slide.svs", "empty_slide.svs"}
    assert (out / "slides" / "empty_slide.svs").stat().st_size == 0
    for record in broken:
        with pytest.raises(openslide.OpenSlideError):
            with openslide.OpenSlide(out / record["path"]) as slide:
                slide.read_region((0, 0), 0, slide.dimensions)


def test_naip_geotiff_and_landcover(world):
    out, _ = world
    with rasterio.open(out / "naip" / "demo_naip.tif") as src:
        assert src.crs.to_epsg() == 26918
        assert src.count == 4 and src.dtypes == ("uint8",) * 4 and src.nodata == 0
        assert src.transform.a == 1.0 and src.transform.e == -1.0 and src.transform.c > 100_000
        assert src.block_shapes[0] == (256, 256) and src.descriptions == ("red", "green", "blue", "nir")
        image = src.read()  # (4, H, W)
        transform = src.transform
    with rasterio.open(out / "naip" / "demo_naip_landcover.tif") as src:
        assert src.crs.to_epsg() == 26918 and src.transform == transform and src.nodata == 255
        labels = src.read(1)
    nodata = (image == 0).all(axis=0)
    assert nodata[0, 0] or nodata[0, -1] or nodata[-1, 0] or nodata[-1, -1]  # collar at the edges
    assert 0.001 < nodata.mean() < 0.25 and not nodata[labels.shape[0] // 2, labels.shape[1] // 2]
    assert np.array_equal(nodata, labels == 255)
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 255}
    counts = np.bincount(labels[~nodata], minlength=4)
    assert (counts[:4] > 0).all()  # water, forest, field, developed all present
    nir = image[3].astype(np.float32)
    assert nir[labels == 0].mean() < 40 < 120 < nir[labels == 1].mean()  # water dark, forest bright in NIR


def test_bach_like_set_has_four_classes_and_two_splits(world):
    out, manifest = world
    for split, n in (("train", 3), ("test", 1)):
        for folder in BACH_FOLDERS.values():
            images = sorted((out / "bach" / split / folder).glob("*.tif"))
            assert len(images) == n, (split, folder)
            rgb = tifffile.imread(images[0])
            assert rgb.shape == (SMALL.bach_size, SMALL.bach_size, 3) and rgb.dtype == np.uint8
            assert rgb.mean() < 230  # tissue, not glass
    labels = {(f["class"], f["split"]) for f in _files(manifest, "bach_image")}
    assert len(labels) == 8


@pytest.mark.numeric
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first, _ = generate_demo_world(tmp_path / "a", DemoWorldConfig(seed=7, **TINY), progress=False)
    from infbrush.cli import demo_world as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "b"), "--seed", "7", "--n-slides", "1", "--slide-size", "512", "384",
                              "--naip-size", "256", "--bach-per-class", "2", "--bach-size", "64", "--no-progress"])
    assert cli.main(args) == 0
    second = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert second == first
    other, _ = generate_demo_world(tmp_path / "c", DemoWorldConfig(seed=8, **TINY), progress=False)
    hashes = {f["path"]: f["sha256"] for f in first["files"]}
    other_hashes = {f["path"]: f["sha256"] for f in other["files"]}
    assert hashes.keys() == other_hashes.keys()
    for path in ("slides/demo_slide_00.svs", "naip/demo_naip.tif", "bach/train/Normal/n001.tif"):
        assert hashes[path] != other_hashes[path], path
    with openslide.OpenSlide(tmp_path / "a" / "slides" / "demo_slide_00.svs") as a, \
            openslide.OpenSlide(tmp_path / "c" / "slides" / "demo_slide_00.svs") as c:
        assert not np.array_equal(np.asarray(a.read_region((0, 0), 0, a.dimensions)),
                                  np.asarray(c.read_region((0, 0), 0, c.dimensions)))


def test_rerun_is_a_noop_force_rewrites_and_bad_input_is_refused(tmp_path):
    config = DemoWorldConfig(seed=1, **TINY)
    out = tmp_path / "w"
    generate_demo_world(out, config, progress=False)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    _, written = generate_demo_world(out, config, progress=False)
    assert not written and (out / "manifest.json").stat().st_mtime_ns == stamp
    (out / "slides" / "demo_slide_00.svs").write_bytes(b"tampered")  # an incomplete world is rebuilt
    manifest, written = generate_demo_world(out, config, progress=False)
    assert written and (out / "slides" / "demo_slide_00.svs").stat().st_size > 1000
    _, written = generate_demo_world(out, config, force=True, progress=False)
    assert written
    assert not list(tmp_path.glob(".w.*"))  # no temporary directories left behind

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(InfbrushError, match="foreign.*no demo-world manifest"):
        generate_demo_world(foreign, config, progress=False)
    assert (foreign / "keep.txt").read_text() == "user data"
    with pytest.raises(InfbrushError, match="n_slides"):
        generate_demo_world(tmp_path / "x", DemoWorldConfig(n_slides=0), progress=False)
    with pytest.raises(InfbrushError, match="slide_size"):
        generate_demo_world(tmp_path / "x", DemoWorldConfig(slide_size=(100, 3000)), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.numeric
def test_same_bytes_whichever_simd_kernels_numpy_picks(tmp_path):
    """The demo world is byte-identical across CPUs: numpy's AVX2/AVX-512 kernels for sin, cos, exp, arctan2
    differ in the last bits, which flipped tissue thresholds and so re-drew whole slides on other machines.
    Emulated here by turning numpy's SIMD levels off (a no-op on a CPU without them)."""
    import os
    import subprocess
    import sys

    args = ["--seed", "0", "--n-slides", "3", "--slide-size", "2048", "1536", "--naip-size", "512",
            "--bach-per-class", "2", "--bach-size", "64", "--no-progress"]
    hashes = []
    for k, disabled in enumerate(("", "X86_V4 AVX512_ICL", "X86_V3 X86_V4 AVX512_ICL")):
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        subprocess.run([sys.executable, "-m", "infbrush", "demo-world", "--out", str(tmp_path / str(k)), *args],
                       env=env, check=True, capture_output=True)
        manifest = json.loads((tmp_path / str(k) / "manifest.json").read_text())
        hashes.append({f["path"]: f["sha256"] for f in manifest["files"]})
    assert hashes[1] == hashes[0]
    assert hashes[2] == hashes[0]


@pytest.mark.numeric
def test_portable_functions_match_numpy_and_keep_float32():
    from infbrush.demo import portable

    x = np.linspace(-7, 7, 1001, dtype=np.float32)
    for ours, ref in ((portable.sin, np.sin), (portable.cos, np.cos), (portable.exp, np.exp)):
        got = ours(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref(x.astype(np.float64)), rtol=1e-6, atol=2.0 ** -20)
    theta = portable.arctan2(x, x[::-1])
    assert theta.dtype == np.float32
    np.testing.assert_allclose(theta, np.arctan2(x, x[::-1]), atol=2.0 ** -20)
    assert portable.hypot(3.0, 4.0) == 5.0
    assert float(portable.power10(2.0)) == 100.0
    assert portable.cos(0.5).dtype == np.float64
