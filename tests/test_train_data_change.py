"""Checkpoints remember what they were trained on: other images or conditions never resume silently."""
import json

import pytest

from infbrush.errors import InfbrushError
from infbrush.train.loop import train
from test_train import losses, make_embeddings, make_store, tiny_config


def test_changed_training_data_is_an_error_or_a_restart(tmp_path):
    store = make_store(tmp_path / "images.h5")
    emb = tmp_path / "emb.h5"
    make_embeddings(emb, [f"img{i}" for i in range(6)])
    assert train(tiny_config(tmp_path, store, cond_embeddings=str(emb), steps=2, ckpt_every=2)) == 0

    # same data: rerunning with more steps resumes at step 2
    assert train(tiny_config(tmp_path, store, cond_embeddings=str(emb), steps=3, ckpt_every=1)) == 0
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1] == 3

    # the conditions changed upstream (new embeddings for the same ids): stale checkpoints
    make_embeddings(emb, [f"img{i}" for i in range(6)], seed=1)
    with pytest.raises(InfbrushError, match="trained on other data"):
        train(tiny_config(tmp_path, store, cond_embeddings=str(emb), steps=4, ckpt_every=1))
    with pytest.warns(UserWarning, match="starting over"):
        assert train(tiny_config(tmp_path, store, cond_embeddings=str(emb), steps=2, ckpt_every=1,
                                 on_data_change="restart")) == 0
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and len(losses(tmp_path / "run")) == 2
