"""Large-patch datasets: tiled coords → image store with labels, held-out slides, and on-the-fly reads."""
import argparse

import numpy as np
import openslide
import pytest
from PIL import Image
from test_tiling import DARK, FAINT, make_layout, params  # tests/ is on sys.path under pytest

from infbrush.data.patches import CLASS_NAMES, SlidePatchDataset, extract_patches
from infbrush.data.store import ImageStore
from infbrush.data.tiling import tile_slides
from infbrush.errors import InfbrushError
from slide_helpers import write_pyramidal_tiff


def write_class_map(path, downsample=16):
    """Class map of the test layout: DARK = invasive (3), FAINT = benign (1), background 255."""
    cmap = np.full((1536 // downsample, 2048 // downsample), 255, np.uint8)
    for (x0, y0, x1, y1), label in [(DARK, 3), (FAINT, 1)]:
        cmap[y0 // downsample:y1 // downsample, x0 // downsample:x1 // downsample] = label
    Image.fromarray(cmap).save(path)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsi")
    slides = root / "slides"
    slides.mkdir()
    for i, sid in enumerate(["s0", "s1", "s2"]):
        write_pyramidal_tiff(slides / f"{sid}.svs", make_layout(seed=i), 0.5)
        if sid != "s2":
            write_class_map(slides / f"{sid}_classes.png")
    summary = tile_slides(sorted(slides.glob("*.svs")), root / "tiles",
                          params(patch_size=64, target_mpp=1.0), progress=False)  # 5×-like: level 0, resized
    assert len(summary.tiled) == 3
    return root


def test_extract_patches_store_labels_and_held_out_slides(tiled, tmp_path):
    from infbrush.cli import extract_patches as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "images.h5"
    args = parser.parse_args([str(tiled / "tiles"), "--slides", str(tiled / "slides"), "--out", str(out),
                              "--thumb-size", "16", "--class-maps", "--held-out-slides", "1", "--workers", "2",
                              "--no-progress"])
    assert cli.main(args) == 0
    store = ImageStore(out)
    assert store.image_size == (64, 64) and store.label_names == CLASS_NAMES
    assert store.thumb(0).shape == (16, 16, 3)
    sids = [i.split("/")[0] for i in store.ids]
    assert sorted(set(sids)) == ["s0", "s1", "s2"]
    held = {sid for sid, split in zip(sids, store.split) if split == 1}
    assert held == {"s2"} and all(split == (sid == "s2") for sid, split in zip(sids, store.split))
    for image_id, label in zip(store.ids, store.labels):
        sid, xy = image_id.split("/")
        x, y = map(int, xy.split("_"))
        if sid == "s2":
            assert label == -1  # no class map
        else:
            assert label == (3 if x < DARK[2] else 1), image_id  # the dark region lies left of the faint one
            assert x < DARK[2] or x + 128 > FAINT[0]
    # pixels: a stored image is the slide region at level 0 resized 128 → 64
    i = store.ids.index(next(j for j in store.ids if j.startswith("s1/")))
    x, y = map(int, store.ids[i].split("/")[1].split("_"))
    with openslide.OpenSlide(str(tiled / "slides" / "s1.svs")) as slide:
        region = slide.read_region((x, y), 0, (128, 128)).convert("RGB")
    expected = np.asarray(region.resize((64, 64), Image.Resampling.BICUBIC, reducing_gap=3.0))
    assert np.abs(store.image(i).astype(int) - expected.astype(int)).max() <= 1


def test_on_the_fly_dataset_matches_the_store(tiled, tmp_path):
    out = tmp_path / "images.h5"
    extract_patches(tiled / "tiles", [tiled / "slides"], out, thumb_size=16, class_maps=False, progress=False)
    store = ImageStore(out)
    assert store.label_names == [] and (store.labels == -1).all() and (store.split == 0).all()
    dataset = SlidePatchDataset(tiled / "tiles", [tiled / "slides"])
    assert len(dataset) == len(store) and dataset.ids == store.ids
    for i in (0, len(store) // 2, len(store) - 1):
        assert np.array_equal(dataset[i], store.image(i))


def test_missing_slides_and_bad_held_out_count(tiled, tmp_path):
    with pytest.raises(InfbrushError, match="held-out-slides"):
        extract_patches(tiled / "tiles", [tiled / "slides"], tmp_path / "x.h5", held_out_slides=3, progress=False)
    summary = extract_patches(tiled / "tiles", [tiled / "slides" / "s0.svs"], tmp_path / "images.h5",
                              thumb_size=16, progress=False, log=lambda line: None)
    assert summary["n_slides"] == 1 and len(summary["missing"]) == 2
    assert len((tmp_path / "failures.tsv").read_text().splitlines()) == 3
    with pytest.raises(InfbrushError, match="none of the tiled slides"):
        extract_patches(tiled / "tiles", [tmp_path], tmp_path / "y.h5", progress=False, log=lambda line: None)


@pytest.mark.slow
def test_stages_on_a_small_demo_world(tmp_path):
    """The demo world's slides, NAIP tile and BACH set through tile → extract-patches, patch-geotiff, adapt."""
    pytest.importorskip("infbrush.demo.world")
    from infbrush.cli import main as infbrush

    world, out = tmp_path / "world", tmp_path / "results"
    assert infbrush(["demo-world", "--out", str(world), "--n-slides", "2", "--slide-size", "1536", "1024",
                     "--naip-size", "256", "--bach-per-class", "2", "--bach-size", "64", "--no-progress"]) == 0
    assert infbrush(["tile", str(world / "slides"), "--out", str(out / "tiles"), "--patch-size", "128",
                     "--target-mpp", "1.0", "--no-progress"]) == 0
    failed = {line.split("\t")[0].rsplit("/", 1)[-1] for line in (out / "tiles" / "failures.tsv").read_text()
              .splitlines()[1:]}
    assert failed == {"broken_slide.svs", "empty_slide.svs"}
    assert infbrush(["extract-patches", str(out / "tiles"), "--slides", str(world / "slides"), "--out",
                     str(out / "images.h5"), "--thumb-size", "32", "--class-maps", "--held-out-slides", "1",
                     "--no-progress"]) == 0
    store = ImageStore(out / "images.h5")
    assert len(store) > 0 and store.label_names == CLASS_NAMES and (store.labels >= 0).mean() > 0.5
    assert infbrush(["patch-geotiff", str(world / "naip" / "demo_naip.tif"), "--out", str(out / "naip.h5"),
                     "--patch-size", "64", "--landcover", str(world / "naip" / "demo_naip_landcover.tif"),
                     "--thumb-size", "32", "--no-progress"]) == 0
    assert len(ImageStore(out / "naip.h5")) > 0
    assert infbrush(["adapt", "--kind", "bach", "--root", str(world / "bach"), "--out", str(out / "bach.h5"),
                     "--image-size", "64", "--thumb-size", "32", "--no-progress"]) == 0
    bach = ImageStore(out / "bach.h5")
    assert len(bach) == 8 and np.bincount(bach.labels).tolist() == [2, 2, 2, 2] and bach.split.sum() > 0
