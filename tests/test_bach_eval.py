"""BACH downstream: linear probe on frozen embeddings, real vs real + synthetic, several seeds."""
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

CLASSES = ["normal", "benign", "in_situ", "invasive"]
COLOURS = [(230, 180, 200), (200, 120, 170), (150, 60, 140), (90, 30, 110)]


def _image(k, rng, size=48):
    return np.clip(np.array(COLOURS[k]) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A BACH-like store (4 classes, 8 train + 3 test each), one synthetic image per train image, a CLIP."""
    from PIL import Image

    from infbrush.data.store import ImageStoreWriter
    from infbrush.embed.democlip import build_democlip, democlip_config, save_democlip

    root = tmp_path_factory.mktemp("bach")
    rng = np.random.default_rng(0)
    train_ids = []
    with ImageStoreWriter(root / "bach.h5", image_size=48, thumb_size=32, label_names=CLASSES) as writer:
        for k in range(4):
            for j in range(11):
                held_out = j >= 8
                writer.append(_image(k, rng), f"{CLASSES[k]}/{j}", label=k, held_out=held_out)
                if not held_out:
                    train_ids.append((f"{CLASSES[k]}/{j}", k))
    folder = root / "samples_bach" / "48"
    folder.mkdir(parents=True)
    entries = []
    for i, (image_id, k) in enumerate(train_ids):
        Image.fromarray(_image(k, rng)).save(folder / f"img_{i:05d}.png")
        entries.append({"file": f"img_{i:05d}.png", "name": f"img_{i:05d}", "seed": i, "source": "held-out",
                        "source_id": image_id, "label": k, "label_name": CLASSES[k], "resolution": [48, 48]})
    (folder / "index.json").write_text(json.dumps({"images": entries}))
    cfg = democlip_config(image_size=32, patch_size=8, width=64, layers=2, embed_dim=16)
    torch.manual_seed(0)
    model, _, _ = build_democlip(cfg)
    save_democlip(root / "democlip.pt", model, cfg, CLASSES, {c: c for c in CLASSES}, steps=0)
    return root


def test_bach_eval_command(world):
    from infbrush.cli import bach_eval as cli

    out = world / "bach.json"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--bach", str(world / "bach.h5"), "--synthetic", str(world / "samples_bach/48/index.json"),
            "--model", "democlip", "--checkpoint", str(world / "democlip.pt"), "--seeds", "0", "1", "2",
            "--out", str(out), "--device", "cpu"]
    assert cli.main(parser.parse_args(argv)) == 0
    result = json.loads(out.read_text())
    assert result["n_train"] == 32 and result["n_test"] == 12 and result["n_synthetic"] == 32
    for arm in ("real", "real_plus_synthetic"):
        accs = result[arm]["per_seed"]
        assert len(accs) == 3 and all(0 <= a <= 1 for a in accs)
        assert result[arm]["mean"] == pytest.approx(np.mean(accs))
        assert result[arm]["sd"] == pytest.approx(np.std(accs, ddof=1))
        assert result[arm]["mean"] > 0.25 + 0.2  # colour-coded classes: far above chance even for a random CLIP
    assert result["delta_mean"] == pytest.approx(result["real_plus_synthetic"]["mean"] - result["real"]["mean"])
    assert result["paper"] == {"real": 0.79, "real_plus_synthetic": 0.83}


def test_synthetic_label_must_match_its_source(world, tmp_path):
    from infbrush.evaluate.bach import match_synthetic
    from infbrush.evaluate.images import SampleRecord

    ids, labels = ["normal/0", "benign/0"], np.array([0, 1])
    ok = match_synthetic([SampleRecord(tmp_path / "a.png", 0, "benign/0", 1, "benign", 48)], ids, labels)
    assert list(ok) == [1]
    with pytest.raises(InfbrushError, match="has label 0 but its source image"):
        match_synthetic([SampleRecord(tmp_path / "a.png", 0, "benign/0", 0, "normal", 48)], ids, labels)
    with pytest.raises(InfbrushError, match="not an image of the BACH store"):
        match_synthetic([SampleRecord(tmp_path / "a.png", 0, "elsewhere/3", 0, None, 48)], ids, labels)
