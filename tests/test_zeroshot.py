"""Zero-shot evaluation of text-conditioned generations: confusion matrix, accuracy, PNG."""
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
from infbrush.evaluate.zeroshot import confusion_matrix  # noqa: E402

PROMPTS = {"red": "a red image", "green": "a green image", "blue": "a blue image", "grey": "a grey image"}


@pytest.fixture(scope="module")
def democlip_ckpt(tiny_democlip):
    """A tiny demo CLIP with random weights in the demo CLIP checkpoint format."""
    return tiny_democlip(PROMPTS)


def _text_samples(folder, per_class):
    """Images + index.json as `infbrush sample --cond-text` writes them (label = prompt index)."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    colours = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200), "grey": (128, 128, 128)}
    entries = []
    for k, name in enumerate(PROMPTS):
        for j in range(per_class[k]):
            image = np.clip(np.array(colours[name]) + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
            file = f"{name}_{j:04d}.png"
            Image.fromarray(image).save(folder / file)
            entries.append({"file": file, "name": file[:-4], "seed": len(entries), "source": "text",
                            "source_id": name, "label": k, "label_name": name, "resolution": [48, 48]})
    (folder / "index.json").write_text(json.dumps({"resolution": [48, 48], "images": entries}))
    return folder / "index.json"


def test_confusion_matrix_counts():
    true = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 0, 2])
    m = confusion_matrix(true, pred, 4)
    assert m.shape == (4, 4)
    assert m.sum(axis=1).tolist() == [2, 1, 3, 0]
    assert m[0, 1] == 1 and m[2, 0] == 1 and np.trace(m) == 4


def test_zeroshot_command_rows_sum_to_images_per_class(tmp_path, democlip_ckpt):
    from infbrush.cli import zeroshot as cli

    per_class = [3, 2, 4, 1]
    index = _text_samples(tmp_path / "samples_text" / "48", per_class)
    out = tmp_path / "zeroshot.json"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--samples", str(index), "--model", "democlip", "--checkpoint", democlip_ckpt, "--out", str(out),
            "--device", "cpu", "--batch-size", "4", "--prompts"] + [f"{k}={v}" for k, v in PROMPTS.items()]
    assert cli.main(parser.parse_args(argv)) == 0
    result = json.loads(out.read_text())
    matrix = np.array(result["confusion"])
    assert matrix.sum(axis=1).tolist() == per_class
    assert result["accuracy"] == pytest.approx(np.trace(matrix) / sum(per_class))
    assert result["class_names"] == list(PROMPTS)
    png = tmp_path / "zeroshot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zeroshot_rejects_labels_outside_the_prompts(tmp_path, democlip_ckpt):
    from infbrush.embed.encoders import load_encoder
    from infbrush.evaluate.images import read_sample_index
    from infbrush.evaluate.zeroshot import zero_shot_evaluate

    index = _text_samples(tmp_path / "s", [1, 1, 1, 1])
    encoder = load_encoder("open_clip", "democlip", democlip_ckpt)
    with pytest.raises(InfbrushError, match="not one of the classes"):
        zero_shot_evaluate(read_sample_index(index), encoder, {"red": "a red image", "green": "a green image"})
