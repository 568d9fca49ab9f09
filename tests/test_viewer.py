"""The zoomable viewer, end to end with real components: a real slide (pyramidal TIFF, OpenSlide), tiled and
patched by the pipeline's own commands, samples in `infbrush sample`'s layout (pyramidal TIFF and PNG), Deep Zoom
tiles from OpenSlide's DeepZoomGenerator, OpenSeadragon from npm, and headless Chromium (Debian) zooming in."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from infbrush.data.tiling import TilingParams, tile_slides
from infbrush.sample.outputs import SampleIndex
from infbrush.sample.tiff import PyramidOptions, array_bands, write_pyramid_tiff
from infbrush.viewer.openseadragon import OSD_SUBDIR, REPO_ROOT
from slide_helpers import write_pyramidal_tiff

GEN = 2048  # generated image side: its deepest Deep Zoom level is level 11


def _need(what: str, found: bool, fix: str) -> None:
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} missing: {fix}")
        pytest.skip(f"{what} missing: {fix}")


@pytest.fixture(scope="module")
def osd():
    _need("OpenSeadragon", (REPO_ROOT / OSD_SUBDIR / "openseadragon.min.js").is_file(), "run `npm ci` (package.json)")
    return REPO_ROOT / OSD_SUBDIR


def stripes(side: int) -> np.ndarray:
    """1-px vertical stripes (white / dark red): visible only at the deepest zoom level; every coarser level
    averages them to a flat colour. A screenshot with stripes proves that deep-level tiles were drawn."""
    image = np.empty((side, side, 3), np.uint8)
    image[:, 0::2] = (255, 255, 255)
    image[:, 1::2] = (90, 20, 30)
    return image


@pytest.fixture(scope="module")
def world(tmp_path_factory, osd):
    """A WSI dataset as the pipeline leaves it before the viewer: slides, tiles, images.h5, samples."""
    from infbrush.data.patches import extract_patches
    from test_tiling import textured

    root = tmp_path_factory.mktemp("viewer_world")
    slides = root / "slides"
    slides.mkdir()
    for name in ("a", "b"):
        write_pyramidal_tiff(slides / f"{name}.svs", textured(), 0.5, compression="zlib")  # 2048×1536, 0.5 µm/px
    tiles = root / "tiles"
    summary = tile_slides(sorted(slides.glob("*.svs")), tiles,
                          TilingParams(patch_size=64, target_mpp=2.0, mask_max_side=256, min_tissue_fraction=0.0,
                                       max_patches_per_slide=6), progress=False)
    assert not summary.failures
    store = root / "images.h5"
    extract_patches(tiles, [slides], store, thumb_size=32, held_out_slides=1, progress=False)
    from infbrush.data.store import ImageStore

    held = [i for i, s in enumerate(ImageStore(store).split) if s == 1]
    held_id = ImageStore(store).ids[held[0]]
    samples = root / "samples"
    # resolution 2048: a pyramidal TIFF conditioned on a held-out patch, a strip TIFF, a missing file
    big = samples / str(GEN)
    big.mkdir(parents=True)
    write_pyramid_tiff(big / "img_00000.tiff", array_bands(stripes(GEN)), GEN, GEN,
                       options=PyramidOptions(compression="jpeg", quality=95), mpp=2.0 * 64 / GEN)
    import tifffile

    tifffile.imwrite(big / "img_00001.tiff", stripes(GEN), photometric="rgb")  # not tiled, not pyramidal
    index = SampleIndex(big, (GEN, GEN), {"steps": 1})
    index.add({"file": "img_00000.tiff", "name": "img_00000", "seed": 7, "source": "held-out",
               "source_id": held_id, "label": -1, "label_name": None, "resolution": [GEN, GEN], "format": "tiff"})
    index.add({"file": "img_00001.tiff", "name": "img_00001", "seed": 8, "source": "held-out",
               "source_id": held_id, "label": -1, "label_name": None, "resolution": [GEN, GEN], "format": "tiff"})
    index.add({"file": "img_00002.tiff", "name": "img_00002", "seed": 9, "source": "held-out",
               "source_id": held_id, "label": -1, "label_name": None, "resolution": [GEN, GEN], "format": "tiff"})
    index.save()
    # resolution 256: a PNG conditioned on a text prompt
    small = samples / "256"
    small.mkdir()
    Image.fromarray(np.asarray(Image.fromarray(stripes(256)).convert("L").convert("RGB"))).save(
        small / "img_00000.png", dpi=(25400 / 0.5, 25400 / 0.5))
    index = SampleIndex(small, (256, 256), {"steps": 1})
    index.add({"file": "img_00000.png", "name": "img_00000", "seed": 1, "source": "text", "source_id": "invasive",
               "label": 3, "label_name": "invasive", "resolution": [256, 256], "format": "png"})
    index.save()
    return {"root": root, "slides": slides, "tiles": tiles, "store": store, "samples": samples, "held_id": held_id}


@pytest.fixture(scope="module")
def built(world):
    """`infbrush viewer` as the Snakemake rule runs it, with the headless-Chromium preview."""
    from infbrush.cli import main

    _need("Chromium", shutil.which("chromium") is not None or bool(os.environ.get("INFBRUSH_CHROMIUM")),
          "apt-get install chromium (.ci/run installs it)")
    out = world["root"] / "viewer"
    argv = ["viewer", "--out", str(out), "--samples", str(world["samples"]), "--store", str(world["store"]),
            "--tiles", str(world["tiles"]), "--slides", str(world["slides"]), "--dataset", "toy",
            "--preview", "always", "--zoom-steps", "10"]
    assert main(argv) == 0
    return out


def test_viewer_tiles_page_and_failures(built, world):
    out = built
    html = (out / "index.html").read_text()
    assert '<script src="openseadragon/openseadragon.min.js">' in html  # relative: opens from disk
    assert (out / "openseadragon" / "openseadragon.min.js").is_file() and (out / "openseadragon" / "images").is_dir()
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    assert [p["name"] for p in data["pairs"]] == [f"{GEN}/img_00000", "256/img_00000"]
    first, second = data["pairs"]
    assert first["condition"] == f"embedding of the held-out real image {world['held_id']}"
    assert second["condition"] == "text prompt 'invasive' · class invasive"
    assert first["generated"]["dzi"]["levels"] == 12 and (out / "tiles" / "gen_000_files" / "11" / "0_0.jpeg").is_file()
    # the real side of a held-out WSI patch: its slide, a region of 2 patch sides (512 px at level 0) around it
    assert first["real"]["title"].startswith("real slide ") and first["real"]["dzi"]["width"] == 512
    assert first["box"]["w"] == pytest.approx(0.5)
    assert second["real"] is not None  # a real image beside the text-conditioned sample too
    dzi = (out / "tiles" / "gen_000.dzi").read_text()
    assert 'TileSize="254"' in dzi and f'Width="{GEN}"' in dzi
    # bad inputs: one line each, the rest of the batch shown
    rows = dict(line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()[1:])
    assert set(map(os.path.basename, rows)) == {"img_00001.tiff", "img_00002.tiff"}
    strip = next(r for p, r in rows.items() if p.endswith("img_00001.tiff"))
    assert "not a tiled pyramidal TIFF" in strip and f"{GEN}×{GEN}" in strip and "vips tiffsave" in strip
    assert next(r for p, r in rows.items() if p.endswith("img_00002.tiff")) == "file not found"
    assert not list(out.parent.glob(".viewer.*"))  # no temporary folders left behind


def test_brush_paintings_are_shown_beside_their_condition_maps(tmp_path, osd):
    """`--brush brush.json`: the painted image on the left, its condition map on the right (same field, zoom
    synchronised over the whole image); a brush.json without its images is one failure line, the rest shown."""
    from infbrush.viewer.build import GeneratedSources, build_viewer

    ds = tmp_path / "results" / "demo_x"
    (ds / "brush").mkdir(parents=True)
    Image.fromarray(stripes(128)).save(ds / "brush" / "brush.png")
    Image.fromarray(np.full((128, 128, 3), (200, 30, 90), np.uint8)).save(ds / "brush" / "map.png")
    (ds / "brush.json").write_text(json.dumps({
        "map": "workflow/brush/demo_x_map.png", "legend": "workflow/brush/demo_x_legend.yaml",
        "regions": [{"name": "water", "area_fraction": 0.5}, {"name": "forest", "area_fraction": 0.5}],
        "mean_region_accuracy": {"ours": 0.75},
        "files": {"brush": "results/demo_x/brush/brush.png", "map": "results/demo_x/brush/map.png"}}))
    (tmp_path / "broken.json").write_text('{"files": {}}')
    summary = build_viewer(tmp_path / "viewer", GeneratedSources(brush=[ds / "brush.json", tmp_path / "broken.json"]),
                           install=False)
    assert summary.pairs == 1
    html = (tmp_path / "viewer" / "index.html").read_text()
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    (pair,) = data["pairs"]
    assert pair["name"] == "brush/brush" and pair["condition"] == "painted regions: water (50%), forest (50%)"
    assert pair["real"]["title"] == "condition map" and pair["box"] == {"x": 0, "y": 0, "w": 1}
    assert any("mean region accuracy 0.75" in line for line in pair["real"]["lines"])
    assert (tmp_path / "viewer" / "tiles" / "map_000.dzi").is_file()
    assert "not a brush.json with its images" in (tmp_path / "viewer" / "failures.tsv").read_text()


def stripe_contrast(png: bytes, rect) -> float:
    """Mean |difference| of horizontally neighbouring pixels in the middle of a viewer on a screenshot."""
    import io

    image = np.asarray(Image.open(io.BytesIO(png)).convert("L")).astype(np.int16)
    left, top, width, height = (int(v) for v in rect[:4])
    crop = image[top + height // 4: top + 3 * height // 4, left + width // 4: left + 3 * width // 4]
    return float(np.abs(np.diff(crop, axis=1)).mean())


def test_headless_chromium_zooms_in_and_deep_tiles_are_drawn(built):
    out = built
    preview = json.loads((out / "preview.json").read_text())
    assert preview["problems"] == [], preview["problems"]  # no console errors, exceptions or failed loads
    gen, real = preview["links"][0]["gen"], preview["links"][0]["real"]
    before, after = preview["before"][gen], preview["after"][gen]
    assert before["maxLevel"] == 11 and max(before["drawnLevels"]) < 11  # at home: coarser levels only
    assert after["imageZoom"] > 1 and 11 in after["drawnLevels"]  # zoomed in with the wheel: deepest level drawn
    rect = preview["rects"][gen]
    home = stripe_contrast((out / "preview-home.png").read_bytes(), rect)
    zoomed = stripe_contrast((out / "preview.png").read_bytes(), rect)
    assert home < 10 and zoomed > 40, (home, zoomed)  # flat colour, then the 1-px stripes of level 11
    # the real slide beside it followed at the same physical scale: its zoom is the generated one / box width
    box = preview["links"][0]["box"]
    assert preview["after"][real]["zoom"] == pytest.approx(after["zoom"] / box["w"], rel=1e-3)
    centre = np.array(after["center"]) * box["w"] + [box["x"], box["y"]]
    np.testing.assert_allclose(preview["after"][real]["center"], centre, rtol=1e-3)
    # and is not a blank canvas
    import io

    shot = np.asarray(Image.open(io.BytesIO((out / "preview.png").read_bytes())).convert("RGB")).astype(int)
    left, top, width, height = (int(v) for v in preview["rects"][real][:4])
    assert shot[top + 40:top + height - 40, left + 40:left + width - 40].std() > 5


def test_report_shows_the_viewer_preview(built):
    from infbrush.evaluate.report import build_report

    text = build_report("toy", built.parent)
    section = text.split("<h2>Zoomable viewer</h2>", 1)[1].split("<h2>", 1)[0]
    assert "href='viewer/index.html'" in section and "<img src='data:image/png;base64," in section
    assert "page errors: 0" in section


@pytest.mark.parametrize("argv,message", [
    (["--context", "0.5"], "--context 0.5: must be ≥ 1"),
    (["--max-images", "0"], "--max-images 0: must be ≥ 1"),
    (["--quality", "101"], "--quality 101: must be in [1, 100]"),
    (["--openseadragon", "/nonexistent/osd"], "/nonexistent/osd: OpenSeadragon not found; run `npm ci`"),
    (["--samples"], "no generated images to show"),
])
def test_bad_viewer_values_are_one_line_errors(tmp_path, capsys, world, argv, message):
    from infbrush.cli import main

    args = ["viewer", "--out", str(tmp_path / "v"), "--preview", "never", "--samples", str(world["samples"]), *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("infbrush viewer: error: ") and message in err, err
    assert not (tmp_path / "v").exists()


def test_viewer_help_shows_every_default():
    from infbrush.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["viewer"]
    for action in sub._actions:
        if action.dest not in ("help", "out"):
            assert "default" in (action.help or ""), action.dest
