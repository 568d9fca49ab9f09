"""Fixed-order sums against atomic adds: the lattice splat and the kNN gather, old and new, in the demo network.

    python benchmarks/bench_fixed_order_sums.py THREADS

The splat (points → lattice nodes) and the kNN gather's backward (node lists → points) add many values into
one row. ``index_put(accumulate=True)`` and advanced indexing's backward do that with atomic float adds on 2+
CPU threads, so the rounding follows the threads' timing; ``index_add`` / ``index_select`` sum in a fixed
order. This runs both versions side by side in one process (interleaved repetitions, medians) on the demo
preset: a training step (16 images × 1,024 points, forward + backward) and a sampling forward (one image of
65,536 points), and counts distinct results over the repetitions. The last line is one JSON object.
"""
import hashlib
import json
import sys
import time

import torch

import infbrush.models.interp as interp
import infbrush.models.sparse as sparse
from infbrush.diffusion.points import index_to_coords
from infbrush.models import build_model, model_args_from_preset

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
REPEATS = 7
torch.set_num_threads(THREADS)
NEW = {"splat": sparse.bilinear_splat, "apply": interp._apply}


def splat_atomic(values, coords, grid_size):
    """The splat as it was: the same weights, summed with index_put(accumulate=True)."""
    real_index_add = torch.Tensor.index_add

    def atomic(self, dim, idx, contrib):  # the new splat's one index_add, swapped for the old atomic add
        return self.index_put((idx,), contrib, accumulate=True)

    torch.Tensor.index_add = atomic
    try:
        return NEW["splat"](values, coords, grid_size)
    finally:
        torch.Tensor.index_add = real_index_add


def apply_indexing(plan, table):
    """The kNN gather as it was: advanced indexing (atomic adds in its backward)."""
    real = torch.Tensor.index_select

    def old(self, dim, index):
        return self[index] if dim == 0 else real(self, dim, index)

    torch.Tensor.index_select = old
    try:
        return NEW["apply"](plan, table)
    finally:
        torch.Tensor.index_select = real


VERSIONS = {"atomic_adds": (splat_atomic, apply_indexing), "fixed_order": (NEW["splat"], NEW["apply"])}
torch.manual_seed(0)
model = build_model(model_args_from_preset("demo", in_channels=3, cond_dim=4))
torch.nn.init.normal_(model.head.weight, std=0.1)  # the zero-initialised head would make gradients trivial


def inputs(b, side, n):
    g = torch.Generator().manual_seed(b)
    coords = index_to_coords(torch.randperm(side * side, generator=g)[:n], (side, side))
    return (torch.randn(b, n, 3, generator=g), coords.expand(b, -1, -1).contiguous(),
            torch.randint(0, 1000, (b,), generator=g), torch.randn(b, 4, generator=g), (side, side))


train_in, sample_in = inputs(16, 64, 1024), inputs(1, 256, 65536)


def train_step():
    model.train().zero_grad()
    x, c, t, cond, size = train_in
    model(x, c, t, cond, size).square().mean().backward()
    return b"".join(p.grad.numpy().tobytes() for p in model.parameters() if p.grad is not None)


def sample_forward():
    model.eval()
    with torch.no_grad():
        return model(*sample_in).numpy().tobytes()


CASES = {"train_step_16x1024": train_step, "sample_forward_1x65536": sample_forward}
times = {(v, c): [] for v in VERSIONS for c in CASES}
hashes = {(v, c): set() for v in VERSIONS for c in CASES}
for rep in range(REPEATS + 1):
    for v, (splat, apply) in VERSIONS.items():
        sparse.bilinear_splat, interp._apply = splat, apply
        for c, fn in CASES.items():
            t0 = time.perf_counter()
            blob = fn()
            if rep:  # the first round warms up
                times[v, c].append(time.perf_counter() - t0)
            hashes[v, c].add(hashlib.sha1(blob).hexdigest())
sparse.bilinear_splat, interp._apply = NEW["splat"], NEW["apply"]
res = {"benchmark": "fixed_order_sums", "threads": THREADS, "repeats": REPEATS, "cases": {}}
for c in CASES:
    row = {}
    for v in VERSIONS:
        med = sorted(times[v, c])[REPEATS // 2]
        row[v] = {"median_s": med, "distinct_results": len(hashes[v, c])}
        print(f"{c:24s} {v:12s} median {med * 1e3:8.1f} ms   distinct results {len(hashes[v, c])}/{REPEATS + 1}")
    row["speed_fixed_over_atomic"] = row["atomic_adds"]["median_s"] / row["fixed_order"]["median_s"]
    res["cases"][c] = row
print(json.dumps(res))
