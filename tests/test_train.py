"""The training loop (infbrush.train.loop / data, `infbrush train`): loss falls, export, data order,
conditions, guards. A tiny real model from build_model; images 16² from a real image store."""
from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest
import torch

from infbrush.data.store import ImageStore, ImageStoreWriter
from infbrush.errors import InfbrushError
from infbrush.data.conditions import load_conditions
from infbrush.train.data import RankBatches, image_generators, stream_rows, training_rows
from infbrush.train.loop import NonFiniteLossError, TrainConfig, train

TINY = {"sparse_channels": 8, "sparse_grid": 8, "sparse_kernel": 3, "fourier_freqs": 2, "emb_dim": 16,
        "cond_tokens": 2, "num_heads": 2, "grid_size": 8, "grid_channels": 8, "channel_mult": [1], "num_blocks": 1,
        "grid_heads": 2, "prediction": "eps"}


def make_store(path, n=6, size=16, held_out=(4,), labels=None, seed=0):
    """A small image store of smooth colour gradients plus noise; rows in ``held_out`` get split 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    with ImageStoreWriter(path, image_size=size, channels=3, thumb_size=8, label_names=["a", "b"]) as writer:
        for i in range(n):
            a, b, c = rng.uniform(0, 1, 3)
            image = np.stack([a * xx + (1 - a) * yy, b * yy, c * (1 - xx)], -1) * 200 + rng.uniform(0, 55, (size, size, 3))
            writer.append(image.astype(np.uint8), f"img{i}", label=-1 if labels is None else labels[i],
                          held_out=i in held_out)
    return path


def make_embeddings(path, ids, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(len(ids), dim)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5["features"] = features
        h5["ids"] = np.array(ids, dtype=object).astype(h5py.string_dtype())
    return features


def tiny_config(tmp_path, store, **kw) -> TrainConfig:
    base = dict(store=str(store), out=str(tmp_path / "run"), export=str(tmp_path / "ema.pt"), model_args=dict(TINY),
                steps=6, batch_size=4, lr=2e-3, n_points=64, mollify_sigma=1 / 16, log_every=1, ckpt_every=3,
                keep=2, sample_every=0, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_exports_ema_and_writes_samples(tmp_path):
    store = make_store(tmp_path / "images.h5")
    make_embeddings(tmp_path / "emb.h5", [f"img{i}" for i in range(6)])
    cfg = tiny_config(tmp_path, store, cond_embeddings=str(tmp_path / "emb.h5"), steps=40, lr=3e-3, ckpt_every=20,
                      sample_every=40, sample_steps=3, sample_images=2, sample_size=12)
    assert train(cfg) == 0
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 41))
    assert set(records[0]) >= {"step", "loss", "lr", "grad_norm", "points_per_s", "time"}
    assert all(r["points_per_s"] > 0 and r["lr"] == 3e-3 for r in records)
    first, last = np.mean([r["loss"] for r in records[:10]]), np.mean([r["loss"] for r in records[-10:]])
    assert last < 0.8 * first, (first, last)
    assert sorted(p.name for p in run.glob("ckpt_*.pt")) == ["ckpt_00000020.pt", "ckpt_00000040.pt"]
    from PIL import Image

    grid = Image.open(run / "samples" / "step_00000040.png")
    assert grid.size == (2 * 12, 12)
    exported = torch.load(tmp_path / "ema.pt", weights_only=True)
    assert exported["step"] == 40 and exported["model_args"]["cond_dim"] == 8
    assert exported["config"]["lr"] == 3e-3
    from infbrush.models import build_model

    model = build_model(exported["model_args"])
    model.load_state_dict(exported["model"])
    ckpt = torch.load(run / "ckpt_00000040.pt", weights_only=True)
    assert set(ckpt) == {"model", "ema", "optimizer", "scaler", "step", "rng", "data_position", "model_args",
                         "config", "diffusion"}
    assert ckpt["data_position"]["consumed"] == 40 * 4
    # EMA lags the trained weights: it differs from them and from the initial weights
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 10)
    assert not torch.equal(ckpt["ema"][name], ckpt["model"][name])
    assert torch.equal(exported["model"][name], ckpt["ema"][name])
    # a rerun of the finished command resumes at the end and re-exports without training
    assert train(cfg) == 0
    assert len(losses(run)) == 40


def test_data_order_uses_train_split_and_is_a_permutation_per_epoch(tmp_path):
    store = ImageStore(make_store(tmp_path / "images.h5", n=7, held_out=(1, 5)))
    rows = training_rows(store)
    assert rows.tolist() == [0, 2, 3, 4, 6]
    stream = stream_rows(rows, seed=3, start=0, count=15)
    for epoch in range(3):
        assert sorted(stream[5 * epoch:5 * (epoch + 1)].tolist()) == rows.tolist()
    assert not np.array_equal(stream[:5], stream[5:10])  # a new permutation each epoch
    assert np.array_equal(stream_rows(rows, seed=3, start=7, count=4), stream[7:11])  # resumable mid-epoch
    one = list(RankBatches(rows, 3, 4, start_step=1, steps=3))
    r0 = list(RankBatches(rows, 3, 4, start_step=1, steps=3, rank=0, world_size=2))
    r1 = list(RankBatches(rows, 3, 4, start_step=1, steps=3, rank=1, world_size=2))
    assert [a + b for a, b in zip(r0, r1)] == one == [stream[4:8].tolist(), stream[8:12].tolist()]
    with pytest.raises(InfbrushError, match="not divisible"):
        RankBatches(rows, 3, 5, 0, 1, rank=0, world_size=2)


def test_image_generators_depend_on_seed_step_and_slot():
    draw = lambda gens: [torch.rand(3, generator=g) for g in gens]  # noqa: E731
    full = draw(image_generators(0, 5, range(4)))
    assert all(torch.equal(a, b) for a, b in zip(full[2:], draw(image_generators(0, 5, range(2, 4)))))
    assert not torch.equal(full[0], draw(image_generators(0, 6, range(1)))[0])
    assert not torch.equal(full[0], draw(image_generators(1, 5, range(1)))[0])
    assert not torch.equal(full[0], full[1])


def test_conditions_aligned_by_ids_and_mismatch_names_both_files(tmp_path):
    store = ImageStore(make_store(tmp_path / "images.h5"))
    rows = training_rows(store)
    shuffled = [f"img{i}" for i in (3, 0, 5, 1, 4, 2)]
    features = make_embeddings(tmp_path / "emb.h5", shuffled)
    cond = load_conditions(store, rows, embeddings=tmp_path / "emb.h5")
    for k, row in enumerate(rows):
        assert torch.equal(cond[k], torch.from_numpy(features[shuffled.index(f"img{row}")]))
    make_embeddings(tmp_path / "bad.h5", [f"other{i}" for i in range(6)])
    with pytest.raises(InfbrushError, match=r"bad\.h5.*images\.h5.*other|bad\.h5 does not match .*images\.h5"):
        load_conditions(store, rows, embeddings=tmp_path / "bad.h5")


def test_label_conditions_one_hot_and_bad_labels(tmp_path):
    store = ImageStore(make_store(tmp_path / "images.h5", labels=[0, 1, 1, 0, 5, 1]))  # row 4 is held out
    rows = training_rows(store)
    cond = load_conditions(store, rows, n_classes=2)
    assert cond.tolist() == [[1, 0], [0, 1], [0, 1], [1, 0], [0, 1]]
    bad = ImageStore(make_store(tmp_path / "bad.h5", labels=[0, 1, -1, 0, 0, 1]))
    with pytest.raises(InfbrushError, match="bad.h5.*labels outside"):
        load_conditions(bad, training_rows(bad), n_classes=2)


def test_changed_model_config_against_checkpoint_is_an_error_or_a_restart(tmp_path):
    store = make_store(tmp_path / "images.h5")
    assert train(tiny_config(tmp_path, store, steps=3)) == 0
    changed = tiny_config(tmp_path, store, steps=6, model_args={**TINY, "emb_dim": 32})
    with pytest.raises(InfbrushError, match="another model configuration.*emb_dim.*--on-data-change restart"):
        train(changed)
    with pytest.raises(InfbrushError, match="another model configuration.*cano"):
        train(tiny_config(tmp_path, store, steps=6, cano=False))
    # a Snakemake rerun after a params change (--on-data-change restart) starts over instead
    with pytest.warns(UserWarning, match="another model configuration.*emb_dim.*starting over"):
        assert train(tiny_config(tmp_path, store, steps=2, model_args={**TINY, "emb_dim": 32},
                                 on_data_change="restart")) == 0
    assert torch.load(tmp_path / "ema.pt", weights_only=True)["model_args"]["emb_dim"] == 32
    assert sorted(p.name for p in (tmp_path / "run").glob("ckpt_*.pt")) == ["ckpt_00000002.pt"]
    with pytest.raises(InfbrushError, match="--model-args.*bogus"):
        train(tiny_config(tmp_path, store, out=str(tmp_path / "new"), model_args={**TINY, "bogus": 1}))
    with pytest.raises(InfbrushError, match="--model-preset.*huge"):
        train(tiny_config(tmp_path, store, out=str(tmp_path / "new"), model_preset="huge"))


def test_non_finite_loss_saves_state_before_the_bad_step_and_stops(tmp_path):
    store = make_store(tmp_path / "images.h5")
    cfg = tiny_config(tmp_path, store, steps=30, lr=1e30, grad_clip=0.0, ckpt_every=100)
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+).*ckpt_") as info:
        train(cfg)
    import re

    bad_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    ckpt = torch.load(tmp_path / "run" / f"ckpt_{bad_step:08d}.pt", weights_only=True)
    assert ckpt["step"] == bad_step
    assert len(losses(tmp_path / "run")) == bad_step  # every finite step was logged, the bad one not
    assert not (tmp_path / "ema.pt").exists()


def test_cli_builds_config_and_rejects_bad_arguments(tmp_path):
    from infbrush.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--store", "s.h5", "--out", "o", "--uncond", "--betas", "0.8", "0.9", "--no-cano",
                              "--model-args", '{"emb_dim": 32}'])
    cfg = cli.config_from_args(args)
    assert cfg.betas == (0.8, 0.9) and cfg.cano is False and cfg.model_args == {"emb_dim": 32}
    assert cfg.cond_embeddings is None and cfg.cond_labels is None
    with pytest.raises(InfbrushError, match="--model-args"):
        cli.config_from_args(parser.parse_args(["--store", "s", "--out", "o", "--uncond", "--model-args", "{x"]))
    with pytest.raises(InfbrushError, match="--ema-rate"):
        cli.config_from_args(parser.parse_args(["--store", "s", "--out", "o", "--uncond", "--ema-rate", "1.5"]))
    with pytest.raises(SystemExit):  # a condition choice is required
        parser.parse_args(["--store", "s", "--out", "o"])
    with pytest.raises(InfbrushError, match="missing.h5"):
        cli.main(parser.parse_args(["--store", str(tmp_path / "missing.h5"), "--out", str(tmp_path), "--uncond"]))
