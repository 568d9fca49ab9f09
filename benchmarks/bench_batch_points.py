"""Time per image against images per call: the demo network's forward over B images of 64² (4,096 points each) for
B = 2 … 72, the shapes a sampler hands it (the large-field baseline's 4 fields × 9 tiles × 2 guidance passes = 72;
`infbrush sample`'s batch_pixels of 1 M pixels = 256 images of 64²).

    python benchmarks/bench_batch_points.py THREADS

Measured side by side in one run (5 interleaved repetitions, medians), on the demo preset with a condition. The
last line is one JSON object: ms per image for every B and its ratio to the smallest B's.
"""
import json
import sys
import time

import torch

from infbrush.diffusion.points import index_to_coords
from infbrush.models import build_model, model_args_from_preset

torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
model = build_model(model_args_from_preset("demo", in_channels=3, cond_dim=4)).eval()
SIZES = (2, 8, 16, 32, 72)


def inputs(b, side=64):
    n = side * side
    coords = index_to_coords(torch.arange(n), (side, side)).unsqueeze(0).expand(b, -1, -1).contiguous()
    return torch.randn(b, n, 3), coords, torch.full((b,), 500), torch.randn(b, 4)


cases = {b: inputs(b) for b in SIZES}
times = {b: [] for b in SIZES}
with torch.no_grad():
    model(*cases[SIZES[0]])  # warm-up
    for _ in range(5):
        for b, args in cases.items():
            t0 = time.perf_counter()
            model(*args)
            times[b].append((time.perf_counter() - t0) / b)
ms = {b: 1000 * sorted(v)[2] for b, v in times.items()}
for b in SIZES:
    print(f"{b:3d} images × 4,096 points per call: {ms[b]:7.1f} ms per image", file=sys.stderr)
print(json.dumps({"benchmark": "batch_points", "threads": int(sys.argv[1]),
                  "ms_per_image": {str(b): round(v, 2) for b, v in ms.items()},
                  "ratio_to_smallest": {str(b): round(v / ms[SIZES[0]], 3) for b, v in ms.items()}}))
