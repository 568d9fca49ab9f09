"""Pyramidal TIFF writer: OpenSlide, tifffile and libvips open it with the same levels, MPP and pixels; written
from bands."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
tifffile = pytest.importorskip("tifffile")

from infbrush.errors import InfbrushError  # noqa: E402
from infbrush.sample.tiff import (  # noqa: E402
    PyramidOptions, array_bands, downsample_rows, level_shapes, needs_bigtiff, write_pyramid_tiff)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus mild noise: JPEG-friendly but with distinct pixels everywhere."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = np.stack([xx / width * 200, yy / height * 200, (np.sin(xx / 37) + np.cos(yy / 23) + 2) * 50], -1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def _read_level(slide, level: int) -> np.ndarray:
    w, h = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]
    return np.asarray(slide.read_region((0, 0), level, (w, h)))[..., :3] if ds == 1 else \
        np.asarray(slide.read_region((0, 0), level, (w, h)))[..., :3]


def test_deflate_pyramid_opens_in_openslide_with_exact_pixels(tmp_path):
    image = _image(2048, 2048)
    bands = (image[y0:y0 + 100] for y0 in range(0, 2048, 100))  # band heights unrelated to the tile
    out = tmp_path / "big.tiff"
    info = write_pyramid_tiff(out, bands, 2048, 2048, options=PyramidOptions(compression="deflate", tile=256), mpp=0.25)
    slide = openslide.OpenSlide(str(out))
    assert slide.level_count == 4 == len(info.level_shapes)  # 2048 → 1024 → 512 → 256
    assert slide.level_dimensions == ((2048, 2048), (1024, 1024), (512, 512), (256, 256))
    assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0, 8.0))
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25, rel=1e-6)
    assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25, rel=1e-6)
    np.testing.assert_array_equal(_read_level(slide, 0), image)
    # level 1 is the 2×2 box mean of level 0, level 2 that of level 1
    level1 = downsample_rows(image, 2)
    np.testing.assert_array_equal(_read_level(slide, 1), level1)
    np.testing.assert_array_equal(_read_level(slide, 2), downsample_rows(level1, 2))
    slide.close()
    with tifffile.TiffFile(out) as tif:
        assert not tif.is_bigtiff
        assert all(p.is_tiled and p.tilewidth == 256 for p in tif.pages)
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.pages[0].tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        assert [p.subfiletype for p in tif.pages] == [0, 1, 1, 1]


def test_jpeg_pyramid_is_close_and_odd_sizes_work(tmp_path):
    image = _image(700, 1100, seed=1)
    out = tmp_path / "odd.tiff"
    info = write_pyramid_tiff(out, array_bands(image, 64), 700, 1100,
                              options=PyramidOptions(compression="jpeg", quality=95, tile=512, level_factor=4))
    assert info.level_shapes == ((700, 1100), (175, 275))
    slide = openslide.OpenSlide(str(out))
    assert slide.level_count == 2
    assert slide.level_dimensions == ((1100, 700), (275, 175))
    level0 = _read_level(slide, 0).astype(np.int16)
    assert np.abs(level0 - image).mean() < 3.0  # lossy, but close
    assert "openslide.mpp-x" not in slide.properties  # no mpp given → none claimed
    slide.close()


@pytest.mark.parametrize("compression", ["deflate", "jpeg"])
def test_grey_pyramid_has_one_sample_per_pixel_and_the_rgb_levels(tmp_path, compression):
    """channels=1 (masks, grey-level maps) writes minisblack tiles whose levels are those of the RGB path: it failed
    inside tifffile before (a trailing axis of 1 read as image depth)."""
    grey = _image(700, 530, seed=2)[..., :1]
    out = tmp_path / "grey.tiff"
    info = write_pyramid_tiff(out, array_bands(grey, 100), 700, 530, 1,
                              options=PyramidOptions(compression=compression, tile=256))
    assert info.level_shapes == ((700, 530), (350, 265), (175, 133))
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert all(p.samplesperpixel == 1 and p.is_tiled for p in tif.pages)
        levels = [p.asarray() for p in tif.pages]
    assert [a.shape for a in levels] == list(info.level_shapes)
    expected = [grey[..., 0], downsample_rows(grey, 2)[..., 0], downsample_rows(downsample_rows(grey, 2), 2)[..., 0]]
    for got, want in zip(levels, expected):
        diff = np.abs(got.astype(np.int16) - want)
        assert (diff.max() == 0) if compression == "deflate" else (diff.mean() < 3.0)
    slide = openslide.OpenSlide(str(out))
    assert slide.level_dimensions == ((530, 700), (265, 350), (133, 175))
    slide.close()


def test_forced_bigtiff_opens_and_auto_threshold():
    assert not needs_bigtiff(level_shapes(4096, 4096, 256), 3)
    assert needs_bigtiff(level_shapes(40000, 40000, 256), 3)  # 4.8 GB uncompressed at level 0


def test_bigtiff_file_opens(tmp_path):
    image = _image(300, 300)
    out = tmp_path / "bt.tiff"
    write_pyramid_tiff(out, array_bands(image), 300, 300, options=PyramidOptions(compression="deflate", bigtiff=True),
                       mpp=1.0)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
    slide = openslide.OpenSlide(str(out))
    np.testing.assert_array_equal(_read_level(slide, 0), image)
    assert slide.level_count == 2


def test_wrong_rows_leave_no_file(tmp_path):
    image = _image(256, 256)
    out = tmp_path / "short.tiff"
    with pytest.raises(InfbrushError, match="expected 300"):
        write_pyramid_tiff(out, array_bands(image), 300, 256, options=PyramidOptions(compression="deflate"))
    with pytest.raises(InfbrushError, match="width 200"):
        write_pyramid_tiff(out, array_bands(image), 256, 200, options=PyramidOptions(compression="deflate"))
    assert list(tmp_path.iterdir()) == []  # atomic: neither the output nor temporaries remain
    with pytest.raises(ValueError, match="valid: jpeg, deflate"):
        write_pyramid_tiff(out, array_bands(image), 256, 256, options=PyramidOptions(compression="lzw"))


def _peak_bytes(tmp_path, height: int, width: int, band_rows: int = 128) -> int:
    def bands():
        for y0 in range(0, height, band_rows):
            yield np.full((band_rows, width, 3), y0 % 251, dtype=np.uint8)

    tracemalloc.start()
    write_pyramid_tiff(tmp_path / f"m{height}.tiff", bands(), height, width,
                       options=PyramidOptions(compression="deflate"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_image_height(tmp_path):
    """Python-heap peak while writing from a generator is a few tile rows, whatever the height."""
    _peak_bytes(tmp_path, 256, 256)  # warm up imports and codecs
    short = _peak_bytes(tmp_path, 512, 1024)
    tall = _peak_bytes(tmp_path, 4096, 1024)  # 12.6 MB image
    assert tall < 1.3 * short, f"peak {tall / 1e6:.1f} MB for 4096 rows vs {short / 1e6:.1f} MB for 512"
    assert tall < 4096 * 1024 * 3 / 2


def _vips() -> str:
    """The libvips command-line tool (Debian libvips-tools, installed by .ci/run); CI fails without it."""
    import os
    import shutil

    vips = shutil.which("vips")
    if vips is None:
        if os.environ.get("CI") == "true":
            pytest.fail("vips (libvips-tools) is not installed; .ci/run installs it")
        pytest.skip("vips (Debian libvips-tools) not installed")
    return vips


@pytest.mark.parametrize("compression", ["deflate", "jpeg"])
def test_openslide_tifffile_and_libvips_read_the_same_pixels_and_mpp(tmp_path, compression):
    import subprocess
    from pathlib import Path

    from PIL import Image

    vips = _vips()
    image = _image(700, 1100, seed=2)
    out = tmp_path / f"s_{compression}.tiff"
    write_pyramid_tiff(out, array_bands(image, 100), 700, 1100, options=PyramidOptions(compression=compression),
                       mpp=0.25)
    slide = openslide.OpenSlide(str(out))
    levels_os = [_read_level(slide, k) for k in range(slide.level_count)]
    mpp_os = float(slide.properties["openslide.mpp-x"])
    slide.close()
    with tifffile.TiffFile(out) as tif:
        levels_tf = [page.asarray() for page in tif.pages]
        x_res = tif.pages[0].tags["XResolution"].value
        unit = tif.pages[0].tags["ResolutionUnit"].value
    assert unit == tifffile.RESUNIT.CENTIMETER and 1e4 / (x_res[0] / x_res[1]) == pytest.approx(0.25, rel=1e-6)
    assert mpp_os == pytest.approx(0.25, rel=1e-6)
    header = subprocess.run([str(Path(vips).with_name("vipsheader")), "-a", str(out)], capture_output=True,
                            text=True, check=True).stdout
    fields = dict(line.split(": ", 1) for line in header.splitlines()[1:] if ": " in line)
    assert int(fields["n-pages"]) == len(levels_os) == len(levels_tf)
    assert 1e3 / float(fields["xres"]) == pytest.approx(0.25, rel=1e-6)  # libvips: pixels per millimetre
    for k in range(len(levels_os)):
        png = tmp_path / f"level{k}.png"
        subprocess.run([vips, "copy", f"{out}[page={k}]", str(png)], check=True, capture_output=True)
        level_vips = np.asarray(Image.open(png).convert("RGB"))
        np.testing.assert_array_equal(levels_tf[k], levels_os[k])  # decoded identically, JPEG included
        np.testing.assert_array_equal(level_vips, levels_os[k])
    if compression == "deflate":
        np.testing.assert_array_equal(levels_os[0], image)  # lossless: exactly what was written
    else:
        assert np.abs(levels_os[0].astype(int) - image).mean() < 3.0
