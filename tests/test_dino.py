"""DINO: lightly's head/loss on a timm ViT, augmentations, loss decreases, exact resume, export, and the k-NN
probe that reports the untrained network beside the trained one (with 95 % intervals)."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from infbrush.data.store import ImageStoreWriter
from infbrush.errors import InfbrushError

torch.set_num_threads(2)


def make_store(path, n_per_class=8, size=32, seed=0):
    """4 colour/texture 'land-cover' classes; every 4th image of a class held out."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    colours = [(40, 120, 40), (200, 190, 150), (40, 60, 160), (150, 150, 150)]
    with ImageStoreWriter(path, image_size=size, thumb_size=size, label_names=["forest", "field", "water", "urban"]) \
            as writer:
        for i in range(n_per_class):
            for c, colour in enumerate(colours):
                image = np.array(colour, dtype=np.float64) + rng.normal(0, 15, (size, size, 3))
                if c == 3:
                    image[((xx // 6 + yy // 6 + rng.integers(2)) % 2) == 0] *= 0.5
                writer.append(np.clip(image, 0, 255).astype(np.uint8), f"p{c}_{i}", label=c, held_out=i % 4 == 0)
    return path


def tiny_config(**overrides):
    from infbrush.ssl.train import DinoConfig

    base = dict(model="vit_tiny_patch16_224", img_size=32, patch_size=8, epochs=2, batch_size=8, out_dim=256,
                hidden_dim=64, bottleneck_dim=32, local_crops=2, local_crop_size=16, warmup_epochs=1,
                warmup_teacher_temp_epochs=1, drop_path=0.0, ckpt_every=100, log_every=1, lr=5e-3)
    base.update(overrides)
    return DinoConfig(**base)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("naip") / "images.h5")


def test_uses_lightly_dino_head_and_loss():
    from lightly.models.modules import DINOProjectionHead

    from infbrush.ssl.dino import BackboneSpec, DINOPair, DinoHead

    pair = DINOPair(BackboneSpec("vit_tiny_patch16_224", 32, patch_size=8),
                    DinoHead(out_dim=128, hidden_dim=32, bottleneck_dim=16, freeze_last_layer=1), drop_path=0.1)
    assert isinstance(pair.student.head, DINOProjectionHead)
    assert all(not p.requires_grad for p in pair.teacher.parameters())
    for a, b in zip(pair.student.state_dict().values(), pair.teacher.state_dict().values()):
        torch.testing.assert_close(a, b)
    views = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16)]  # global and local crop sizes
    assert [tuple(pair.student(v).shape) for v in views] == [(2, 128), (2, 128)]


class ColourEncoder:
    """A stand-in encoder: mean colour (informative) or per-image noise (uninformative) features."""

    def __init__(self, informative: bool, input_size: int = 32) -> None:
        self.informative, self.input_size, self.dim = informative, input_size, 3

    def embed_images(self, images):
        images = np.asarray(images, dtype=np.float32)  # (B, S, S, 3)
        if self.informative:
            return torch.from_numpy(images.mean(axis=(1, 2)))
        seeds = images.sum(axis=(1, 2, 3)).astype(np.int64)
        return torch.from_numpy(np.stack([np.random.default_rng(int(x)).normal(size=3) for x in seeds]).astype("f4"))


def test_knn_report_shows_untrained_baseline_beside_trained(store):
    """Same protocol and held-out images for both networks; each accuracy and the gain carry a 95 % interval."""
    from infbrush.data.store import ImageStore
    from infbrush.ssl.knn import knn_report

    report = knn_report(ImageStore(store), ColourEncoder(True), ColourEncoder(False), k=5)
    assert report["n_test"] == 8 and report["n_train"] == 24 and report["n_test_per_class"] == [2, 2, 2, 2]
    assert report["knn_accuracy"] == 1.0 and report["knn_accuracy_random_init"] < 0.75
    assert report["knn_gain"] == pytest.approx(report["knn_accuracy"] - report["knn_accuracy_random_init"])
    for key in ("knn_accuracy", "knn_accuracy_random_init", "knn_gain"):
        low, high = report[f"{key}_ci95"]
        assert low <= report[key] <= high, key
    assert report["knn_accuracy_ci95"][0] > 0.6  # Wilson interval of 8/8
    assert report["knn_gain_ci95"][0] > 0  # colour beats noise even on 8 images
    assert report["knn_accuracy_per_class"] == [1.0] * 4  # per class, in `classes` order
    base_per_class = report["knn_accuracy_random_init_per_class"]
    assert len(base_per_class) == 4 and np.mean(base_per_class) == pytest.approx(report["knn_accuracy_random_init"])
    no_baseline = knn_report(ImageStore(store), ColourEncoder(True), None, k=5)
    assert "knn_accuracy_random_init" not in no_baseline and no_baseline["knn_accuracy"] == 1.0


def test_accuracy_intervals():
    from infbrush.stats import accuracy_interval, paired_difference_interval

    low, high = accuracy_interval(np.array([1] * 11 + [0] * 4))  # 15 images at 0.733
    assert (round(low, 3), round(high, 3)) == (0.480, 0.891)  # Wilson: ±0.2 around 0.73 on 15 images
    wide, narrow = accuracy_interval(np.arange(20) % 4 > 0), accuracy_interval(np.arange(200) % 4 > 0)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2  # more held-out images, tighter interval
    with pytest.raises(InfbrushError, match="no held-out images"):
        accuracy_interval(np.array([], dtype=bool))
    rng = np.random.default_rng(0)
    a, b = rng.random(150) < 0.9, rng.random(150) < 0.75
    low, high = paired_difference_interval(a, b)
    assert low < a.mean() - b.mean() < high and high - low < 0.25
    assert paired_difference_interval(a, a) == [0.0, 0.0]


def test_untrained_baseline_is_the_training_init():
    """The k-NN baseline network equals the student's step-0 weights (same seed), not just the same architecture."""
    from infbrush.ssl.dino import BackboneSpec, DINOPair, DinoHead, untrained_backbone
    from infbrush.ssl.train import seed_everything

    spec = BackboneSpec("vit_tiny_patch16_224", 32, patch_size=8, depth=2)
    seed_everything(3)
    pair = DINOPair(spec, DinoHead(out_dim=64, hidden_dim=32, bottleneck_dim=16, freeze_last_layer=1), drop_path=0.1)
    baseline = untrained_backbone(spec, seed=3)
    assert len(baseline.blocks) == 2
    for (key, value), init in zip(pair.student.backbone.state_dict().items(), baseline.state_dict().values()):
        torch.testing.assert_close(value, init, msg=key)
    other = untrained_backbone(spec, seed=4)
    assert not torch.equal(other.patch_embed.proj.weight, baseline.patch_embed.proj.weight)


def test_colour_preserving_views_keep_a_flat_image_colour():
    """With colour jitter, greyscale and solarisation off, every view of a flat image keeps its colour."""
    from PIL import Image

    from infbrush.ssl.dino import IMAGENET_MEAN, IMAGENET_STD
    from infbrush.ssl.train import multicrop_transform

    colour = np.array([40, 60, 160], dtype=np.uint8)
    image = Image.fromarray(np.broadcast_to(colour, (32, 32, 3)).copy())
    expected = torch.tensor((colour / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, dtype=torch.float32)
    calm = multicrop_transform(tiny_config(cj_prob=0.0, gray_prob=0.0, solarize_prob=0.0, rr_prob=1.0, vf_prob=0.5))
    views = calm(image)
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 2
    for view in views:
        torch.testing.assert_close(view.mean(dim=(1, 2)), expected, atol=0.02, rtol=0)
    np.random.seed(0)
    torch.manual_seed(0)
    jittered = multicrop_transform(tiny_config(cj_prob=1.0, cj_strength=1.0, gray_prob=0.0, solarize_prob=0.0))
    assert any((v.mean(dim=(1, 2)) - expected).abs().max() > 0.1 for v in jittered(image))


def test_changed_augmentation_makes_checkpoints_stale():
    """Any training setting (not just the architecture) separates runs; bookkeeping does not."""
    from dataclasses import asdict

    from infbrush.ssl.train import changed_settings

    saved = json.loads(json.dumps(asdict(tiny_config())))  # tuples come back as lists, as from a checkpoint
    assert changed_settings(saved, tiny_config(ckpt_every=7, log_every=3, workers=1, keep=9)) == []
    assert changed_settings(saved, tiny_config(cj_prob=0.0, depth=3)) == ["depth", "cj_prob"]


def test_cli_rejects_bad_augmentation_values():
    import argparse

    from infbrush.cli import train_dino

    parser = argparse.ArgumentParser()
    train_dino.add_arguments(parser)
    for argv, message in [(["--cj-prob", "1.5"], "--cj-prob must be a probability in \\[0, 1\\], got 1.5"),
                          (["--local-crop-scale", "0.5", "0.2"], "--local-crop-scale must be 0 < MIN <= MAX <= 1"),
                          (["--blur-prob", "1", "0.1", "-1"], "--blur-prob must be a probability")]:
        with pytest.raises(InfbrushError, match=message):
            train_dino.check_args(parser.parse_args(["--store", "s.h5", "--out", "d_ckpt", "--export", "d.pt", *argv]))


@pytest.mark.slow
def test_student_learns_to_match_a_fixed_teacher(store, tmp_path):
    """With the teacher and centre frozen, DINO's loss is a plain cross-entropy that training must reduce."""
    from infbrush.ssl.train import train_dino

    cfg = tiny_config(momentum_teacher=1.0, center_momentum=1.0, warmup_teacher_temp=0.07, lr=0.005, warmup_epochs=0,
                      epochs=3, clip_grad=0.0, weight_decay=(0.0, 0.0))
    train_dino(store, tmp_path / "a.pt", tmp_path / "a_ckpt", cfg, device="cpu", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "a_ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 9  # 24 training images / 8 per batch × 3 epochs
    print("DINO losses (teacher fixed):", [round(x, 3) for x in losses])
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # last epoch below the first (per-step values are noisy)


@pytest.mark.slow
def test_training_resumes_exactly(store, tmp_path):
    from infbrush.ssl.dino import load_dino_backbone
    from infbrush.ssl.train import train_dino

    cfg = tiny_config()
    straight = train_dino(store, tmp_path / "a.pt", tmp_path / "a_ckpt", cfg, device="cpu", progress=False)
    assert straight["steps"] == 6
    # interrupted at the epoch boundary, then the same call again resumes from the checkpoint
    assert train_dino(store, tmp_path / "b.pt", tmp_path / "b_ckpt", cfg, device="cpu", stop_after=3,
                      progress=False) is None
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "b_ckpt" / "ckpt_00000003.pt").exists()
    resumed = train_dino(store, tmp_path / "b.pt", tmp_path / "b_ckpt", cfg, device="cpu", progress=False)
    assert resumed["steps"] == 6
    a_state = torch.load(tmp_path / "a_ckpt" / "ckpt_00000006.pt", weights_only=True)
    b_state = torch.load(tmp_path / "b_ckpt" / "ckpt_00000006.pt", weights_only=True)
    for key, value in a_state["student"].items():
        torch.testing.assert_close(value, b_state["student"][key], msg=key)
    torch.testing.assert_close(a_state["loss"]["center"], b_state["loss"]["center"])
    a, meta = load_dino_backbone(tmp_path / "a.pt", expected_model="vit_tiny_patch16_224")
    b, _ = load_dino_backbone(tmp_path / "b.pt")
    assert meta["img_size"] == 32 and meta["patch_size"] == 8
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=key)
    # a rerun with another architecture refuses the existing checkpoints
    with pytest.raises(InfbrushError, match="b_ckpt: checkpoints were made with out_dim=256"):
        train_dino(store, tmp_path / "b.pt", tmp_path / "b_ckpt", tiny_config(out_dim=512), device="cpu",
                   progress=False)
    # ... unless asked to start over (Snakemake reruns after a params change): old checkpoints are replaced
    restarted = train_dino(store, tmp_path / "b.pt", tmp_path / "b_ckpt", tiny_config(out_dim=512), device="cpu",
                           progress=False, restart_stale=True)
    assert restarted["steps"] == 6
    assert torch.load(tmp_path / "b_ckpt" / "ckpt_00000006.pt", weights_only=True)["config"]["out_dim"] == 512


@pytest.mark.slow
def test_dino_encoder_knn_and_wrong_model(store, tmp_path):
    from infbrush.ssl.evaluate import evaluate_dino
    from infbrush.embed.encoders import load_encoder
    from infbrush.ssl.train import train_dino

    out = tmp_path / "dino.pt"
    train_dino(store, out, tmp_path / "ckpt", tiny_config(epochs=1, koleo_weight=0.1, cj_prob=0.0), device="cpu",
               progress=False)
    encoder = load_encoder("dino", "vit_tiny_patch16_224", str(out))
    assert encoder.input_size == 32 and encoder.dim == 192 and encoder.kind == "dino"
    report = evaluate_dino(store, out, "vit_tiny_patch16_224", k=5, seed=0, device="cpu")
    print(f"tiny DINO k-NN accuracy {report['knn_accuracy']:.3f} (chance {report['chance']:.2f}, "
          f"untrained {report['knn_accuracy_random_init']:.3f})")
    assert report["n_test"] == 8 and report["chance"] == 0.25
    assert report["knn_accuracy"] > report["chance"]
    assert {"knn_accuracy_random_init", "knn_accuracy_ci95", "knn_gain", "knn_gain_ci95"} <= set(report)
    with pytest.raises(InfbrushError, match="dino.pt: checkpoint is a 'vit_tiny_patch16_224'"):
        load_encoder("dino", "vit_small_patch16_224", str(out))
