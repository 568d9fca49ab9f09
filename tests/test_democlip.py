"""The demo CLIP: built by open_clip from a custom config, trained with ClipLoss, zero-shot well above chance."""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from infbrush.data.store import ImageStoreWriter
from infbrush.errors import InfbrushError

torch.set_num_threads(2)
PROMPTS = {"red": "an image of red dots", "green": "an image of green stripes",
           "blue": "an image of blue checks", "grey": "an image of grey noise"}


def make_store(path, n_per_class=12, size=32, seed=0):
    """4 colour/texture classes; every 4th image of a class held out."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    with ImageStoreWriter(path, image_size=size, thumb_size=size, label_names=list(PROMPTS)) as writer:
        for i in range(n_per_class):
            for c in range(4):
                image = rng.integers(90, 130, (size, size, 3)).astype(np.float64)
                if c == 0:
                    image[((xx + rng.integers(6)) % 6 < 2) & ((yy + rng.integers(6)) % 6 < 2)] = (220, 60, 60)
                elif c == 1:
                    image[(xx + yy + rng.integers(10)) % 10 < 4] = (60, 200, 80)
                elif c == 2:
                    image[((xx // 4 + yy // 4) % 2) == 0] = (60, 80, 220)
                else:
                    image += rng.normal(0, 40, image.shape)
                writer.append(np.clip(image, 0, 255).astype(np.uint8), f"img{c}_{i}", label=c, held_out=i % 4 == 0)
    return path


def run_cli(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv))


@pytest.mark.slow
def test_train_clip_zero_shot_well_above_chance(tmp_path, capsys):
    from infbrush.cli import train_clip
    from infbrush.embed.encoders import load_encoder

    store = make_store(tmp_path / "images.h5")
    out = tmp_path / "democlip.pt"
    prompts = [f"{k}={v}" for k, v in PROMPTS.items()]
    assert run_cli(train_clip, ["--store", str(store), "--prompts", *prompts, "--out", str(out),
                                "--image-size", "32", "--patch-size", "8", "--width", "64", "--layers", "2",
                                "--embed-dim", "32", "--epochs", "12", "--batch-size", "12", "--lr", "2e-3",
                                "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads(out.with_suffix(".json").read_text())
    print(f"demo CLIP zero-shot accuracy {metrics['zero_shot_accuracy']:.3f} (chance {metrics['chance']:.2f})")
    assert metrics["n_test"] == 12 and metrics["chance"] == 0.25
    assert metrics["last_epoch_loss"] < metrics["first_epoch_loss"]
    assert metrics["zero_shot_accuracy"] >= 0.6
    low, high = metrics["zero_shot_accuracy_ci95"]
    assert low <= metrics["zero_shot_accuracy"] <= high and high - low < 0.6  # Wilson interval on 12 images
    assert metrics["majority_baseline"] == 0.25 and metrics["n_test_per_class"] == [3, 3, 3, 3]
    assert set(metrics["per_class_accuracy"]) == set(PROMPTS) and metrics["train_seconds"] > 0
    assert f"(95% [{low:.3f}, {high:.3f}])" in capsys.readouterr().out
    # the checkpoint loads weights_only and rebuilds through the shared encoder path
    state = torch.load(out, weights_only=True)
    assert state["model_cfg"]["vision_cfg"]["image_size"] == 32 and state["prompts"] == PROMPTS
    encoder = load_encoder("open_clip", "democlip", str(out), device="cpu")
    assert encoder.input_size == 32 and encoder.dim == 32 and encoder.name == "democlip"


def test_train_clip_needs_a_prompt_per_class(tmp_path):
    from infbrush.cli import train_clip

    store = make_store(tmp_path / "images.h5", n_per_class=2)
    with pytest.raises(InfbrushError, match="no prompt for class 'grey'"):
        run_cli(train_clip, ["--store", str(store), "--prompts", "red=r", "green=g", "blue=b",
                             "--out", str(tmp_path / "c.pt"), "--device", "cpu"])


def test_democlip_checkpoint_of_wrong_kind_names_file(tmp_path):
    from infbrush.embed.encoders import load_encoder

    path = tmp_path / "not_clip.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(InfbrushError, match="not_clip.pt: not a demo CLIP checkpoint"):
        load_encoder("open_clip", "democlip", str(path))
