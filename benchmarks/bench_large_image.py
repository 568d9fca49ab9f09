"""Large images against small ones, per point: the demo network's forward over one image of 65,536 points (256²) in
one pass and in chunks of 16,384 / 8,192 points, beside 16 images of 4,096 points (64²), the same 65,536 points.

    python benchmarks/bench_large_image.py THREADS

Measured side by side in one run (5 interleaved repetitions, medians), on the demo preset with a condition. Prints
points per second, FLOPs (torch's FlopCounterMode) and the fraction of this thread count's fp32 matmul peak
(2048² matmul, best of 10); the last line is one JSON object.
"""
import json
import sys
import time

import torch
from infbrush.models import build_model, model_args_from_preset
from infbrush.models.chunked import chunked_forward
from infbrush.diffusion.points import index_to_coords
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
model = build_model(model_args_from_preset("demo", in_channels=3, cond_dim=4)).eval()
def inputs(b, side):
    n = side * side
    coords = index_to_coords(torch.arange(n), (side, side)).unsqueeze(0).expand(b, -1, -1).contiguous()
    return torch.randn(b, n, 3), coords, torch.full((b,), 500), torch.randn(b, 4)
big, small = inputs(1, 256), inputs(16, 64)
cases = {"1x65536_one_pass": lambda: model(*big[:3], big[3]),
         "1x65536_chunks_16384": lambda: chunked_forward(model, *big[:3], big[3], chunk_points=16384),
         "1x65536_chunks_8192": lambda: chunked_forward(model, *big[:3], big[3], chunk_points=8192),
         "16x4096_one_pass": lambda: model(*small[:3], small[3])}
times = {k: [] for k in cases}
with torch.no_grad():
    ref = cases["1x65536_one_pass"]()
    for k in ("1x65536_chunks_16384", "1x65536_chunks_8192"):
        print(k, "max |diff| vs one pass", float((cases[k]() - ref).abs().max()), file=sys.stderr)
    for _ in range(5):
        for k, f in cases.items():
            t0 = time.perf_counter(); f(); times[k].append(time.perf_counter() - t0)
res = {k: {"median_s": sorted(v)[2], "min_s": min(v), "points_per_s": 65536 / sorted(v)[2]} for k, v in times.items()}
one = res["1x65536_one_pass"]["median_s"]
ratios = {k: one / v["median_s"] for k, v in res.items()}  # speed relative to one pass over the large image
from torch.utils.flop_counter import FlopCounterMode
def flops(f):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        f()
    return fc.get_total_flops()
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
best = min((lambda: (lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()))() for _ in range(10))
peak = 2 * 2048 ** 3 / best
eff = {k: {"gflop": flops(cases[k]) / 1e9, "fraction_of_matmul_peak": flops(cases[k]) / res[k]["median_s"] / peak}
       for k in ("1x65536_one_pass", "16x4096_one_pass")}
print(json.dumps({"benchmark": "large_image", "threads": int(sys.argv[1]), "matmul_peak_gflop_s": peak / 1e9,
                  "cases": res, "speed_vs_1x65536_one_pass": ratios, "efficiency": eff}))
