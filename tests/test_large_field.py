"""Large fields: the tile geometry, the tiled denoiser (tiles as images of their own, blended overlaps), and the
whole-image vs patch-based comparison end to end on tiny models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infbrush.sample.tiled import TiledDenoiser, blend_weights, tile_grid
from infbrush.train.loop import train
from tests.test_train import make_embeddings, make_store, tiny_config


def test_tile_grid_covers_the_field_or_names_the_value():
    assert tile_grid(64, 32) == [(0, 0), (0, 32), (32, 0), (32, 32)]
    assert tile_grid(64, 32, 16) == [(r, c) for r in (0, 16, 32) for c in (0, 16, 32)]
    with pytest.raises(ValueError, match=r"tiles of 32 px at stride 22 \(overlap 10\) do not divide a 64 px field"):
        tile_grid(64, 32, 10)
    with pytest.raises(ValueError, match="overlap 32 must be in"):
        tile_grid(64, 32, 32)
    with pytest.raises(ValueError, match="tile size 80 must be in"):
        tile_grid(64, 80)
    w = blend_weights(8, 3)
    assert w.min() > 0 and w[3:5, 3:5].eq(1).all() and torch.allclose(w, w.T)


class ToyTile:
    """ε̂ of a tile = its condition's first value + 10 × the tile-local x coordinate (a pure function per point)."""

    prediction = "eps"

    def __init__(self):
        self.calls = []

    def __call__(self, x, coords, t, cond, image_size=None, cond_mask=None):
        self.calls.append((x.shape, image_size, None if cond_mask is None else cond_mask.clone()))
        value = cond[:, :1].view(-1, 1, 1) + 10 * coords[..., :1]
        return value.expand(-1, -1, x.shape[-1]).clone()


def test_tiles_are_images_of_their_own_and_overlaps_blend():
    toy = ToyTile()
    field, tile = 16, 8
    tiled = TiledDenoiser(toy, field, tile, overlap=0)
    cond = torch.tensor([[1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0]])  # one image, 4 tiles × D = 2
    out = tiled(torch.zeros(1, field * field, 3), None, torch.tensor([5]), cond, (field, field)).view(field, field, 3)
    local_x = 10 * (torch.arange(tile) + 0.5) / tile
    for j, (r, c) in enumerate(tiled.corners):
        expect = (j + 1) + local_x.view(1, tile).expand(tile, tile)
        assert torch.allclose(out[r:r + tile, c:c + tile, 0], expect)  # the tile's own lattice and condition
    assert toy.calls[-1][0] == (4, tile * tile, 3) and toy.calls[-1][1] == (tile, tile)  # one batched call
    # guidance doubles the batch: the mask reaches every tile of its image
    tiled(torch.zeros(2, field * field, 3), None, torch.tensor([5, 5]), torch.cat([cond, cond]), (field, field),
          cond_mask=torch.tensor([True, False]))
    assert toy.calls[-1][2].tolist() == [True] * 4 + [False] * 4
    # with overlap: pixels of one tile keep its value exactly, shared ones lie between the tiles' values
    blended = TiledDenoiser(toy, field, tile, overlap=4)
    cond9 = torch.arange(9, dtype=torch.float32).repeat_interleave(2).view(1, 18) * 0 + \
        torch.tensor([0.0, 0, 100, 0, 200, 0, 0, 0, 100, 0, 200, 0, 0, 0, 100, 0, 200, 0]).view(1, 18)
    out = blended(torch.zeros(1, field * field, 3), None, torch.tensor([5]), cond9, (field, field))
    out = out.view(field, field, 3)[..., 0]
    assert torch.allclose(out[0, 0], torch.tensor(10 * 0.5 / tile))  # only tile 0 covers the corner
    assert 0 + 10 * 4.5 / 8 < out[0, 5] < 100 + 10 * 1.5 / 8  # columns 4..7 are shared by tiles 0 and 1
    with pytest.raises(ValueError, match="whole 16x16 lattice"):
        tiled(torch.zeros(1, 100, 3), None, torch.tensor([5]), cond, (10, 10))


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_democlip):
    """A 32² field store (4 held-out fields), its tiny whole-image model, a 16² tile model, a tiny demo CLIP."""
    root = tmp_path_factory.mktemp("large")
    clip = tiny_democlip({"a": "a photo of a", "b": "a photo of b"})
    fields = make_store(root / "fields.h5", n=8, size=32, held_out=(4, 5, 6, 7))
    make_embeddings(root / "fields_emb.h5", [f"img{i}" for i in range(8)], dim=16)
    tiles = make_store(root / "tiles.h5", n=6, size=16)
    make_embeddings(root / "tiles_emb.h5", [f"img{i}" for i in range(6)], dim=16)
    assert train(tiny_config(root / "f", fields, cond_embeddings=str(root / "fields_emb.h5"), steps=2,
                              n_points=16, mollify_sigma=1 / 32)) == 0
    assert train(tiny_config(root / "t", tiles, cond_embeddings=str(root / "tiles_emb.h5"), steps=2)) == 0
    return root, clip


def _args(root, clip, *extra):
    return ["large-field", "--field-weights", str(root / "f" / "ema.pt"), "--field-store", str(root / "fields.h5"),
            "--field-embeddings", str(root / "fields_emb.h5"), "--tile-weights", str(root / "t" / "ema.pt"),
            "--tile-size", "16", "--kind", "open_clip", "--model", "democlip", "--checkpoint", clip,
            "--steps", "2", "--bootstrap", "20", "--crops-per-field", "2", "--no-progress", *extra]


def test_comparison_end_to_end_and_bad_input(models, tmp_path, capsys):
    from PIL import Image

    from infbrush.cli import main

    root, clip = models
    out = tmp_path / "large_field.json"
    assert main(_args(root, clip, "--n-fields", "4", "--batch-fields", "3", "--overlap", "0", "8",
                      "--out", str(out), "--gallery", str(tmp_path / "g.png"), "--fields-dir", str(tmp_path / "f"))) == 0
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"whole_image", "patch_based", "patch_based_overlap_8"}
    for name, m in result["methods"].items():
        assert {"whole_image_kid", "crop_kid", "seam_ratio", "embedding_similarity", "seconds_per_image"} <= set(m)
        assert np.isfinite(m["whole_image_kid"]) and m["seconds_per_image"] > 0
        low, high = m["embedding_similarity"]["ci95"]
        assert -1 <= low <= m["embedding_similarity"]["mean"] <= high <= 1
        if name != "whole_image":
            assert len(m["minus_whole_image"]["whole_image_kid_ci95"]) == 2
    assert result["real"]["seam_ratio"]["mean"] > 0 and result["n_fields"] == 4
    # the baseline: as many real training fields, measured the same way (no time, no paired differences)
    base = result["baselines"]["real_train_fields"]
    assert set(base) == {"whole_image_kid", "crop_kid", "seam_ratio", "embedding_similarity"}
    train_rows = result["baseline_rows"]["real_train_fields"]
    assert len(train_rows) == 4 and not set(train_rows) & set(result["reference_rows"])
    assert result["reference_rows"] == [4, 5, 6, 7] and result["seeds"] == [0, 1, 2, 3]
    assert Image.open(tmp_path / "g.png").size == (4 * 32 + 3 * 4, 4 * 32)
    assert len(list((tmp_path / "f").glob("*/*.png"))) == 4 * 4
    # every generated field's sample index names its reference: the viewer shows the two side by side
    from infbrush.sample.outputs import read_index
    from infbrush.viewer.build import RealImages, RealSources

    real_images = RealImages(RealSources(store=str(root / "fields.h5")))
    for name in result["methods"]:
        entries = read_index(tmp_path / "f" / name / "index.json")["images"]
        assert [e["name"] for e in entries] == [f"{name}_{i:03d}" for i in range(4)]
        assert [real_images.pick(e, k) for k, e in enumerate(entries)] == result["reference_rows"]
        assert all(Path(e["path"]).is_file() for e in entries)
    # the viewer lists the method under study first, then the baselines in the comparison's order (not by name)
    from infbrush.viewer.build import collect_generated

    found, failures = collect_generated([tmp_path / "f"], [], max_images=1)
    assert not failures and [g.name.split("/")[0] for g in found] == list(result["methods"])
    # per-image seeds: a field does not depend on the batch it was sampled in (batch 3 above, 1 here)
    again = tmp_path / "again"
    assert main(_args(root, clip, "--n-fields", "4", "--batch-fields", "1", "--overlap", "0",
                      "--field-condition-tiles", "--out", str(tmp_path / "b.json"), "--fields-dir", str(again))) == 0
    for name in ("whole_image", "patch_based"):
        a = np.asarray(Image.open(tmp_path / "f" / name / "003.png"), np.int16)
        b = np.asarray(Image.open(again / name / "003.png"), np.int16)
        assert np.abs(a - b).max() <= 1  # float32 reductions of other batch shapes: at most one grey level
    # the information-matched baseline: hard-seam tiles, every one conditioned on the whole reference field's
    # embedding (what the whole-image model is told), not on its own tile's
    assert set(json.loads((tmp_path / "b.json").read_text())["methods"]) == {
        "whole_image", "patch_based", "patch_based_field_condition"}
    from infbrush.diffusion.process import Diffusion
    from infbrush.embed.encoders import load_encoder
    from infbrush.evaluate.large_field import FieldSetup, sample_tiled
    from infbrush.sample.run import load_weights

    encoder = load_encoder("open_clip", "democlip", clip, "cpu")
    model, ckpt = load_weights(str(root / "t" / "ema.pt"))
    reference = [np.asarray(Image.open(again / "real" / "000.png"))[..., :3]]
    whole = encoder.embed_images(reference)  # (1, D)
    with torch.no_grad():
        expected, _ = sample_tiled(model, Diffusion.of_checkpoint(ckpt, "t"), whole[:, None].expand(-1, 4, -1), 32,
                                   16, 0, [0], FieldSetup(steps=2))
    made = np.asarray(Image.open(again / "patch_based_field_condition" / "000.png"), np.int16)
    assert np.abs(made - expected[0].astype(np.int16)).max() <= 1
    assert np.abs(made - np.asarray(Image.open(again / "patch_based" / "000.png"), np.int16)).max() > 1
    for extra, message in ((["--n-fields", "4", "--overlap", "5"], "--tile-size 16 / --overlap 5: tiles of 16 px at "
                                                                     "stride 11 (overlap 5) do not divide a 32 px field"),
                           (["--n-fields", "9"], "fields.h5: 4 held-out fields, fewer than the 9"),
                           (["--n-fields", "1"], "--n-fields must be >= 2, got 1")):
        capsys.readouterr()
        assert main(_args(root, clip, "--out", str(tmp_path / "x.json"), *extra)) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.json").exists()


def test_paired_kid_bootstrap_is_clean_fids_kid_on_each_resample():
    """The kernel-matrix bootstrap gives, resample by resample, clean-fid's KID difference on the resampled rows;
    a shifted set is told apart from a copy of the references' distribution."""
    from infbrush.evaluate.fid import kernel_inception_distance
    from infbrush.evaluate.large_field import paired_kid_difference

    rng = np.random.default_rng(0)
    real = rng.normal(size=(24, 16))
    near, far = rng.normal(size=(24, 16)), rng.normal(size=(24, 16)) + 0.8
    group, seed, n_boot = 3, 5, 7
    lo, hi = paired_kid_difference(far, near, real, n_boot, seed, group=group)
    # the same resamples, each scored by clean-fid directly
    pick_rng, diffs = np.random.default_rng(seed), []
    for _ in range(n_boot):
        pick = pick_rng.integers(0, len(real) // group, len(real) // group)
        rows = (pick[:, None] * group + np.arange(group)[None, :]).reshape(-1)
        diffs.append(kernel_inception_distance(far[rows], real[rows]) - kernel_inception_distance(near[rows], real[rows]))
    assert [lo, hi] == pytest.approx([np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)], rel=1e-9)
    assert lo > 0  # the shifted set is further from the references, on every resample
    with pytest.raises(ValueError, match="whole groups of 5"):
        paired_kid_difference(far, near, real, n_boot, seed, group=5)
