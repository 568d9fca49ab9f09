"""The fast paths of tiling and patch reading agree with the straightforward ones they replace."""
import colorsys
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import openslide
import pytest
from PIL import Image
from scipy import ndimage
from test_tiling import make_layout  # tests/ is on sys.path under pytest

from infbrush.data import patches
from infbrush.data.patches import cached_slide, patch_tasks, read_patch, read_patches
from infbrush.data.tiling import (TilingParams, draw_thumbnail, grid_outline, read_coords, read_thumbnail,
                                  thumbnail_size, tile_slides)
from infbrush.data.tissue import drop_small_components, label_components, rgb_to_hsv
from infbrush.runtime.jobs import process_context
from slide_helpers import write_pyramidal_tiff


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("slides") / "s.svs"
    write_pyramidal_tiff(path, make_layout(), 0.5)  # 2048 x 1536, levels 1, 4 (512 x 384)
    return path


def test_rgb_to_hsv_matches_colorsys():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    rgb[0, :4] = [[0, 0, 0], [255, 255, 255], [90, 90, 90], [255, 0, 0]]  # grey and pure-colour corners
    hue, sat, value = rgb_to_hsv(rgb)
    for (i, j) in np.ndindex(rgb.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*(rgb[i, j] / 255.0))
        assert sat[i, j] == pytest.approx(s * 255, abs=1e-3) and value[i, j] == pytest.approx(v * 255)
        if s > 0:  # hue is undefined (0) on greys
            assert min(abs(hue[i, j] - h * 360), 360 - abs(hue[i, j] - h * 360)) < 1e-2


def test_components_and_small_component_removal_match_scipy():
    mask = np.random.default_rng(1).random((120, 90)) > 0.6
    labels, n = label_components(mask)
    reference, n_ref = ndimage.label(mask, structure=np.ones((3, 3), bool))
    assert n == n_ref and np.array_equal(labels > 0, mask)
    # the same partition: each reference component is exactly one of ours
    pairs = {(a, b) for a, b in zip(labels[mask], reference[mask])}
    assert len(pairs) == n
    kept = drop_small_components(mask, 3)
    sizes = np.bincount(reference.ravel())
    assert np.array_equal(kept, mask & (sizes[reference] > 3))


def test_grid_outline_draws_each_box_edge_and_nothing_else():
    boxes = np.array([[2, 3, 9, 7], [5, 5, 5, 5], [30, 1, 40, 12], [38, 10, 60, 30]])  # x0, y0, x1, y1 inclusive
    outline = grid_outline((25, 50), boxes)  # (h, w): the last box is clipped at the border
    expected = np.zeros((25, 50), bool)
    for x0, y0, x1, y1 in boxes:
        x1, y1 = min(x1, 49), min(y1, 24)
        expected[y0, x0:x1 + 1] = expected[y1, x0:x1 + 1] = True
        expected[y0:y1 + 1, x0] = expected[y0:y1 + 1, x1] = True
    assert np.array_equal(outline, expected)


def test_thumbnail_matches_openslide_and_the_drawing(slide_path):
    with openslide.OpenSlide(str(slide_path)) as slide:
        for side in (512, 300, 4096):  # an exact level, a resized one, larger than the slide
            thumb = read_thumbnail(slide, side)
            reference = np.asarray(slide.get_thumbnail((side, side)).convert("RGB"))
            assert thumb.shape == reference.shape == (*thumbnail_size((2048, 1536), side)[::-1], 3)
            assert np.abs(thumb.astype(int) - reference.astype(int)).mean() < 2.0
    coords = np.array([[0, 0], [512, 256]])
    mask = np.zeros(thumb.shape[:2], bool)
    mask[:10, :10] = True
    drawn = np.asarray(draw_thumbnail(thumb, mask, coords, (2048, 1536), 128))
    assert (drawn[0, 0] == (0, 0, 255)).all() and (drawn[256 + 1, 512 + 1] == thumb[256 + 1, 512 + 1]).all()
    assert (drawn[256:384, 512] == (0, 0, 255)).all() and (drawn[383, 512:640] == (0, 0, 255)).all()
    inside = drawn[5, 5].astype(int)
    assert inside[1] > thumb[5, 5, 1] * 0.7 and inside[0] < thumb[5, 5, 0]  # tinted green, not outlined


def test_transparent_pixels_become_white():
    region = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    region.putpixel((1, 1), (0, 0, 0, 0))
    rgb = np.asarray(patches._to_rgb(region))
    assert (rgb[1, 1] == 255).all() and (rgb[0, 0] == (10, 20, 30)).all()


def test_patch_tasks_cover_coords_in_order_and_end_at_tile_rows(slide_path, tmp_path):
    tile_slides([slide_path], tmp_path, TilingParams(patch_size=64, target_mpp=1.0, mask_max_side=512,
                                                     min_tissue_fraction=0.0), progress=False)
    coords, attrs = read_coords(tmp_path / "s.h5")  # every 128-px grid cell of the slide: 16 per row
    tasks = patch_tasks(slide_path, coords, attrs)
    assert np.array_equal(np.concatenate([t[1] for t in tasks]), coords)
    assert all(len(t[1]) >= patches.CHUNK for t in tasks[:-1])
    for _, chunk, _ in tasks[:-1]:  # a chunk ends with a tile row (256 px at level 0): no tile is split
        assert (chunk[-1, 1] + 128) % 256 == 0 and chunk[-1, 0] == coords[:, 0].max()
    big = patch_tasks(slide_path, coords, {**attrs, "patch_size": 4096})  # 48 MiB each: one per task
    assert [len(t[1]) for t in big] == [1] * len(coords)


def test_read_patches_in_workers_match_single_reads(slide_path, tmp_path):
    tile_slides([slide_path], tmp_path, TilingParams(patch_size=64, target_mpp=1.0, mask_max_side=512),
                progress=False)
    coords, attrs = read_coords(tmp_path / "s.h5")
    with ProcessPoolExecutor(2, mp_context=process_context()) as pool:
        ours = np.concatenate(list(pool.map(read_patches, patch_tasks(slide_path, coords, attrs))))
    with openslide.OpenSlide(str(slide_path)) as slide:
        reference = np.stack([read_patch(slide, x, y, attrs) for x, y in coords])
    assert ours.shape == (len(coords), 64, 64, 3) and np.array_equal(ours, reference)


def test_cached_slide_reuses_handles_per_process(slide_path, tmp_path, monkeypatch):
    first = cached_slide(str(slide_path))
    assert cached_slide(str(slide_path)) is first
    copies = []
    for i in range(patches.MAX_HANDLES + 1):
        copies.append(tmp_path / f"c{i}.svs")
        os.link(slide_path, copies[-1])
        cached_slide(str(copies[-1]))
    assert len(patches._HANDLES) == patches.MAX_HANDLES and str(slide_path) not in patches._HANDLES
    monkeypatch.setattr(patches, "_HANDLES_PID", -1)  # as in a forked worker: the parent's handles are dropped
    assert cached_slide(str(copies[-1])) is not None and list(patches._HANDLES) == [str(copies[-1])]
