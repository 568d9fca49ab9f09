"""``infbrush sample``: a tiny real model sampled at small sizes, PNG / pyramidal TIFF, resumable, seeded."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from infbrush.data.store import ImageStoreWriter
from infbrush.errors import InfbrushError

pytest.importorskip("infbrush.diffusion", reason="model core not present")
from infbrush.diffusion import Diffusion, SamplingSettings  # noqa: E402
from infbrush.models import build_model  # noqa: E402
from infbrush.sample import conditions as C  # noqa: E402
from infbrush.sample.run import Execution, load_weights, sample_resolution  # noqa: E402

COND_DIM = 8
TINY = dict(name="infbrush", in_channels=3, cond_dim=COND_DIM, sparse_channels=16, sparse_grid=16, emb_dim=32,
            cond_tokens=2, num_heads=2, grid_size=16, grid_channels=8, channel_mult=[1, 2], grid_heads=2)


def _export(path, cano: bool = True, cond_dim: int = COND_DIM) -> None:
    torch.manual_seed(0)
    args = {**TINY, "cano": cano, "cond_dim": cond_dim}
    model = build_model(args)
    with torch.no_grad():  # random but non-trivial output head so images are not constant
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save({"model": model.state_dict(), "model_args": args,
                "config": {"mollify_sigma": 1 / 32, "timesteps": 1000}, "step": 3}, path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """ema.pt, a store with 3 held-out labelled rows + 2 training rows, its embeddings and text embeddings."""
    import h5py

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sample")
    _export(root / "ema.pt")
    rng = np.random.default_rng(0)
    ids = []
    with ImageStoreWriter(root / "images.h5", image_size=32, thumb_size=16, label_names=["a", "b"]) as w:
        for i in range(5):
            held = i >= 2
            ids.append(f"slide{i}/0_0")
            w.append(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), ids[-1], label=i % 2, held_out=held)
    with h5py.File(root / "embeddings.h5", "w") as h5:
        h5["features"] = rng.normal(size=(5, COND_DIM)).astype(np.float32)
        h5["ids"] = np.array(ids, dtype=object).astype("S")
    with h5py.File(root / "text.h5", "w") as h5:
        h5["features"] = rng.normal(size=(2, COND_DIM)).astype(np.float32)
        h5["names"] = np.array([b"a", b"b"])
        h5["prompts"] = np.array([b"an a", b"a b"])
    return root


def _cli(argv: list[str]) -> int:
    from infbrush.cli import sample as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv))


def _base(world, out) -> list[str]:
    return ["--weights", str(world / "ema.pt"), "--out", str(out), "--steps", "2", "--device", "cpu",
            "--no-progress", "--chunk-points", "300"]


def test_sampler_spacing_and_guidance_interval_flags(world, tmp_path):
    """--sampler / --spacing / --guidance-interval reach the sampler and are recorded; bad values are named."""
    base = _base(world, tmp_path / "s") + ["--resolution", "32", "--labels", "0,1", "--per-class", "1",
                                           "--guidance-scale", "2"]
    assert _cli(base + ["--sampler", "unipc", "--spacing", "lambda", "--steps", "4",
                        "--guidance-interval", "100", "900"]) == 0
    index = json.loads((tmp_path / "s" / "32" / "index.json").read_text())
    assert (index["settings"]["sampler"], index["settings"]["spacing"]) == ("unipc", "lambda")
    assert index["settings"]["guidance_interval"] == [100, 900] and len(index["images"]) == 2
    ddim = tmp_path / "d"
    assert _cli(_base(world, ddim) + ["--resolution", "32", "--labels", "0,1", "--per-class", "1",
                                      "--guidance-scale", "2", "--steps", "4"]) == 0
    files = [e["file"] for e in index["images"]]
    assert any(not np.array_equal(np.asarray(Image.open(tmp_path / "s" / "32" / f)),
                                  np.asarray(Image.open(ddim / "32" / f))) for f in files)  # another sampler ran
    for flags, message in ((["--sampler", "euler"], "--sampler 'euler' is not a sampler; valid: ddim, dpmpp_2m, unipc"),
                           (["--spacing", "log"], "--spacing 'log' is not a spacing; valid: linear, lambda"),
                           (["--guidance-interval", "700", "300"], "--guidance-interval: .* is reversed"),
                           (["--guidance-interval", "0", "1000"], r"--guidance-interval: .* outside .*\[0, 999\]")):
        with pytest.raises(InfbrushError, match=message):
            _cli(_base(world, tmp_path / "bad") + ["--resolution", "32", "--labels", "0"] + flags)
    assert not (tmp_path / "bad").exists()


def test_held_out_conditions_two_resolutions(world, tmp_path):
    out = tmp_path / "s"
    assert _cli(_base(world, out) + ["--resolution", "32", "48", "--cond-embeddings", str(world / "embeddings.h5"),
                                     "--store", str(world / "images.h5"), "--seed", "10"]) == 0
    for r in (32, 48):
        index = json.loads((out / str(r) / "index.json").read_text())
        images = index["images"]
        assert [e["source_id"] for e in images] == ["slide2/0_0", "slide3/0_0", "slide4/0_0"]  # held-out rows only
        assert {e["source"] for e in images} == {"held-out"}
        assert [e["seed"] for e in images] == [10, 11, 12]
        assert [e["label"] for e in images] == [0, 1, 0] and images[1]["label_name"] == "b"
        assert index["resolution"] == [r, r] and index["settings"]["steps"] == 2
        arrays = [np.asarray(Image.open(out / str(r) / e["file"])) for e in images]
        assert all(a.shape == (r, r, 3) and a.dtype == np.uint8 for a in arrays)
        assert arrays[0].std() > 0 and not np.array_equal(arrays[0], arrays[1])  # seeds/conditions differ


def test_training_split_conditions_are_recorded_as_such(world):
    """--split train takes the training rows, and the index says so (not "held-out")."""
    from infbrush.data.store import ImageStore

    specs = C.from_held_out(world / "images.h5", world / "embeddings.h5", seed=0, split=0)
    store = ImageStore(world / "images.h5")
    train_ids = [store.ids[i] for i in np.flatnonzero(store.split == 0)]
    assert [s.source_id for s in specs] == train_ids and {s.source for s in specs} == {"train"}


def test_batching_does_not_change_images_and_resume_skips_done(world, tmp_path):
    model, ckpt = load_weights(world / "ema.pt")
    specs = C.from_text(world / "text.h5", per_class=2, seed=0)
    assert [s.label for s in specs] == [0, 0, 1, 1] and [s.seed for s in specs] == [0, 1, 2, 3]
    common = dict(diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 32), settings=SamplingSettings(steps=2),
                  record={"k": 1}, progress=False)
    one = sample_resolution(model, specs, tmp_path / "one", (32, 32), execution=Execution(batch_pixels=1), **common)
    many = sample_resolution(model, specs, tmp_path / "many", (32, 32), execution=Execution(batch_pixels=1 << 20),
                             **common)
    for a, b in zip(one, many):
        pa = np.asarray(Image.open(tmp_path / "one" / a["file"])).astype(int)
        pb = np.asarray(Image.open(tmp_path / "many" / b["file"])).astype(int)
        assert np.abs(pa - pb).max() <= 1  # float summation order only

    folder = tmp_path / "one"
    first = np.asarray(Image.open(folder / one[2]["file"]))
    (folder / one[2]["file"]).unlink()
    mtimes = {e["file"]: os.stat(folder / e["file"]).st_mtime_ns for e in one if e is not one[2]}
    again = sample_resolution(model, specs, folder, (32, 32), **common)
    assert [e["file"] for e in again] == [e["file"] for e in one]
    assert {f: os.stat(folder / f).st_mtime_ns for f in mtimes} == mtimes  # untouched
    np.testing.assert_array_equal(np.asarray(Image.open(folder / one[2]["file"])), first)  # same seed, same image
    # changed settings invalidate the finished images
    changed = sample_resolution(model, specs[:1], folder, (32, 32), **{**common, "record": {"k": 2}})
    assert os.stat(folder / changed[0]["file"]).st_mtime_ns != mtimes[changed[0]["file"]]


def test_large_output_is_an_openslide_pyramid_matching_the_png(world, tmp_path):
    openslide = pytest.importorskip("openslide")
    args = _base(world, tmp_path / "png") + ["--resolution", "64", "--cond-text", str(world / "text.h5"),
                                             "--per-class", "1", "--n-images", "1"]
    assert _cli(args) == 0
    args_tiff = _base(world, tmp_path / "tif") + ["--resolution", "64", "--cond-text", str(world / "text.h5"),
                                                  "--per-class", "1", "--n-images", "1", "--png-max-side", "32",
                                                  "--compression", "deflate", "--mpp", "0.5", "--mpp-size", "32"]
    assert _cli(args_tiff) == 0
    entry = json.loads((tmp_path / "tif" / "64" / "index.json").read_text())["images"][0]
    assert entry["format"] == "tiff" and entry["file"].endswith(".tiff")
    slide = openslide.OpenSlide(str(tmp_path / "tif" / "64" / entry["file"]))
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)  # 0.5 µm at 32² → 0.25 at 64²
    level0 = np.asarray(slide.read_region((0, 0), 0, (64, 64)))[..., :3]
    png = np.asarray(Image.open(tmp_path / "png" / "64" / entry["name"].__add__(".png")))
    np.testing.assert_array_equal(level0, png)


def test_cano_off_model_samples(tmp_path):
    _export(tmp_path / "nocano.pt", cano=False)
    model, ckpt = load_weights(tmp_path / "nocano.pt")
    assert ckpt["model_args"]["cano"] is False
    specs = C.from_labels([1], cond_dim=COND_DIM, per_class=1, seed=5)
    entries = sample_resolution(model, specs, tmp_path / "out", (32, 32),
                                diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 32),
                                settings=SamplingSettings(steps=2), record={}, progress=False)
    image = np.asarray(Image.open(tmp_path / "out" / entries[0]["file"]))
    assert image.shape == (32, 32, 3) and image.std() > 0


def test_bad_inputs_are_named(world, tmp_path):
    with pytest.raises(InfbrushError, match="model weights not found"):
        _cli(_base(world, tmp_path) + ["--resolution", "32"] + ["--weights", str(tmp_path / "nope.pt")])
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")  # says what the file is and what was expected
    with pytest.raises(InfbrushError, match=r"notes\.pt: cannot load weights: not a torch checkpoint .*expected the "
                                            r"model export of `infbrush train --export`"):
        _cli(_base(world, tmp_path) + ["--resolution", "32"] + ["--weights", str(tmp_path / "notes.pt")])
    cut = tmp_path / "cut.pt"
    cut.write_bytes((world / "ema.pt").read_bytes()[:2000])
    with pytest.raises(InfbrushError, match=r"cut\.pt: cannot load weights: truncated or corrupt torch file"):
        _cli(_base(world, tmp_path) + ["--resolution", "32"] + ["--weights", str(cut)])
    _export(tmp_path / "dim5.pt", cond_dim=5)
    argv = ["--weights", str(tmp_path / "dim5.pt"), "--out", str(tmp_path / "o"), "--resolution", "32",
            "--cond-embeddings", str(world / "embeddings.h5"), "--store", str(world / "images.h5")]
    with pytest.raises(InfbrushError, match="dimension 8 but the model expects 5"):
        _cli(argv)
    with pytest.raises(InfbrushError, match="needs --store"):
        _cli(_base(world, tmp_path) + ["--resolution", "32", "--cond-embeddings", str(world / "embeddings.h5")])
    with pytest.raises(InfbrushError, match=r"outside \[0, 8\)"):
        _cli(_base(world, tmp_path) + ["--resolution", "32", "--labels", "9"])


def test_state_dir_keeps_the_ddim_state_on_disk_with_identical_images(world, tmp_path):
    args = ["--resolution", "32", "--cond-embeddings", str(world / "embeddings.h5"), "--store", str(world / "images.h5")]
    assert _cli(_base(world, tmp_path / "ram") + args) == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert _cli(_base(world, tmp_path / "disk") + args + ["--state-dir", str(scratch)]) == 0
    ram = json.loads((tmp_path / "ram" / "32" / "index.json").read_text())["images"]
    for entry in ram:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "ram" / "32" / entry["file"])),
                                      np.asarray(Image.open(tmp_path / "disk" / "32" / entry["file"])))
    assert list(scratch.iterdir()) == []  # the scratch file is anonymous and gone with the tensor
