"""Embed every image of an image store into ``embeddings.h5``, resumably, and read it back aligned.

Layout (contract): ``features`` (N, D) float32 chunked by batch, ``ids`` (N,) str row-aligned with the
store's ``ids``; attrs ``encoder``, ``weights_sha256``, ``input_size``, ``normalized``, ``store``.

Resuming: rows are appended to ``<out>.partial`` batch by batch (attr ``n_done`` updated after each flushed
batch). A rerun checks that the partial file belongs to the same store and encoder, continues at ``n_done``
and renames the file to ``<out>`` when all rows are written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.io import h5_strings


def _read_thumbs(store, indices: Sequence[int], size: int) -> np.ndarray:
    """(B, S, S, 3) uint8 thumbnails; a chunk that fails to decode names the store and image."""
    out = []
    for i in indices:
        try:
            out.append(store.thumb(int(i), size)[..., :3])
        except (OSError, ValueError, RuntimeError) as err:
            raise InfbrushError(f"{store.path}: image {int(i)} ({store.ids[int(i)]!r}) cannot be read "
                                f"({str(err).splitlines()[0][:200]})") from None
    return np.stack(out)


def embed_indices(store, encoder, indices: Sequence[int], batch_size: int = 32, progress: bool = True):
    """(M, D) float32 tensor: the encoder's features of the store's images at ``indices`` (in memory)."""
    import torch
    from tqdm import tqdm

    indices = list(indices)
    parts = [encoder.embed_images(_read_thumbs(store, indices[a:a + batch_size], encoder.input_size))
             for a in tqdm(range(0, len(indices), batch_size), desc="embed", disable=not progress)]
    return torch.cat(parts) if parts else torch.zeros(0, encoder.dim)


def partial_path(out: str | os.PathLike) -> Path:
    """Where an unfinished ``out`` is accumulated."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _open_partial(path: Path, store, encoder, batch_size: int):
    """Open (or create) the partial file; validate it against the store and encoder when resuming."""
    import h5py

    expected = {"encoder": encoder.name, "weights_sha256": encoder.weights_sha256, "n_images": len(store)}
    if path.exists():
        try:
            h5 = h5py.File(path, "a")
        except OSError as err:
            raise InfbrushError(f"{path}: unreadable partial embeddings ({err}); delete it to start over") from None
        for key, value in expected.items():
            found = h5.attrs.get(key)
            if found != value:
                h5.close()
                raise InfbrushError(f"{path}: partial embeddings were made with {key}={found!r}, this run has "
                                    f"{value!r}; delete it to start over")
        n_done = int(h5.attrs["n_done"])
        ids = h5_strings(h5["ids"][:n_done])
        if ids != list(store.ids[:n_done]) or h5["features"].shape[1] != encoder.dim:
            h5.close()
            raise InfbrushError(f"{path}: partial embeddings do not match the rows of {store.path}; "
                                f"delete it to start over")
        return h5, n_done
    h5 = h5py.File(path, "w")
    chunk = max(1, min(batch_size, len(store)))
    h5.create_dataset("features", shape=(0, encoder.dim), maxshape=(None, encoder.dim), dtype="float32",
                      chunks=(chunk, encoder.dim))
    h5.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(max(chunk, 256),))
    h5.attrs.update(expected)
    h5.attrs.update({"input_size": encoder.input_size, "normalized": bool(encoder.normalized),
                     "store": str(store.path), "kind": encoder.kind, "n_done": 0})
    return h5, 0


def embed_store(store_path: str | os.PathLike, encoder, out: str | os.PathLike, batch_size: int = 32,
                limit: int | None = None, progress: bool = True) -> bool:
    """Embed all images of a store into ``out`` (resuming a ``.partial`` file); True once ``out`` is complete.

    ``limit``: embed at most this many more images in this call (the rest on the next call).
    """
    from tqdm import tqdm

    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    if len(store) == 0:
        raise InfbrushError(f"{store.path}: the image store is empty")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out)
    h5, n_done = _open_partial(partial, store, encoder, batch_size)
    stop = len(store) if limit is None else min(len(store), n_done + limit)
    try:
        features, ids = h5["features"], h5["ids"]
        features.resize(n_done, axis=0)  # drop rows a crash may have left after the last counted batch
        ids.resize(n_done, axis=0)
        with tqdm(total=len(store), initial=n_done, desc=f"embed {out.name}", unit="img",
                  disable=not progress) as bar:
            for start in range(n_done, stop, batch_size):
                index = list(range(start, min(start + batch_size, stop)))
                batch = encoder.embed_images(_read_thumbs(store, index, encoder.input_size)).numpy()  # (B, D)
                end = index[-1] + 1
                features.resize(end, axis=0)
                ids.resize(end, axis=0)
                features[start:end] = batch.astype(np.float32)
                ids[start:end] = np.array(store.ids[start:end], dtype=object)
                h5.attrs["n_done"] = end
                h5.flush()
                bar.update(len(index))
        complete = int(h5.attrs["n_done"]) == len(store)
    finally:
        h5.close()
    if complete:
        os.replace(partial, out)
    return complete


def read_embeddings(path: str | os.PathLike, expected_ids: Sequence[str] | None = None):
    """(features (N, D) float32, ids, attrs); with ``expected_ids`` the rows must align with them exactly."""
    from infbrush.io import read_h5

    data, attrs = read_h5(path, "embeddings", arrays=("features",), strings=("ids",))
    features, ids = data["features"].astype(np.float32), data["ids"]
    if len(features) != len(ids):
        raise InfbrushError(f"{path}: {len(features)} feature rows but {len(ids)} ids")
    if expected_ids is not None:
        expected_ids = list(expected_ids)
        if len(ids) != len(expected_ids):
            raise InfbrushError(f"{path}: {len(ids)} embedding rows, but the image list has {len(expected_ids)} "
                                f"images; rerun `infbrush embed`")
        if ids != expected_ids:
            first = next(i for i, (a, b) in enumerate(zip(ids, expected_ids)) if a != b)
            raise InfbrushError(f"{path}: row {first} is {ids[first]!r}, the image list has {expected_ids[first]!r}; "
                                f"rerun `infbrush embed`")
    return features, ids, attrs
