"""Tissue detection and tiling on real pyramidal files (written here with tifffile, read with OpenSlide)."""
import argparse
import os

import h5py
import numpy as np
import openslide
import pytest
from PIL import Image

from infbrush.data.tiling import TilingParams, tile_slides
from infbrush.data.tissue import TissueParams, tissue_mask
from slide_helpers import write_pyramidal_tiff

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
        assert "patch_level" not in h5["coords"].attrs  # TRIDENT's convention; CLAM gets its own file
    with h5py.File(tmp_path / "tiles" / "clam" / "patches" / "s.h5") as h5:
        assert h5["coords"].attrs["patch_level"] == level and h5["coords"].attrs["patch_size"] == read_size
        np.testing.assert_array_equal(h5["coords"][:], coords)
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
    assert sorted(p.name for p in out.iterdir()) == ["clam", "failures.tsv", "good.h5", "good_thumb.png"]
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


# ---------------------------------------------------------------- CLAM / TRIDENT read the field of view we tiled
def textured(width=2048, height=1536):
    """Smooth, everywhere-different colours (gradients and slow waves): resampling filters barely differ on it,
    but a patch read with the wrong field of view (half, or double) does."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([60 + 150 * xx / width, 60 + 150 * yy / height,
                      128 + 90 * np.sin(xx / 97.0) * np.cos(yy / 131.0)], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def clam_read(h5_path, slide):
    """CLAM's Whole_Slide_Bag_FP (dataset_modules/dataset_h5.py, with the custom_downsample / target_patch_size
    options of datasets/dataset_h5.py): attrs from the ``coords`` dataset, read_region at patch_level with
    (patch_size, patch_size), then resized to patch_size // custom_downsample."""
    with h5py.File(h5_path, "r") as f:
        dset = f["coords"]
        patch_level, patch_size = int(dset.attrs["patch_level"]), int(dset.attrs["patch_size"])
        custom_downsample = dset.attrs["custom_downsample"]  # what the user passes as --custom_downsample
        coords = dset[:]
    target = (patch_size // custom_downsample,) * 2 if custom_downsample > 1 else None
    for coord in coords:
        img = slide.read_region(tuple(int(v) for v in coord), patch_level, (patch_size, patch_size)).convert("RGB")
        if target is not None:
            img = img.resize(tuple(int(v) for v in target))
        yield coord, np.asarray(img)


def trident_read(h5_path, slide):
    """TRIDENT's feature extraction (WSI.extract_patch_features → WSIPatcher with custom_coords): attrs from
    ``coords``; downsample = level0_magnification / target_magnification, patch_size_src = round(patch_size *
    downsample), level = get_best_level_and_custom_downsample(downsample, tolerance=0.1), read
    round(patch_size_src / int(level_downsample)) px there, cv2.resize to patch_size."""
    import cv2

    with h5py.File(h5_path, "r") as f:
        attrs, coords = dict(f["coords"].attrs), f["coords"][:]
    patch_size = int(attrs["patch_size"])
    downsample = (10 / attrs["target_magnification"]) / (10 / attrs["level0_magnification"])
    patch_size_src = round(patch_size * downsample)
    level_downsamples = slide.level_downsamples
    level = next((i for i, d in enumerate(level_downsamples) if abs(d - downsample) <= 0.1), None)
    if level is None:
        level = max(i for i, d in enumerate(level_downsamples) if d <= downsample)
    size = round(patch_size_src / int(level_downsamples[level]))
    for coord in coords:
        tile = np.asarray(slide.read_region(tuple(int(v) for v in coord), level, (size, size)).convert("RGB"))
        yield coord, cv2.resize(tile, (patch_size, patch_size))[:, :, :3]


def truth(image, coord, size0, size):
    """The level-0 field of view (size0² at coord) area-averaged to size²: what the tiles mean."""
    x, y = (int(v) for v in coord)
    return np.asarray(Image.fromarray(image[y:y + size0, x:x + size0]).resize((size, size), Image.BOX))


@pytest.mark.parametrize("case,target_mpp,level,read_size", [
    ("level match", 2.0, 1, 64),               # 4× = level 1 exactly: read 64 px there, no resize
    ("level 0 + resize", 1.0, 0, 128),          # 2×: no level; read 128 px at level 0, resize to 64
    ("higher level + resize", 4.0, 1, 128),     # 8×: read 128 px at level 1 (4×), resize to 64
])
def test_clam_and_trident_read_the_field_of_view_we_tiled(tmp_path, case, target_mpp, level, read_size):
    from infbrush.data.patches import read_patch
    from infbrush.data.tiling import read_coords

    image = textured()
    path = tmp_path / "s.svs"  # 0.5 µm/px (20×), pyramid 1/4/16 like the demo slides
    write_pyramidal_tiff(path, image, 0.5, compression="zlib")
    summary = tile_slides([path], tmp_path / "tiles", params(patch_size=64, target_mpp=target_mpp,
                                                             min_tissue_fraction=0.0), progress=False)
    assert not summary.failures
    ours_coords, attrs = read_coords(tmp_path / "tiles" / "s.h5")
    assert attrs["patch_level"] == level and attrs["read_size"] == read_size
    size0 = attrs["patch_size_level0"]
    assert size0 == round(64 * target_mpp / 0.5)
    slide = openslide.OpenSlide(str(path))
    try:
        ours = {tuple(c): read_patch(slide, *c, attrs) for c in ours_coords}  # what extract-patches stores
        for reader, h5 in ((clam_read, tmp_path / "tiles" / "clam" / "patches" / "s.h5"),
                           (trident_read, tmp_path / "tiles" / "s.h5")):
            n = 0
            for coord, patch in reader(h5, slide):
                assert patch.shape == (64, 64, 3), (reader.__name__, patch.shape)
                mine = ours[tuple(coord)]
                assert np.abs(patch.astype(int) - mine).mean() < 2.0, (reader.__name__, coord)
                assert np.abs(patch.astype(int) - truth(image, coord, size0, 64)).mean() < 2.0
                n += 1
            assert n == len(ours_coords) > 10
        # the bug this replaces: a 64-px read at patch_level covers another field of view when a resize is due
        x, y = (int(v) for v in ours_coords[len(ours_coords) // 2])
        wrong = np.asarray(slide.read_region((x, y), level, (64, 64)).convert("RGB").resize((64, 64)))
        error = np.abs(wrong.astype(int) - truth(image, (x, y), size0, 64)).mean()
        assert (error > 8) == (read_size != 64), error
    finally:
        slide.close()
    with h5py.File(tmp_path / "tiles" / "s.h5") as h5:  # CLAM on the TRIDENT file fails loudly, never silently
        assert "patch_level" not in h5["coords"].attrs
        assert h5["coords"].attrs["target_magnification"] == pytest.approx(20 * 0.5 / target_mpp)


# ---------------------------------------------------------------- slides without (trustworthy) MPP
def write_boxes_tiff(path, dpi=72.0):
    """Like OpenSlide's generic-TIFF test slide boxes.tiff: coloured boxes on white, a tiled 2-level pyramid,
    no MPP but TIFF resolution tags of 72 dpi (inch units: OpenSlide reports 352.8 µm/px)."""
    import tifffile

    image = np.full((1024, 1536, 3), 255, np.uint8)
    for i, color in enumerate([(200, 40, 60), (180, 60, 160), (220, 120, 40), (150, 30, 90)]):
        x0, y0 = 128 + 352 * i, 200 + 120 * (i % 2)
        image[y0:y0 + 480, x0:x0 + 288] = color
    with tifffile.TiffWriter(path) as tw:
        for k, level in enumerate([image, image[::4, ::4].copy()]):
            tw.write(level, tile=(256, 256), photometric="rgb", compression="zlib", metadata=None,
                     resolution=(dpi / 4 ** k, dpi / 4 ** k), resolutionunit="INCH", subfiletype=0 if k == 0 else 1)
    return path


def test_bogus_72dpi_generic_tiff_tiles_natively_and_with_mpp_override(tmp_path):
    from infbrush.data.tiling import read_coords

    slide = write_boxes_tiff(tmp_path / "boxes.tiff")
    with openslide.OpenSlide(str(slide)) as s:  # what OpenSlide makes of the 72-dpi tags
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(352.78, abs=0.01)
    out = tmp_path / "tiles"
    common = [str(slide), "--out", str(out), "--patch-size", "64", "--mask-max-side", "256", "--no-progress"]
    assert run_cli(common) == 1  # default target 1.0 µm/px: the bogus MPP is refused, named, with the fix
    reason = (out / "failures.tsv").read_text().splitlines()[1].split("\t")[1]
    assert "72 px/inch" in reason and "352.778" in reason and "--target-mpp native" in reason and "--mpp" in reason
    assert run_cli(common + ["--target-mpp", "native"]) == 0
    coords, attrs = read_coords(out / "boxes.h5")
    assert attrs["patch_level"] == 0 and attrs["read_size"] == 64 == attrs["patch_size_level0"]
    assert np.isnan(attrs["level0_mpp"]) and "352.778" in attrs["mpp_source"]
    assert len(coords) > 100
    # --level N: the resolution of pyramid level 1 (4×), read there without resize
    assert run_cli(common + ["--level", "1", "--out", str(tmp_path / "l1")]) == 0
    _, attrs = read_coords(tmp_path / "l1" / "boxes.h5")
    assert (attrs["patch_level"], attrs["read_size"], attrs["patch_size_level0"]) == (1, 64, 256)
    # the override flag: 0.25 µm/px at level 0, so 1.0 µm/px is level 1
    assert run_cli(common + ["--mpp", "0.25", "--target-mpp", "1.0", "--out", str(tmp_path / "o")]) == 0
    _, attrs = read_coords(tmp_path / "o" / "boxes.h5")
    assert attrs["level0_mpp"] == 0.25 and attrs["mpp_source"] == "override" and attrs["patch_level"] == 1
    assert attrs["level0_magnification"] == pytest.approx(40) and attrs["target_magnification"] == pytest.approx(10)


def test_slides_csv_mpp_column_and_bad_rows(tmp_path):
    from infbrush.data.tiling import read_coords

    slides = tmp_path / "slides"
    slides.mkdir()
    write_boxes_tiff(slides / "a.tiff")
    write_boxes_tiff(slides / "b.tiff")
    write_boxes_tiff(slides / "c.tiff")
    write_slide(slides / "d.svs")  # has good metadata: no CSV row needed
    csv = tmp_path / "list.csv"
    csv.write_text("wsi,mpp\nslides/a.tiff,0.5\nb.tiff,0.25\nc.tiff,-1\nslides/missing.svs,0.5\nd.svs,\n")
    out = tmp_path / "tiles"
    argv = [str(slides), "--slides-csv", str(csv), "--out", str(out), "--patch-size", "64", "--target-mpp", "1.0",
            "--mask-max-side", "256", "--no-progress"]
    assert run_cli(argv) == 0
    assert read_coords(out / "a.h5")[1]["patch_level"] == 0  # 0.5 → 1.0: level 0 + resize
    assert read_coords(out / "a.h5")[1]["level0_mpp"] == 0.5
    assert read_coords(out / "b.h5")[1]["patch_level"] == 1  # 0.25 → 1.0: level 1 (4×)
    assert read_coords(out / "d.h5")[1]["mpp_source"] == "openslide.mpp-x"
    rows = dict(line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()[1:])
    assert set(map(os.path.basename, rows)) == {"c.tiff", "missing.svs"}
    c_reason = next(r for p, r in rows.items() if p.endswith("c.tiff"))
    assert "mpp -1" in c_reason and "> 0" in c_reason and "line 4" in c_reason
    assert "does not exist" in rows["slides/missing.svs"] and "line 5" in rows["slides/missing.svs"]
    # a finished batch is skipped as done; changing one slide's CSV mpp retiles that slide only
    csv.write_text("wsi,mpp\nslides/a.tiff,0.5\nb.tiff,0.5\n")
    from infbrush.data.tiling import TilingParams, read_slides_csv, tile_slides

    listed, mpps, failures = read_slides_csv(csv, [slides / n for n in ("a.tiff", "b.tiff")])
    summary = tile_slides(listed, out, TilingParams(patch_size=64, target_mpp=1.0, mask_max_side=256),
                          progress=False, slide_mpp=mpps)
    assert [os.path.basename(p) for p in summary.skipped] == ["a.tiff"] and summary.tiled[0]["slide_id"] == "b"


@pytest.mark.parametrize("argv,message", [
    (["--mpp", "0"], "--mpp 0: must be > 0"),
    (["--mpp", "-0.5"], "--mpp -0.5: must be > 0"),
    (["--target-mpp", "-1"], "--target-mpp -1: must be > 0"),
    (["--target-mpp", "fast"], "--target-mpp fast: not a number or 'native'"),
    (["--target-mpp", "1.0", "--level", "1"], "give one of them, not both"),
    (["--slides-csv", "NOCSV"], "cannot read the slides CSV"),
])
def test_bad_values_are_one_line_errors(tmp_path, capsys, argv, message):
    from infbrush.cli import main

    slide = write_boxes_tiff(tmp_path / "boxes.tiff")
    argv = [a.replace("NOCSV", str(tmp_path / "none.csv")) for a in argv]
    assert main(["tile", str(slide), "--out", str(tmp_path / "t"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("infbrush tile: error: ") and message in err, err


def test_csv_without_slide_column_and_help_shows_every_default(tmp_path, capsys):
    from infbrush.cli import build_parser, main

    csv = tmp_path / "l.csv"
    csv.write_text("file,mpp\na.svs,0.5\n")
    assert main(["tile", "--slides-csv", str(csv), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no 'wsi' column" in err and str(csv) in err
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["tile"]
    for action in sub._actions:
        if action.dest in ("help", "slides", "out"):
            continue
        assert "default" in (action.help or ""), action.dest
    text = sub.format_help()
    assert "default: 1.0 unless --level" in text and "'native'" in text


def test_overlapping_grid_steps_by_patch_minus_overlap_and_tools_read_it(tmp_path):
    """--overlap O: neighbours share O target pixels (level-0 step (size - O) · downsample), TRIDENT's
    ``overlap`` attr says so, and a non-overlapping run of the same slide is a subset of the overlapping one."""
    slide = write_slide(tmp_path / "s.svs")
    tile_slides([slide], tmp_path / "plain", params(patch_size=32, target_mpp=2.0), progress=False)
    tile_slides([slide], tmp_path / "over", params(patch_size=32, target_mpp=2.0, overlap=16), progress=False)
    with h5py.File(tmp_path / "plain" / "s.h5") as h5:
        plain = {tuple(c) for c in h5["coords"][:]}
        assert h5["coords"].attrs["overlap"] == 0
    with h5py.File(tmp_path / "over" / "s.h5") as h5:
        coords = h5["coords"][:]
        assert h5["coords"].attrs["overlap"] == 16 and h5.attrs["step_level0"] == 64
    assert plain < {tuple(c) for c in coords} and len(coords) > 3 * len(plain)
    assert set(np.unique(coords % 64)) == {0}  # every corner on the 64-px level-0 step (16 target px × 4)
    for x, y in coords:
        assert overlap(x, y, 128, DARK) + overlap(x, y, 128, FAINT) >= 0.5
    with pytest.raises(Exception, match="overlap 32: must be ≥ 0 and below patch_size 32"):
        params(patch_size=32, overlap=32)


def test_overlap_flag_reaches_the_grid_and_bad_overlap_is_one_line(tmp_path, capsys):
    from infbrush.cli import main

    slide = write_slide(tmp_path / "s.svs")
    out = tmp_path / "t"
    assert main(["tile", str(slide), "--out", str(out), "--no-progress", "--patch-size", "32", "--target-mpp", "2",
                 "--overlap", "16", "--mask-max-side", "512"]) == 0
    with h5py.File(out / "s.h5") as h5:
        assert h5["coords"].attrs["overlap"] == 16
    capsys.readouterr()
    assert main(["tile", str(slide), "--out", str(out), "--no-progress", "--overlap", "300"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--overlap 300: must be ≥ 0 and below --patch-size 256" in err, err
