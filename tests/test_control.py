"""Controllability: a judge fit on real training images labels generated images of each class."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from infbrush.data.store import ImageStoreWriter
from infbrush.demo.tissue import CLASS_NAMES, render_patch
from infbrush.errors import InfbrushError
from infbrush.evaluate.control import (accuracy_summary, controllability, fit_judge, image_features,
                                       mean_accuracy_interval, read_generated, wilson_interval)
from infbrush.io import write_json
from infbrush.sample.tiff import PyramidOptions, array_bands, write_pyramid_tiff

SIZE = 64


def _write_store(path, train_label_of, n_train: int = 10, n_held: int = 6, seed: int = 0):
    """4 tissue classes: ``n_train`` training rows per class labelled ``train_label_of(cls)``, ``n_held``
    correctly labelled held-out rows per class."""
    rng = np.random.default_rng(seed)
    with ImageStoreWriter(path, image_size=SIZE, thumb_size=32, label_names=CLASS_NAMES) as w:
        for i in range(n_train):
            for cls in range(4):
                w.append(render_patch(rng, SIZE, cls), f"train/{cls}_{i}", label=train_label_of(cls), held_out=False)
        for i in range(n_held):
            for cls in range(4):
                w.append(render_patch(rng, SIZE, cls), f"held/{cls}_{i}", label=cls, held_out=True)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _write_store(tmp_path_factory.mktemp("store") / "images.h5", lambda c: c)


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
                                   options=PyramidOptions(compression="deflate", tile=64))
            else:
                file = name + ".png"
                Image.fromarray(image).save(folder / file)
            entries.append({"file": file, "name": name, "seed": j, "label": label_of(cls), "label_name": None})
    settings = {"guidance_scale": 2.5, "steps": 50, "step": 100 + seed, "seed": 0, "weights": "ema.pt"}
    write_json(folder / "index.json", {"resolution": [2 * SIZE, 2 * SIZE], "settings": settings, "images": entries})
    return folder / "index.json"


def test_judge_is_fit_on_the_training_split_and_scored_on_held_out(store, tmp_path):
    judge, names, summary = fit_judge(store, feature_size=48)
    assert names == list(CLASS_NAMES)
    assert summary["trained_on"]["n_images"] == 40 and summary["trained_on"]["per_class"] == {n: 10 for n in names}
    real = summary["real_held_out"]
    assert real["n_images"] == 24 and all(v["n_images"] == 6 for v in real["per_class"].values())
    assert real["overall_accuracy"] >= 0.9  # the synthetic classes are separable by colour/texture
    lo, hi = real["overall_ci95"]
    assert lo < real["overall_accuracy"] <= hi <= 1.0
    # a training split whose labels are shifted by one class poisons the judge: it really learns from split 0
    shifted = _write_store(tmp_path / "shifted.h5", lambda c: (c + 1) % 4)
    assert fit_judge(shifted, feature_size=48)[2]["real_held_out"]["overall_accuracy"] <= 0.25


def test_controllable_samples_score_high_and_mislabelled_low(store, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    result = controllability(store, _fake_samples(good, 3, lambda c: c, seed=1, tiff_every=2), feature_size=48,
                             goal=0.7)
    gen = result["generated"]
    assert gen["n_images"] == 12 and set(gen["per_class"]) == set(CLASS_NAMES)
    for v in gen["per_class"].values():
        assert v["n_images"] == 3 and len(v["ci95"]) == 2 and v["ci95"][0] <= v["accuracy"] <= v["ci95"][1]
        assert v["judge_real_n_images"] == 6 and v["judge_real_accuracy"] is not None  # the real figure beside it
    assert gen["mean_accuracy"] >= 0.7 and gen["mean_ci95"][0] < gen["mean_accuracy"] <= gen["mean_ci95"][1] + 1e-9
    assert result["goal"] == 0.7 and result["goal_met"] is True
    assert result["judge"]["real_held_out"]["mean_accuracy"] >= 0.9 and result["judge"]["goal_met"] is True
    assert np.asarray(gen["confusion"]).sum(axis=1).tolist() == [3, 3, 3, 3]  # rows: intended class
    assert gen["relative_to_real"] == pytest.approx(gen["mean_accuracy"] / gen["judge_real_mean_accuracy"])
    # the sampling settings the figure depends on travel with it (the report prints them)
    assert result["sampled_with"] == {"guidance_scale": 2.5, "steps": 50, "step": 101, "seed": 0}

    bad = tmp_path / "bad"
    bad.mkdir()  # the same kind of images, each listed under the next class: an uncontrollable generator
    shifted = controllability(store, _fake_samples(bad, 3, lambda c: (c + 1) % 4, seed=1), feature_size=48)
    assert shifted["generated"]["mean_accuracy"] <= 0.35
    assert shifted["goal_met"] is False and shifted["goal_met_by_lower_bound"] is False


def test_intervals_shrink_with_more_samples():
    # the same 7/8 hit rate per class, with 8 and with 64 images per class
    small = mean_accuracy_interval([7] * 4, [8] * 4, seed=0)
    large = mean_accuracy_interval([56] * 4, [64] * 4, seed=0)
    assert small[0] < 0.875 < small[1] and large[0] < 0.875 < large[1]
    assert large[1] - large[0] < 0.5 * (small[1] - small[0])
    assert mean_accuracy_interval([7] * 4, [8] * 4, seed=0) == small  # seeded
    assert wilson_interval(56, 64)[1] - wilson_interval(56, 64)[0] < wilson_interval(7, 8)[1] - wilson_interval(7, 8)[0]
    # all right still leaves room below 1: the interval does not collapse
    perfect = mean_accuracy_interval([8] * 4, [8] * 4, seed=0)
    assert perfect[0] < 0.97 and perfect[1] <= 1.0
    summary = accuracy_summary(np.array([True] * 9 + [False]))
    assert summary["correct"] == 9 and summary["accuracy"] == 0.9 and summary["ci95"][0] < 0.9 < summary["ci95"][1]
    with pytest.raises(InfbrushError, match="need ≥ 1 image per class"):
        mean_accuracy_interval([1], [0])


def test_tiff_samples_are_read_from_a_pyramid_level(tmp_path):
    image = render_patch(np.random.default_rng(3), 512, 1)
    write_pyramid_tiff(tmp_path / "x.tiff", array_bands(image), 512, 512,
                       options=PyramidOptions(compression="deflate", tile=128))
    level = read_generated(tmp_path / "x.tiff", min_side=128)
    assert level.shape == (128, 128, 3)  # 512 → 256 → 128: the smallest level ≥ 128
    # colour features of the level and of the full image agree closely (both resized to the feature size)
    np.testing.assert_allclose(image_features(level, 32)[:12], image_features(image, 32)[:12], atol=0.05)


def test_cli_writes_control_json_and_rejects_bad_input(store, tmp_path):
    from infbrush.cli import control as cli

    samples = tmp_path / "s"
    samples.mkdir()
    index = _fake_samples(samples, 2, lambda c: c, seed=2)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "control.json"
    assert cli.main(parser.parse_args(["--store", str(store), "--samples", str(index), "--out", str(out),
                                       "--goal", "0.99"])) == 0
    saved = json.loads(out.read_text())
    assert saved["generated"]["n_images"] == 8 and 0.0 <= saved["generated"]["mean_accuracy"] <= 1.0
    assert saved["goal"] == 0.99 and saved["goal_met"] == (saved["generated"]["mean_accuracy"] >= 0.99)
    assert saved["judge"]["real_held_out"]["n_images"] == 24 and "Wilson" in saved["intervals"]["per_class"]
    with pytest.raises(InfbrushError, match="--goal must be in"):
        cli.main(parser.parse_args(["--store", str(store), "--samples", str(index), "--out", str(out),
                                    "--goal", "1.5"]))

    unlabelled = tmp_path / "u"
    unlabelled.mkdir()
    index = _fake_samples(unlabelled, 1, lambda c: -1, seed=3)
    with pytest.raises(InfbrushError, match="no generated image has a class label"):
        controllability(store, index)


def test_condition_probe_reports_what_the_embeddings_themselves_tell(store, tmp_path):
    """--embeddings: a k-NN on the training split's embeddings classifies each sample's condition; an encoder that
    puts one class's held-out images among another class's shows as that class's ceiling, beside the generated
    figure, and per image."""
    import h5py

    from infbrush.cli import control as cli
    from infbrush.data.store import ImageStore

    ids = ImageStore(store).ids
    rng = np.random.default_rng(0)
    features = []
    for image_id in ids:
        cls = int(image_id.split("/")[1].split("_")[0])
        seen_as = 1 if image_id.startswith("held/0_") else cls  # the encoder confuses held-out class 0 with 1
        features.append(np.eye(4)[seen_as] * 5 + rng.normal(size=4) * 0.3)
    with h5py.File(tmp_path / "embeddings.h5", "w") as h5:
        h5["features"] = np.asarray(features, dtype=np.float32)
        h5["ids"] = np.asarray(ids, dtype=object).astype(h5py.string_dtype())
    samples = tmp_path / "s"
    samples.mkdir()
    index = _fake_samples(samples, 3, lambda c: c, seed=4)
    entries = json.loads(index.read_text())
    for e in entries["images"]:
        e["source_id"] = f"held/{e['label']}_{e['seed']}"  # each sample "generated from" a held-out image
    write_json(index, entries)

    result = controllability(store, index, feature_size=48, embeddings=tmp_path / "embeddings.h5")
    probe = result["condition_probe"]
    assert {k: v["accuracy"] for k, v in probe["per_class"].items()} == {n: float(i > 0) for i, n in
                                                                          enumerate(CLASS_NAMES)}
    assert probe["mean_accuracy"] == pytest.approx(0.75) and probe["k"] == 20 and probe["n_images"] == 12
    gen = result["generated"]
    assert [gen["per_class"][n]["condition_accuracy"] for n in CLASS_NAMES] == [0.0, 1.0, 1.0, 1.0]
    assert [i["condition_knn"] for i in gen["images"] if i["intended"] == CLASS_NAMES[0]] == [CLASS_NAMES[1]] * 3
    assert "condition_probe" not in controllability(store, index, feature_size=48)  # only when asked

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "control.json"
    assert cli.main(parser.parse_args(["--store", str(store), "--samples", str(index), "--out", str(out),
                                       "--embeddings", str(tmp_path / "embeddings.h5")])) == 0
    assert json.loads(out.read_text())["condition_probe"]["mean_accuracy"] == pytest.approx(0.75)
    for e in entries["images"][:2]:
        del e["source_id"]  # samples not made from store images: the probe has nothing to classify
    write_json(index, entries)
    with pytest.raises(InfbrushError, match="2 have none"):
        controllability(store, index, embeddings=tmp_path / "embeddings.h5")
