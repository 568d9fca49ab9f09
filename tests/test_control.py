"""Controllability measurement: a real-data classifier labels generated images of each class."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from infbrush.data.store import ImageStoreWriter
from infbrush.data.synth_tissue import CLASS_NAMES, render_patch
from infbrush.errors import InfbrushError
from infbrush.evaluate.control import controllability, image_features, read_generated
from infbrush.io import write_json
from infbrush.sample.tiff import array_bands, write_pyramid_tiff

SIZE = 96


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """4 tissue classes; 6 held-out labelled images per class, plus training rows the classifier must ignore."""
    path = tmp_path_factory.mktemp("store") / "images.h5"
    rng = np.random.default_rng(0)
    with ImageStoreWriter(path, image_size=SIZE, thumb_size=32, label_names=CLASS_NAMES) as w:
        for i in range(6):
            for cls in range(4):
                w.append(render_patch(rng, SIZE, cls), f"held/{cls}_{i}", label=cls, held_out=True)
        for cls in range(4):  # training rows carry a *wrong* label: used, they would poison the classifier
            w.append(render_patch(rng, SIZE, cls), f"train/{cls}", label=(cls + 1) % 4, held_out=False)
    return path


def _fake_samples(folder, per_class: int, label_of, seed: int, tiff_every: int = 0):
    """'Generated' images drawn from the class renderer (a perfectly controllable generator), as PNG/TIFF."""
    rng = np.random.default_rng(seed)
    entries = []
    for cls in range(4):
        for j in range(per_class):
            # generated at 2× the training size: the same field of view on a finer pixel grid
            image = np.asarray(Image.fromarray(render_patch(rng, SIZE, cls)).resize((2 * SIZE, 2 * SIZE),
                                                                                      Image.BICUBIC))
            name = f"{CLASS_NAMES[cls]}_{j:04d}"
            if tiff_every and j % tiff_every == 0:
                file = name + ".tiff"
                write_pyramid_tiff(folder / file, array_bands(image, 64), 2 * SIZE, 2 * SIZE,
                                   compression="deflate", tile=64)
            else:
                file = name + ".png"
                Image.fromarray(image).save(folder / file)
            lab = label_of(cls)
            entries.append({"file": file, "name": name, "seed": j, "label": lab, "label_name": None})
    write_json(folder / "index.json", {"resolution": [2 * SIZE, 2 * SIZE], "images": entries})
    return folder / "index.json"


def test_controllable_samples_score_high_and_mislabelled_low(store, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    result = controllability(store, _fake_samples(good, 3, lambda c: c, seed=1, tiff_every=2), feature_size=48)
    real = result["real_held_out"]
    assert real["n_images"] == 24 and real["per_class"] == {n: 6 for n in CLASS_NAMES}
    assert real["cross_validation"]["folds"] == 5
    assert real["cross_validation"]["accuracy"] >= 0.7  # the classes are separable by colour/texture
    gen = result["generated"]
    assert gen["n_images"] == 12 and set(gen["per_class"]) == set(CLASS_NAMES)
    assert all(v["n_images"] == 3 for v in gen["per_class"].values())
    assert gen["mean_accuracy"] >= 0.7
    assert np.asarray(gen["confusion"]).sum() == 12
    assert np.asarray(gen["confusion"]).sum(axis=1).tolist() == [3, 3, 3, 3]  # rows: intended class

    bad = tmp_path / "bad"
    bad.mkdir()  # the same kind of images, each listed under the next class: an uncontrollable generator
    shifted = controllability(store, _fake_samples(bad, 3, lambda c: (c + 1) % 4, seed=1), feature_size=48)
    assert shifted["generated"]["mean_accuracy"] <= 0.35
    assert shifted["goal_met"] is False


def test_tiff_samples_are_read_from_a_pyramid_level(tmp_path):
    image = render_patch(np.random.default_rng(3), 512, 1)
    write_pyramid_tiff(tmp_path / "x.tiff", array_bands(image), 512, 512, compression="deflate", tile=128)
    level = read_generated(tmp_path / "x.tiff", min_side=128)
    assert level.shape == (128, 128, 3)  # 512 → 256 → 128: the smallest level ≥ 128
    # features of the level and of the full image agree closely (both resized to the feature size)
    np.testing.assert_allclose(image_features(level, 32), image_features(image, 32), atol=0.08)


def test_cli_writes_control_json_and_rejects_unlabelled(store, tmp_path):
    from infbrush.cli import control as cli

    samples = tmp_path / "s"
    samples.mkdir()
    index = _fake_samples(samples, 2, lambda c: c, seed=2)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "control.json"
    assert cli.main(parser.parse_args(["--store", str(store), "--samples", str(index), "--out", str(out)])) == 0
    saved = json.loads(out.read_text())
    assert saved["generated"]["n_images"] == 8 and 0.0 <= saved["generated"]["mean_accuracy"] <= 1.0

    unlabelled = tmp_path / "u"
    unlabelled.mkdir()
    index = _fake_samples(unlabelled, 1, lambda c: -1, seed=3)
    with pytest.raises(InfbrushError, match="no generated image has a class label"):
        controllability(store, index)
