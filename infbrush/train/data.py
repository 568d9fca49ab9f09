"""Training data: the training split of an image store, its conditions, and a resumable batch order.

The order is a stream of store rows: epoch e is a permutation of the training rows drawn from a
generator seeded by (seed, e); step s consumes stream positions [s·B, (s+1)·B) for a global batch B.
Rank r of a world of size W takes the slice [r·B/W, (r+1)·B/W) of that global batch. The order is thus a
pure function of (seed, position), and the data position saved in a checkpoint restores it exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from infbrush.data.store import ImageStore
from infbrush.errors import InfbrushError


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy SeedSequence: well mixed, stable across platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] & (2**63 - 1))


def image_generators(seed: int, step: int, slots: range, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per image of a global batch, seeded from (seed, step, slot in the global batch).

    A rank builds only the generators of its own slots, so DDP shards draw what one process would.
    """
    gens = []
    for slot in slots:
        g = torch.Generator(device=device)
        g.manual_seed(_mix_seed(seed, step, slot))
        gens.append(g)
    return gens


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of ``n`` training rows in ``epoch`` → (n,) int64."""
    return np.random.default_rng(_mix_seed(seed, 0x5EED, epoch)).permutation(n)


def balanced_epoch(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """A class-balanced epoch over rows with ``labels`` (n,) → (n,) positions into them: each draw picks a
    class uniformly, then a row of that class (each class's rows cycled in a random order, so rare classes
    are repeated and common ones subsampled). A pure function of (seed, epoch)."""
    rng = np.random.default_rng(_mix_seed(seed, 0xBA1A, epoch))
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    picks = rng.integers(len(classes), size=len(labels))
    used = np.zeros(len(classes), dtype=np.int64)
    out = np.empty(len(labels), dtype=np.int64)
    for k, c in enumerate(picks):
        out[k] = members[c][used[c] % len(members[c])]
        used[c] += 1
    return out


def stream_rows(train_rows: np.ndarray, seed: int, start: int, count: int,
                labels: np.ndarray | None = None) -> np.ndarray:
    """Store rows at stream positions [start, start + count) → (count,) int64; with ``labels`` (one per
    training row) each epoch is class-balanced (``balanced_epoch``) instead of a permutation."""
    n = len(train_rows)
    out = np.empty(count, dtype=np.int64)
    for k, pos in enumerate(range(start, start + count)):
        epoch, offset = divmod(pos, n)
        if k == 0 or offset == 0:
            perm = epoch_permutation(n, seed, epoch) if labels is None else balanced_epoch(labels, seed, epoch)
        out[k] = train_rows[perm[offset]]
    return out


@dataclass(frozen=True)
class DataPosition:
    """How far the stream has been consumed (saved in checkpoints)."""

    consumed: int  # stream positions used so far = step · global batch
    epoch: int
    offset: int

    @classmethod
    def at(cls, consumed: int, n_train: int) -> "DataPosition":
        epoch, offset = divmod(consumed, n_train)
        return cls(consumed=consumed, epoch=epoch, offset=offset)

    def as_dict(self) -> dict:
        return {"consumed": self.consumed, "epoch": self.epoch, "offset": self.offset}


class TrainImages(torch.utils.data.Dataset):
    """Store row → (image (C, H, W) uint8, row). Opens the HDF5 lazily, so it works in DataLoader workers."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.ascontiguousarray(self.store.image(int(row))))  # (H, W, C)
        return image.permute(2, 0, 1).contiguous(), int(row)


class RankBatches(torch.utils.data.Sampler):
    """Yields this rank's store rows for steps start_step, ..., steps-1, reading the stream from ``start_position``."""

    def __init__(self, train_rows: np.ndarray, seed: int, global_batch: int, start_step: int, steps: int,
                 rank: int = 0, world_size: int = 1, start_position: int | None = None,
                 labels: np.ndarray | None = None) -> None:
        if global_batch % world_size:
            raise InfbrushError(f"--batch-size {global_batch} is not divisible by the {world_size} processes")
        self.train_rows, self.seed, self.global_batch = train_rows, seed, global_batch
        self.start_step, self.steps = start_step, steps
        self.start_position = start_step * global_batch if start_position is None else start_position
        self.local = global_batch // world_size
        if labels is not None:
            labels = np.asarray(labels)
            if len(labels) != len(train_rows) or (labels < 0).any():
                raise InfbrushError("class-balanced sampling needs a label (>= 0) for every training image")
        self.labels = labels
        self.first_slot = rank * self.local

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(len(self)):
            position = self.start_position + k * self.global_batch + self.first_slot
            yield stream_rows(self.train_rows, self.seed, position, self.local, self.labels).tolist()


def training_rows(store: ImageStore) -> np.ndarray:
    """Rows of the store with ``split == 0`` → (n,) int64; an error if there are none."""
    rows = np.flatnonzero(np.asarray(store.split) == 0).astype(np.int64)
    if len(rows) == 0:
        raise InfbrushError(f"{store.path}: no training images (every image has split != 0)")
    return rows
