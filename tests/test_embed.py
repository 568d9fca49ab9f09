"""Embedding stage: encoders by name/local path offline, embeddings.h5 layout, alignment, resume, text embeddings."""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import h5py
import numpy as np
import pytest
import torch

from infbrush.data.store import ImageStore, ImageStoreWriter
from infbrush.errors import InfbrushError

torch.set_num_threads(1)
CLASSES = ["red", "green", "blue", "grey"]


def make_store(path, n_per_class=4, size=32, seed=0):
    """4 colour/texture classes; every 4th image of a class held out."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    colours = [(220, 60, 60), (60, 200, 80), (60, 80, 220), (128, 128, 128)]
    with ImageStoreWriter(path, image_size=size, thumb_size=size, label_names=CLASSES) as writer:
        for i in range(n_per_class):
            for c, colour in enumerate(colours):
                image = rng.integers(80, 120, (size, size, 3)).astype(np.float64)
                mask = ((xx + yy * c + rng.integers(8)) % (4 + 2 * c)) < 2
                image[mask] = colour
                writer.append(np.clip(image, 0, 255).astype(np.uint8), f"img{c}_{i}", label=c, held_out=i % 4 == 0)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "images.h5")


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """A local timm checkpoint (timm's tiny test ViT, random init) standing in for downloaded weights."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("weights") / "test_vit.pth"
    torch.save(model.state_dict(), path)
    return path


def tiny_clip_dir(folder):
    """A hub-like open_clip folder: open_clip_config.json + open_clip_pytorch_model.bin (random tiny CLIP)."""
    from infbrush.embed.democlip import PREPROCESS_CFG, build_democlip, democlip_config

    cfg = democlip_config(image_size=32, patch_size=8, width=32, layers=1, embed_dim=16)
    torch.manual_seed(0)
    model, _, _ = build_democlip(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg, "preprocess_cfg": {"mean": PREPROCESS_CFG["mean"], "std": PREPROCESS_CFG["std"]}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def test_timm_local_weights_layout_alignment_and_determinism(store, timm_weights, tmp_path):
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.images import embed_store, read_embeddings
    from infbrush.io import sha256_file

    encoder = load_encoder("timm", "test_vit", str(timm_weights))
    assert encoder.input_size == 160 and encoder.normalized is False
    out = tmp_path / "embeddings.h5"
    assert embed_store(store, encoder, out, batch_size=5, progress=False)
    ids = ImageStore(store).ids
    features, got_ids, attrs = read_embeddings(out, expected_ids=ids)
    assert features.shape == (len(ids), encoder.dim) and features.dtype == np.float32
    assert got_ids == ids
    assert attrs["encoder"] == "test_vit" and attrs["weights_sha256"] == sha256_file(timm_weights)
    assert int(attrs["input_size"]) == 160 and not bool(attrs["normalized"])
    with h5py.File(out) as h5:
        assert h5["features"].chunks == (5, encoder.dim)
    # same image -> same embedding, in a second run with a freshly loaded encoder
    again = load_encoder("timm", "test_vit", str(timm_weights))
    store_view = ImageStore(store)
    single = again.embed_images(np.stack([store_view.thumb(3, 160)])).numpy()
    np.testing.assert_allclose(single[0], features[3], rtol=1e-5, atol=1e-5)
    # different images give different features (the encoder is not constant)
    assert np.abs(features[0] - features[1]).max() > 1e-4


def test_embed_resumes_and_matches_one_shot(store, timm_weights, tmp_path):
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.images import embed_store, partial_path, read_embeddings

    encoder = load_encoder("timm", "test_vit", str(timm_weights))
    one_shot = tmp_path / "one.h5"
    embed_store(store, encoder, one_shot, batch_size=4, progress=False)
    out = tmp_path / "resumed.h5"
    assert not embed_store(store, encoder, out, batch_size=4, limit=6, progress=False)  # "interrupted" after 6
    assert not out.exists() and partial_path(out).exists()
    with h5py.File(partial_path(out)) as h5:
        assert int(h5.attrs["n_done"]) == 6
    assert embed_store(store, encoder, out, batch_size=4, progress=False)
    assert not partial_path(out).exists()
    a, ids_a, _ = read_embeddings(one_shot)
    b, ids_b, _ = read_embeddings(out)
    assert ids_a == ids_b
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_resume_against_another_store_is_an_error(store, timm_weights, tmp_path):
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.images import embed_store, partial_path, read_embeddings

    encoder = load_encoder("timm", "test_vit", str(timm_weights))
    out = tmp_path / "e.h5"
    embed_store(store, encoder, out, batch_size=4, limit=4, progress=False)
    other = make_store(tmp_path / "other.h5", n_per_class=5, seed=1)  # 20 images, not 16
    with pytest.raises(InfbrushError, match=str(partial_path(out).name)):
        embed_store(other, encoder, out, batch_size=4, progress=False)
    complete = tmp_path / "complete.h5"
    embed_store(store, encoder, complete, batch_size=8, progress=False)
    with pytest.raises(InfbrushError, match="complete.h5.*16 embedding rows.*20 images"):
        read_embeddings(complete, expected_ids=ImageStore(other).ids)


def test_timm_checkpoint_of_wrong_architecture_names_file(tmp_path):
    import timm

    from infbrush.embed.encoders import load_encoder

    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    with pytest.raises(InfbrushError, match="resnet.pth: weights do not fit"):
        load_encoder("timm", "test_vit", str(path))


def test_open_clip_local_folder_offline_and_text(store, tmp_path):
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.images import embed_store, read_embeddings
    from infbrush.embed.text import read_text_embeddings, write_text_embeddings, zero_shot_classify

    folder = tiny_clip_dir(tmp_path / "quilt_like")
    by_schema = load_encoder("open_clip", f"local-dir:{folder}")
    # a downloaded hub folder given as the checkpoint of a hub name (the documented offline route)
    by_checkpoint = load_encoder("open_clip", "hf-hub:wisdomik/QuiltNet-B-32", str(folder))
    assert by_schema.input_size == 32 and by_schema.normalized and by_schema.dim == 16
    images = np.stack([ImageStore(store).thumb(i, 32) for i in range(4)])
    a, b = by_schema.embed_images(images), by_checkpoint.embed_images(images)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(4), rtol=1e-4, atol=1e-4)
    out = tmp_path / "emb.h5"
    embed_store(store, by_schema, out, batch_size=8, progress=False)
    assert bool(read_embeddings(out)[2]["normalized"])
    prompts = {"red": "red dots", "green": "green stripes", "blue": "blue lines", "grey": "grey noise"}
    text_out = write_text_embeddings(tmp_path / "text.h5", by_schema, prompts)
    features, names, texts, attrs = read_text_embeddings(text_out)
    assert features.shape == (4, 16) and names == list(prompts) and texts == list(prompts.values())
    pred, probs = zero_shot_classify(by_schema, a, prompts)
    assert pred.shape == (4,) and probs.shape == (4, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4), rtol=1e-5, atol=1e-5)
    # zero-shot head agrees with the stored text features (same cosine ranking)
    np.testing.assert_array_equal(pred.numpy(), (a.numpy() @ features.T).argmax(-1))


def test_missing_hub_model_offline_says_how_to_provide_it(monkeypatch):
    from infbrush.embed.encoders import load_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InfbrushError) as info:
        load_encoder("open_clip", "hf-hub:infbrush-test/not-a-model", None)
    message = str(info.value)
    assert "\n" not in message and "embedding.checkpoint" in message and "huggingface-cli download" in message


def test_unknown_kind_lists_valid_ones():
    from infbrush.embed.encoders import load_encoder

    with pytest.raises(ValueError, match="open_clip, timm, dino"):
        load_encoder("clip2", "x")


def test_parse_prompts_items_and_file(tmp_path):
    from infbrush.embed.text import parse_prompts

    assert parse_prompts(["a=first prompt", "b=second"]) == {"a": "first prompt", "b": "second"}
    path = tmp_path / "p.yaml"
    path.write_text("prompts:\n  x: an image of x\n  y: an image of y\n")
    assert parse_prompts([str(path)]) == {"x": "an image of x", "y": "an image of y"}
    with pytest.raises(InfbrushError, match="NAME=PROMPT"):
        parse_prompts(["a=1", "no equals sign"])


def run_cli(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv))


def test_cli_embed_and_embed_text(store, tmp_path):
    from infbrush.cli import embed, embed_text

    folder = tiny_clip_dir(tmp_path / "clip")
    out = tmp_path / "embeddings.h5"
    assert run_cli(embed, ["--store", str(store), "--kind", "open_clip", "--model", f"local-dir:{folder}",
                           "--out", str(out), "--batch-size", "8", "--device", "cpu", "--input-size", "32",
                           "--no-progress"]) == 0
    with h5py.File(out) as h5:
        assert h5["features"].shape == (16, 16) and len(h5["ids"]) == 16
    with pytest.raises(InfbrushError, match="--input-size 224"):
        run_cli(embed, ["--store", str(store), "--kind", "open_clip", "--model", f"local-dir:{folder}",
                        "--out", str(out), "--input-size", "224", "--device", "cpu"])
    text = tmp_path / "text.h5"
    assert run_cli(embed_text, ["--model", f"local-dir:{folder}", "--prompts", "a=an a", "b=a b",
                                "--out", str(text), "--device", "cpu"]) == 0
    with h5py.File(text) as h5:
        assert h5["features"].shape == (2, 16)
