"""Tissue detection and tiling on real pyramidal files (written here with tifffile, read with OpenSlide)."""
import argparse
import os

import h5py
import numpy as np
import pytest
from PIL import Image

from infbrush.data.tiling import TilingParams, tile_slides, write_pyramidal_tiff
from infbrush.data.tissue import TissueParams, tissue_mask

# level-0 layout of the test slide (x0, y0, x1, y1), 2048 x 1536 px at 0.5 µm/px (20×)
DARK = (256, 256, 1024, 768)       # H&E-like tissue
FAINT = (1280, 896, 1920, 1408)    # faint tissue (low saturation)
PEN = (1280, 128, 1344, 768)       # blue pen stroke
GREEN = (128, 1024, 192, 1408)     # green pen stroke
BLACK = (256, 1408, 1024, 1504)    # black marker


def make_layout(width=2048, height=1536, blank=False, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 236, np.int16)
    if not blank:
        for (x0, y0, x1, y1), color in [(DARK, (190, 90, 170)), (FAINT, (226, 196, 216)), (PEN, (40, 70, 190)),
                                        (GREEN, (30, 120, 60)), (BLACK, (20, 20, 20))]:
            image[y0:y1, x0:x1] = color
    return np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)


def write_slide(path, mpp=0.5, aperio=True, blank=False):
    write_pyramidal_tiff(path, make_layout(blank=blank), mpp, aperio=aperio)
    return path


def overlap(x, y, size, box):
    x0, y0, x1, y1 = box
    return max(0, min(x + size, x1) - max(x, x0)) * max(0, min(y + size, y1) - max(y, y0)) / size ** 2


def params(**kw):
    return TilingParams(**{"patch_size": 128, "target_mpp": 0.5, "mask_max_side": 512, **kw})


def test_tissue_mask_keeps_faint_tissue_and_drops_pen_marks():
    image = np.asarray(Image.fromarray(make_layout()).resize((512, 384), Image.BILINEAR))
    mask = tissue_mask(image, TissueParams())  # (384, 512)
    s = 0.25

    def frac(box):
        x0, y0, x1, y1 = (int(v * s) for v in box)
        return mask[y0 + 3:y1 - 3, x0 + 3:x1 - 3].mean()

    assert frac(DARK) > 0.99 and frac(FAINT) > 0.99
    assert frac(PEN) == 0 and frac(GREEN) == 0 and frac(BLACK) == 0
    assert mask[:40, :40].sum() == 0  # glass
    # plain Otsu (no cap at glass saturation + margin) loses the faint tissue
    fixed = tissue_mask(image, TissueParams(faint_margin=255.0))
    x0, y0, x1, y1 = (int(v * s) for v in FAINT)
    assert fixed[y0:y1, x0:x1].mean() < 0.01


@pytest.mark.parametrize("target_mpp,patch_size,level,read_size", [(0.5, 128, 0, 128), (2.0, 32, 1, 32)])
def test_coords_in_tissue_and_attrs_at_20x_and_5x(tmp_path, target_mpp, patch_size, level, read_size):
    slide = write_slide(tmp_path / "s.svs")
    summary = tile_slides([slide], tmp_path / "tiles", params(patch_size=patch_size, target_mpp=target_mpp),
                          progress=False)
    assert not summary.failures and summary.tiled[0]["slide_id"] == "s"
    with h5py.File(tmp_path / "tiles" / "s.h5") as h5:
        coords = h5["coords"][:]
        attrs = dict(h5.attrs)
        assert dict(h5["coords"].attrs)["patch_level"] == level  # CLAM reads attrs from the dataset
    assert attrs["patch_size"] == patch_size and attrs["patch_size_level0"] == 128
    assert attrs["patch_level"] == level and attrs["read_size"] == read_size
    assert attrs["downsample"] == pytest.approx(4.0 ** level)
    assert attrs["level0_mpp"] == pytest.approx(0.5) and attrs["level0_magnification"] == pytest.approx(20)
    assert attrs["target_mpp"] == target_mpp
    assert (attrs["level0_width"], attrs["level0_height"]) == (2048, 1536) and attrs["slide_id"] == "s"
    for x, y in coords:
        tissue = overlap(x, y, 128, DARK) + overlap(x, y, 128, FAINT)
        assert tissue >= 0.5, (x, y)
        assert overlap(x, y, 128, PEN) + overlap(x, y, 128, BLACK) < 0.5
    # every grid patch fully inside a tissue region is found
    inside = sum(1 for box in (DARK, FAINT) for x in range(0, 2048, 128) for y in range(0, 1536, 128)
                 if overlap(x, y, 128, box) == 1 and overlap(x, y, 128, PEN) == 0)
    full = sum(1 for x, y in coords if max(overlap(x, y, 128, DARK), overlap(x, y, 128, FAINT)) == 1)
    assert full == inside
    thumb = Image.open(tmp_path / "tiles" / "s_thumb.png")
    assert max(thumb.size) == 512


def test_generic_tiff_mpp_from_resolution_and_level_choice(tmp_path):
    slide = write_slide(tmp_path / "g.tiff", mpp=0.25, aperio=False)  # 40×: 1 µm/px is level 1 (4×)
    summary = tile_slides([slide], tmp_path / "tiles", params(patch_size=64, target_mpp=1.0), progress=False)
    assert not summary.failures
    with h5py.File(tmp_path / "tiles" / "g.h5") as h5:
        attrs = dict(h5.attrs)
    assert attrs["level0_mpp"] == pytest.approx(0.25) and attrs["level0_magnification"] == pytest.approx(40)
    assert attrs["patch_level"] == 1 and attrs["patch_size_level0"] == 256 and attrs["read_size"] == 64


def run_cli(argv):
    from infbrush.cli import tile

    parser = argparse.ArgumentParser()
    tile.add_arguments(parser)
    return tile.main(parser.parse_args(argv))


def test_bad_slides_are_recorded_and_the_run_continues(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    write_slide(slides / "good.svs")
    data = (slides / "good.svs").read_bytes()
    (slides / "truncated.svs").write_bytes(data[: len(data) // 3])
    (slides / "empty.svs").write_bytes(b"")
    (slides / "notes.svs").write_text("this is not a slide\n")
    write_slide(slides / "blank.svs", blank=True)
    img = make_layout()[:512, :512]
    import tifffile

    tifffile.imwrite(slides / "nompp.tiff", img, tile=(256, 256), photometric="rgb", metadata=None)
    (slides / "readme.txt").write_text("not a slide extension: ignored in directories")
    out = tmp_path / "tiles"
    common = ["--out", str(out), "--patch-size", "128", "--target-mpp", "0.5", "--mask-max-side", "512",
              "--no-progress"]
    assert run_cli([str(slides), *common, "--workers", "2"]) == 0
    rows = [line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "reason"]
    reasons = {os.path.basename(r[0]): r[1] for r in rows[1:]}
    assert set(reasons) == {"truncated.svs", "empty.svs", "notes.svs", "blank.svs", "nompp.tiff"}
    assert "empty" in reasons["empty.svs"] and "tissue" in reasons["blank.svs"]
    assert "microns-per-pixel" in reasons["nompp.tiff"]
    assert sorted(p.name for p in out.iterdir()) == ["failures.tsv", "good.h5", "good_thumb.png"]
    assert run_cli([str(slides), *common, "--strict"]) == 1  # same failures, strict
    assert run_cli([str(slides / "empty.svs"), str(slides / "blank.svs"), *common]) == 1  # nothing succeeded


def test_resume_skips_done_slides_and_redoes_changed_params(tmp_path):
    a, b = write_slide(tmp_path / "a.svs"), write_slide(tmp_path / "b.svs", mpp=0.25)
    out = tmp_path / "tiles"
    first = tile_slides([a, b], out, params(), progress=False)
    assert len(first.tiled) == 2
    stamp = os.stat(out / "a.h5").st_mtime_ns
    os.remove(out / "b.h5")  # as if the run was killed before b finished
    second = tile_slides([a, b], out, params(), progress=False)
    assert second.skipped == [str(a)] and [r["slide_id"] for r in second.tiled] == ["b"]
    assert os.stat(out / "a.h5").st_mtime_ns == stamp
    third = tile_slides([a, b], out, params(min_tissue_fraction=0.9), progress=False)
    assert len(third.tiled) == 2  # parameters changed: the finished files are stale
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind
