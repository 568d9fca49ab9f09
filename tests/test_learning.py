"""Issue 12's training fixes: non-aliasing Fourier octaves, EMA warm-up, lr schedule, stratified timesteps,
class-balanced data, the label-conditioned path end to end, and the sampling guards on bad conditions."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import yaml

from infbrush.diffusion.loss import _draw_per_image, stratified_timestep
from infbrush.diffusion.mollifier import lattice_axis
from infbrush.diffusion.points import lattice_coords
from infbrush.errors import InfbrushError
from infbrush.models import PRESETS
from infbrush.models.embeddings import fourier_features, max_fourier_freqs
from infbrush.train.data import balanced_epoch, image_generators, stream_rows
from infbrush.train.loop import resolve_model_args, train
from infbrush.train.schedules import ema_decay, lr_factor
from tests.test_train import make_store, tiny_config


def _training_sizes(repo_root) -> dict[str, int]:
    """Training image side of every dataset configured in params.yaml."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    sizes = {}
    for name, d in params["datasets"].items():
        side = (d.get("tiling") or d.get("patching") or {}).get("patch_size") or d.get("image_size")
        assert side, f"{name}: no training size found"
        sizes[name] = int(side)
    return sizes


def test_no_fourier_feature_is_constant_on_any_configured_training_lattice(repo_root):
    for name, side in _training_sizes(repo_root).items():
        for preset in PRESETS:
            args = resolve_model_args(preset, {}, in_channels=3, cond_dim=0, cano=True, image_size=(side, side))
            axis = lattice_axis(side)  # the features are separable: one axis of the lattice covers them all
            feats = fourier_features(torch.stack([axis, axis], -1), args["fourier_freqs"])  # (side, 2 + 4F)
            spread = feats.max(0).values - feats.min(0).values
            assert (spread > 0.5).all(), f"{name} ({side}², preset {preset}): a Fourier feature is ~constant"
    # the old demo setting (7 octaves at 128²) had cos(2π·64·x) == 0 at every pixel centre: the check catches it
    axis = lattice_axis(128)
    old = fourier_features(torch.stack([axis, axis], -1), 7)
    assert ((old.max(0).values - old.min(0).values) < 1e-3).any()


def test_fourier_cap_follows_size_and_keeps_explicit_override():
    assert [max_fourier_freqs(s) for s in (16, 64, 128, 256, 1024, 4096)] == [3, 5, 6, 7, 9, 11]
    args = resolve_model_args("paper", {}, in_channels=3, cond_dim=0, cano=True, image_size=(4096, 4096))
    assert args["fourier_freqs"] == PRESETS["paper"]["fourier_freqs"]  # 4096² keeps the preset's 10
    args = resolve_model_args("demo", {"fourier_freqs": 7}, in_channels=3, cond_dim=0, cano=True, image_size=(64, 64))
    assert args["fourier_freqs"] == 7


def test_ema_warmup_tracks_live_weights_early_and_reaches_the_rate():
    assert ema_decay(0.995, 0) == pytest.approx(0.1)  # first update keeps 90 % of the live weights
    assert ema_decay(0.995, 10_000) == 0.995
    # after 400 updates the initial weights' share is tiny with the warm-up, 13.5 % without it
    share_warm = np.prod([ema_decay(0.995, n) for n in range(400)])
    assert share_warm < 1e-6 < 0.995 ** 400


def test_v_prediction_round_trips_and_is_exact_at_high_noise():
    from infbrush.diffusion import cosine_alpha_bar
    from infbrush.diffusion.schedule import eps_from_v, predict_x0, v_target

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(2, 50, 3, generator=g) * 2 - 1, torch.randn(2, 50, 3, generator=g)
    for a in cosine_alpha_bar(1000)[[0, 500, 999]].tolist():
        x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
        v = v_target(x0, eps, a)
        assert torch.allclose(eps_from_v(x_t, v, a), eps, atol=1e-4)
        if a > 1e-2:  # x̂_0 divides by sqrt(ᾱ): float32 cannot recover x_0 at the last step
            assert torch.allclose(predict_x0(x_t, eps_from_v(x_t, v, a), a), x0, atol=2e-3)
    # at t = T-1 an error in v̂ reaches ε̂ scaled by sqrt(ᾱ) ≪ 1, where ε-prediction passes it on whole
    a = float(cosine_alpha_bar(1000)[-1])
    x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
    err = eps_from_v(x_t, v_target(x0, eps, a) + 0.1, a) - eps
    assert err.abs().max() < 0.1 * a ** 0.5 + 1e-5  # (+ float32 rounding of x_t)


def test_value_skip_starts_at_zero_and_is_exactly_linear_in_x():
    from infbrush.models import build_model

    args = {"name": "infbrush", "in_channels": 3, "cond_dim": 0, "sparse_channels": 8, "sparse_grid": 8,
            "grid_size": 8, "grid_channels": 8, "channel_mult": [1], "emb_dim": 16, "num_heads": 2,
            "grid_heads": 2, "fourier_freqs": 2, "value_skip": True}
    torch.manual_seed(0)
    model = build_model(args).eval()
    x = torch.randn(1, 64, 3)
    coords = lattice_coords((8, 8)).unsqueeze(0)
    t = torch.tensor([500])
    with torch.no_grad():
        assert model(x, coords, t).abs().max() == 0  # zero head and zero skip at init
        torch.nn.init.normal_(model.value_skip.weight)
        out1, out2 = model(x, coords, t), model(2 * x, coords, t)
    assert torch.allclose(out2, 2 * out1, atol=1e-5)  # the only path to the output is the linear skip of x_t


def test_lr_schedule():
    assert lr_factor(0, 100) == lr_factor(99, 100) == 1.0  # the paper's constant lr
    assert lr_factor(0, 100, warmup=10) == pytest.approx(0.1) and lr_factor(9, 100, warmup=10) == 1.0
    assert lr_factor(10, 100, warmup=10, decay="cosine") == pytest.approx(1.0)
    assert lr_factor(100, 100, warmup=10, decay="cosine", final=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="constant, cosine"):
        lr_factor(0, 10, decay="linear")


def test_stratified_timesteps_cover_every_stratum():
    gens = image_generators(0, 3, range(8))
    ts, _, _ = _draw_per_image(gens, 1000, 0.0, t_strata=(list(range(8)), 8))
    assert [t // 125 for t in ts] == list(range(8))
    assert stratified_timestep(0.999999, 7, 8, 1000) == 999
    # a DDP shard (slots 4..7) draws what one process draws for those slots
    shard, _, _ = _draw_per_image(image_generators(0, 3, range(4, 8)), 1000, 0.0, t_strata=([4, 5, 6, 7], 8))
    assert shard == ts[4:]


def test_balanced_epoch_evens_out_classes_and_is_resumable():
    labels = np.array([0] * 90 + [1] * 10)
    rows = np.arange(100) + 1000
    epoch = balanced_epoch(labels, seed=1, epoch=0)
    counts = np.bincount(labels[epoch], minlength=2)
    assert abs(counts[0] - counts[1]) < 25, counts  # ~50/50 instead of 90/10
    stream = stream_rows(rows, 1, 0, 250, labels)
    assert np.array_equal(stream_rows(rows, 1, 137, 20, labels), stream[137:157])  # resumable mid-epoch
    assert not np.array_equal(stream[:100], stream[100:200])  # epochs differ


def test_label_conditioned_training_and_sampling_end_to_end(tmp_path):
    from infbrush.cli import build_parser
    from infbrush.sample.outputs import read_index

    store = make_store(tmp_path / "images.h5", n=8, held_out=(7,), labels=[0, 1] * 4)
    cfg = tiny_config(tmp_path, store, cond_labels=2, steps=6, balance_labels=True, stratify_t=True, lr_warmup=2,
                      lr_decay="cosine")
    assert train(cfg) == 0
    ckpt = torch.load(tmp_path / "ema.pt", weights_only=True)
    assert ckpt["label_names"] == ["a", "b"] and ckpt["model_args"]["fourier_freqs"] == 2
    parser = build_parser()
    args = parser.parse_args(["sample", "--weights", str(tmp_path / "ema.pt"), "--out", str(tmp_path / "s"),
                              "--resolution", "16", "--steps", "3", "--labels", "0,1", "--per-class", "1",
                              "--guidance-scale", "2", "--no-progress"])
    assert args._main(args) == 0
    entries = read_index(tmp_path / "s" / "16" / "index.json")["images"]
    assert [(e["label"], e["label_name"]) for e in entries] == [(0, "a"), (1, "b")]
    for bad, message in ((["--guidance-scale", "-1"], "--guidance-scale must be >= 0"),):
        args = parser.parse_args(["sample", "--weights", str(tmp_path / "ema.pt"), "--out", str(tmp_path / "s2"),
                                  "--resolution", "16", "--labels", "0", *bad])
        with pytest.raises(InfbrushError, match=message):
            args._main(args)


def test_label_condition_on_an_embedding_model_is_refused(tmp_path):
    from infbrush.cli import build_parser
    from tests.test_train import make_embeddings

    store = make_store(tmp_path / "images.h5", n=6)
    make_embeddings(tmp_path / "emb.h5", [f"img{i}" for i in range(6)], dim=2)
    assert train(tiny_config(tmp_path, store, cond_embeddings=str(tmp_path / "emb.h5"), steps=2)) == 0
    args = build_parser().parse_args(["sample", "--weights", str(tmp_path / "ema.pt"), "--out", str(tmp_path / "s"),
                                      "--resolution", "16", "--labels", "0,1"])
    with pytest.raises(InfbrushError, match="--labels: .* trained on embeddings"):
        args._main(args)
    with pytest.raises(SystemExit):  # argparse: "--resolution: invalid int value: '1.5'"
        build_parser().parse_args(["sample", "--weights", "w", "--out", "o", "--resolution", "1.5"])


def test_standardized_embedding_conditions_are_fitted_on_the_training_split_and_saved(tmp_path):
    """cond_standardize: the training images' embedding statistics are set before step 0, travel in the export,
    centre what the projection sees, and leave a label-conditioned model unchanged."""
    import h5py

    from infbrush.cli import build_parser
    from infbrush.cli.train import config_from_args
    from infbrush.data.conditions import load_conditions
    from infbrush.data.store import ImageStore
    from infbrush.models import build_model
    from infbrush.train.data import training_rows

    store = make_store(tmp_path / "images.h5", n=8, held_out=(7,), labels=[0, 1] * 4)
    features = np.random.default_rng(0).normal(size=(8, 4)) + [3.0, 0.0, 0.0, 0.0]  # a shared direction, as SSL
    with h5py.File(tmp_path / "emb.h5", "w") as h5:                                # embeddings have
        h5["features"] = features.astype(np.float32)
        h5["ids"] = np.array([f"img{i}" for i in range(8)], dtype=object).astype(h5py.string_dtype())
    args = build_parser().parse_args(["train", "--store", str(store), "--cond-embeddings", str(tmp_path / "emb.h5"),
                                      "--cond-standardize", "--out", "o"])
    assert config_from_args(args).cond_standardize is True
    assert train(tiny_config(tmp_path, store, cond_embeddings=str(tmp_path / "emb.h5"), steps=2,
                             cond_standardize=True)) == 0
    ckpt = torch.load(tmp_path / "ema.pt", weights_only=True)
    assert ckpt["model_args"]["cond_standardize"] is True
    model = build_model(ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    s = ImageStore(store)
    table = load_conditions(s, training_rows(s), embeddings=tmp_path / "emb.h5")  # (7, 4): row 7 is held out
    unit = torch.nn.functional.normalize(table.double(), dim=-1)
    assert torch.allclose(model.cond_embed.cond_mean.double(), unit.mean(0), atol=1e-6)
    assert torch.allclose(model.cond_embed.cond_std.double(), unit.std(0, unbiased=False), atol=1e-6)
    seen = model.cond_embed.features(table)  # (7, 4) unit vectors, centred: their mean is far from unit length
    assert torch.allclose(seen.norm(dim=-1), torch.ones(7), atol=1e-5)
    assert seen.mean(0).norm() < 0.5 < unit.mean(0).norm()

    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    assert train(tiny_config(labels_dir, store, cond_labels=2, steps=2, cond_standardize=True)) == 0
    assert "cond_standardize" not in torch.load(labels_dir / "ema.pt", weights_only=True)["model_args"]


def test_neighbour_smoothed_conditions_use_the_training_bank_saved_with_the_weights(tmp_path):
    """cond_neighbors = k: the training conditions travel in the export; any condition (training or new) becomes the
    normalised mean of its k nearest training conditions before standardising, so two embeddings with the same
    neighbours steer the model identically and a training condition is pulled toward its neighbourhood."""
    import h5py

    from infbrush.data.conditions import load_conditions
    from infbrush.data.store import ImageStore
    from infbrush.models import build_model
    from infbrush.train.data import training_rows

    store = make_store(tmp_path / "images.h5", n=8, held_out=(7,), labels=[0, 1] * 4)
    features = np.random.default_rng(1).normal(size=(8, 4)) + [2.0, 0.0, 0.0, 0.0]
    with h5py.File(tmp_path / "emb.h5", "w") as h5:
        h5["features"] = features.astype(np.float32)
        h5["ids"] = np.array([f"img{i}" for i in range(8)], dtype=object).astype(h5py.string_dtype())
    assert train(tiny_config(tmp_path, store, cond_embeddings=str(tmp_path / "emb.h5"), steps=2,
                             cond_standardize=True, cond_neighbors=2)) == 0
    ckpt = torch.load(tmp_path / "ema.pt", weights_only=True)
    model = build_model(ckpt["model_args"])  # the bank is empty until the weights load
    model.load_state_dict(ckpt["model"])
    s = ImageStore(store)
    table = load_conditions(s, training_rows(s), embeddings=tmp_path / "emb.h5")  # (7, 4)
    unit = torch.nn.functional.normalize(table.double(), dim=-1)
    assert torch.allclose(model.cond_embed.cond_bank.double(), unit, atol=1e-6)
    nearest = (unit @ unit.T).topk(2, dim=-1).indices  # (7, 2): itself and its nearest other
    smoothed = torch.nn.functional.normalize(unit[nearest].mean(1), dim=-1)
    assert torch.allclose(model.cond_embed.cond_mean.double(), smoothed.mean(0), atol=1e-5)
    held_out = torch.as_tensor(features[7:8], dtype=torch.float32)
    nudge = 1e-3 * torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    pair = torch.cat([held_out, held_out + nudge])  # the same two neighbours
    seen = model.cond_embed.features(pair)
    assert torch.allclose(seen[0], seen[1], atol=1e-6)
    plain = build_model(ckpt["model_args"] | {"cond_neighbors": 0})
    plain.load_state_dict({k: v for k, v in ckpt["model"].items() if "cond_bank" not in k})
    assert not torch.allclose(plain.cond_embed.features(table[:1]), model.cond_embed.features(table[:1]), atol=1e-3)
    with pytest.raises(ValueError, match="cond_neighbors"):
        build_model(ckpt["model_args"] | {"cond_neighbors": -1})

    labels_dir = tmp_path / "labels"  # a label-conditioned model is left as it is
    labels_dir.mkdir()
    assert train(tiny_config(labels_dir, store, cond_labels=2, steps=2, cond_neighbors=2)) == 0
    assert "cond_neighbors" not in torch.load(labels_dir / "ema.pt", weights_only=True)["model_args"]

    from infbrush.cli import build_parser
    from infbrush.cli.train import _check, config_from_args

    argv = ["train", "--store", str(store), "--cond-embeddings", str(tmp_path / "emb.h5"), "--out", "o"]
    assert config_from_args(build_parser().parse_args(argv + ["--cond-neighbors", "16"])).cond_neighbors == 16
    with pytest.raises(InfbrushError, match="--cond-neighbors must be >= 0, got -1"):
        _check(build_parser().parse_args(argv + ["--cond-neighbors", "-1"]))


def test_condition_noise_perturbs_training_only():
    """cond_noise (condition augmentation, bench_learning's cond_noise row): noise on the standardised condition in
    training mode only; sampling (eval mode) sees the exact condition, and 0 leaves training unchanged too."""
    from infbrush.models import build_model, model_args_from_preset

    cond = torch.randn(4, 8)
    args = model_args_from_preset("demo", in_channels=3, cond_dim=8) | {"cond_standardize": True}
    noisy, plain = build_model(args | {"cond_noise": 0.5}), build_model(args)
    plain.load_state_dict(noisy.state_dict())
    noisy.train()
    plain.train()
    assert torch.equal(plain.cond_embed.features(cond), plain.cond_embed.features(cond))
    moved = (noisy.cond_embed.features(cond) - plain.cond_embed.features(cond)).norm(dim=-1)
    assert (moved > 0.05).all()  # every training condition is perturbed
    noisy.eval()
    assert torch.equal(noisy.cond_embed.features(cond), plain.cond_embed.features(cond))
