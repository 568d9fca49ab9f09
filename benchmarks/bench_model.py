"""Model-core benchmark (issues 5, 13): CANO vs softmax cross-attention, denoiser throughput, sampling memory,
and arithmetic efficiency (FLOP-counted work per second against the matrix-multiply peak of the same run).

    python benchmarks/bench_model.py [--device cpu|cuda] [--quick]
    python benchmarks/bench_model.py --only-efficiency      # the issue-13 ratios alone (1 thread, ~3 minutes)

Efficiency (one child process, 1 thread unless --threads): the peak is a 1024³ matrix product (fp32, and bf16
for the bf16 rows), measured before and after the model rows (the larger kept); the work of a row is what
torch's FLOP counter counts (matrix products and convolutions only: elementwise work is free in this count, so
the ratio is an upper bound on useful arithmetic). Rows: the dense forward of the demo preset at its sampling
shape (8 images × 4,096 points, 64² lattice) and of the paper preset (1 image × 65,536 points), each model's
forward over one image of 65,536 points in 4 chunks (activation cache) as a throughput ratio to one dense pass, the demo training step
(16 images × 1,024 points, forward + backward + Adam), and the forwards under bf16 autocast (whole denoiser,
and the grid UNet alone) against the bf16 peak.

Each measurement runs in a child process so peak memory is clean: CPU peak = growth of ru_maxrss over
the measured call, GPU peak = torch.cuda.max_memory_allocated. The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

# Sampling memory: 1 DDIM step of the "demo" preset at a fixed chunk (GPU: 65,536 points; CPU: 16,384) and a
# fixed activation cache; on CPU x_t lives in a scratch file (``state_dir``) so RSS is bounded by the chunk.
SAMPLE_CHUNK = {False: 65536, True: 16384}
SAMPLE_CACHE_BYTES = 32 << 20
DEMO_MODEL = {"name": "infbrush", "in_channels": 3, "cond_dim": 16, "cano": True, "sparse_channels": 48,
              "sparse_grid": 64, "sparse_kernel": 5, "fourier_freqs": 7, "emb_dim": 96, "grid_size": 32,
              "grid_channels": 24, "channel_mult": [1, 2, 2], "num_blocks": 1}


def _peak_start(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_end(device, start):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start


def _timed(fn, device, repeat):
    import torch

    fn()  # warm-up (also the memory measurement)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def child(kind: str, n: int, device: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dim, heads, tokens = 64, 4, 8
    if kind in ("cano", "sdpa"):
        from infbrush.models.cano import CrossAttentionNeuralOperator

        h = torch.randn(1, n, dim, device=device)
        coord_tokens = torch.randn(1, n, dim, device=device)  # keys/values from every point's coordinates
        cond_tokens = torch.randn(1, tokens, dim, device=device)
        op = CrossAttentionNeuralOperator(dim, {"cond": dim, "coord": dim}, heads).to(device)

        @torch.no_grad()
        def run():
            if kind == "cano":
                return op(h, [op.summarize("cond", cond_tokens), op.summarize("coord", coord_tokens)])
            q = op.q(op.norm(h)).unflatten(-1, (heads, -1)).transpose(1, 2)  # same inputs, softmax attention
            kv = torch.cat([cond_tokens, coord_tokens], dim=1)
            k = op.k["coord"](kv).unflatten(-1, (heads, -1)).transpose(1, 2)
            v = op.v["coord"](kv).unflatten(-1, (heads, -1)).transpose(1, 2)
            att = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return h + op.out(att.transpose(1, 2).flatten(2))
    elif kind == "forward":
        from infbrush.models import build_model, chunked_forward

        model = build_model(DEMO_MODEL).to(device).eval()
        x, coords = torch.randn(1, n, 3, device=device), torch.rand(1, n, 2, device=device)
        t, cond = torch.tensor([500], device=device), torch.randn(1, 16, device=device)

        @torch.no_grad()
        def run():
            return chunked_forward(model, x, coords, t, cond, None, chunk_points=65536)
    elif kind == "sample":
        import tempfile

        from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample
        from infbrush.models import build_model, model_args_from_preset

        model = build_model(model_args_from_preset("demo", in_channels=3, cond_dim=64, cano=True)).to(device).eval()
        cond = torch.randn(1, 64, device=device)
        scratch = tempfile.TemporaryDirectory(prefix="bench_ddim_")  # removed at exit
        state_dir = scratch.name if device == "cpu" else None  # x_t on disk (CPU)

        def run():
            return ddim_sample(model, cond, (n, n), seeds=[0],
                               diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 64),
                               settings=SamplingSettings(steps=1),
                               memory=SamplingMemory(chunk_points=SAMPLE_CHUNK[device == "cpu"],
                                                     cache_bytes=SAMPLE_CACHE_BYTES, state_dir=state_dir),
                               device=device)
    else:
        raise ValueError(f"unknown benchmark kind {kind!r}")
    start = _peak_start(device)
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    peak = _peak_end(device, start)
    seconds = first if kind == "sample" or first > 1 else _timed(run, device, 2)
    # absolute peak of the process (CPU: ru_maxrss incl. torch and the model; GPU: max allocated)
    total = torch.cuda.max_memory_allocated() if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": kind, "n": n, "seconds": seconds, "peak_bytes": peak, "total_peak_bytes": total}


def _matmul_peak(dtype, repeat: int = 12) -> float:
    """FLOP/s of a 1024³ matrix product in ``dtype`` (best of three rounds)."""
    import torch

    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            a @ b
        best = max(best, 2 * 1024**3 * repeat / (time.perf_counter() - t0))
    return best


def _best_seconds(fn, repeat: int = 3, rounds: int = 3) -> float:
    fn()
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def efficiency(threads: int) -> dict:
    """Issue 13's ratios: model work per second / matrix-product peak, chunked / dense, training step."""
    import contextlib

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from infbrush.diffusion import Diffusion, PointLoss, training_loss
    from infbrush.models import build_model, chunked_forward, model_args_from_preset, set_precision

    torch.set_num_threads(threads)
    peak32_a, peak16_a = _matmul_peak(torch.float32), _matmul_peak(torch.bfloat16)

    def flops(fn) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops()

    rows = {}
    shapes = {"demo": (8, 4096, 5, 16), "paper": (1, 65536, 10, 512)}  # images, points, Fourier octaves, cond dim
    for preset, (batch, n, freqs, cond_dim) in shapes.items():
        torch.manual_seed(0)
        args = model_args_from_preset(preset, in_channels=3, cond_dim=cond_dim, cano=True) | {"fourier_freqs": freqs}
        model = build_model(args).eval()
        x, coords = torch.randn(batch, n, 3), torch.rand(batch, n, 2)
        t, cond = torch.randint(0, 1000, (batch,)), torch.randn(batch, cond_dim)
        for mode in ("fp32", "bf16", "bf16-grid"):
            set_precision(model, "bf16-grid" if mode == "bf16-grid" else "off")
            amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "bf16" else contextlib.nullcontext

            def dense():
                with torch.no_grad(), amp():
                    return model(x, coords, t, cond)

            work, sec = flops(dense), _best_seconds(dense, repeat=2 if preset == "demo" else 1)
            row = {"flop_per_point": work / (batch * n), "points_per_s": batch * n / sec, "gflop_per_s": work / sec / 1e9}
            if mode == "fp32":  # chunked vs dense at one image of 65,536 points (256²), 4 chunks
                xc, cc, tc, kc = x[:1], coords[:1], t[:1], cond[:1]
                if n < 65536:
                    xc, cc = torch.randn(1, 65536, 3), torch.rand(1, 65536, 2)

                def dense1():
                    with torch.no_grad():
                        return model(xc, cc, tc, kc)

                def chunked():
                    with torch.no_grad():
                        return chunked_forward(model, xc, cc, tc, kc, chunk_points=16384, cache_bytes=256 << 20)

                row["chunked_over_dense_throughput"] = _best_seconds(dense1, repeat=1) / _best_seconds(chunked, repeat=1)
            rows[f"{preset}_forward_{mode}"] = row
        set_precision(model, "off")
        del model
    # demo training step (16 images × 1,024 points on a 64² store, as params.yaml's demo)
    torch.manual_seed(0)
    args = model_args_from_preset("demo", in_channels=3, cond_dim=4, cano=True) | {"fourier_freqs": 5}
    model = build_model(args)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(16, 3, 64, 64) * 2 - 1
    cond = torch.nn.functional.one_hot(torch.arange(16) % 4, 4).float()
    step_no = [0]

    def train_step():
        step_no[0] += 1
        gens = [torch.Generator().manual_seed(step_no[0] * 100 + i) for i in range(16)]
        loss = training_loss(model, images, cond, gens, loss=PointLoss(1024, cond_drop_prob=0.1, prediction="v"),
                             diffusion=Diffusion(1000, 1 / 64))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    work, sec = flops(train_step), _best_seconds(train_step, repeat=2)
    rows["demo_train_step_fp32"] = {"flop_per_step": work, "s_per_step": sec, "gflop_per_s": work / sec / 1e9,
                                    "points_per_s": 16 * 1024 / sec}
    peak32 = max(peak32_a, _matmul_peak(torch.float32))
    peak16 = max(peak16_a, _matmul_peak(torch.bfloat16))
    for name, row in rows.items():
        peak = peak16 if "bf16" in name else peak32
        row["fraction_of_peak"] = row["gflop_per_s"] * 1e9 / peak
    return {"threads": threads, "matmul_fp32_gflop_per_s": peak32 / 1e9, "matmul_bf16_gflop_per_s": peak16 / 1e9,
            "rows": rows}


def _run_child(kind, n, device, threads, timeout):
    cmd = [sys.executable, __file__, "--child", kind, str(n), "--device", device, "--threads", str(threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.strip().splitlines()[-1])


def _slope(points):
    xs = [math.log(p["n"]) for p in points]
    ys = [math.log(p["seconds"]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke)")
    p.add_argument("--sample-sizes", nargs=2, type=int, metavar=("SMALL", "LARGE"),
                   help="output sides of the sampling-memory pair (default GPU 1024 4096, CPU 256 1024)")
    p.add_argument("--only-sample", action="store_true", help="run only the sampling-memory pair")
    p.add_argument("--only-efficiency", action="store_true", help="run only the arithmetic-efficiency rows")
    p.add_argument("--efficiency-threads", type=int, default=1)
    p.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child[0] == "efficiency":
            print(json.dumps(efficiency(args.threads)))
        else:
            print(json.dumps(child(args.child[0], int(args.child[1]), args.device, args.threads)))
        return 0
    eff = _run_child("efficiency", 0, "cpu", args.efficiency_threads, 1800) if args.device == "cpu" else None
    if args.only_efficiency:
        print(json.dumps({"device": "cpu", "efficiency": eff}))
        return 0
    gpu = args.device.startswith("cuda")
    sizes = [] if args.only_sample else [4096, 16384, 65536, 262144] if not args.quick else [4096, 16384]
    cano = [r for n in sizes if (r := _run_child("cano", n, args.device, args.threads, 120))]
    sdpa_sizes = sizes if gpu else [n for n in sizes if n <= 16384]  # O(N²): 65k² is minutes on 2 CPU cores
    sdpa = [r for n in sdpa_sizes if (r := _run_child("sdpa", n, args.device, args.threads, 120))]
    fwd = None if args.only_sample else \
        _run_child("forward", 65536 if not args.quick else 16384, args.device, args.threads, 300)
    small, large = args.sample_sizes or ((1024, 4096) if gpu else (256, 1024))
    # CPU default 256² vs 1024² (same 16x pixel ratio as 1024² vs 4096²): a 4096² step of the demo model takes
    # ~30 min and 2048² ~7 min on 2 cores (≈ 8-20k points/s); pass --sample-sizes 1024 4096 where time allows.
    s_small = _run_child("sample", small, args.device, args.threads, 900)
    s_large = _run_child("sample", large, args.device, args.threads, 3600)
    common = {r["n"]: r for r in sdpa}
    result = {
        "device": args.device,
        "threads": args.threads,
        "cano": {r["n"]: {"seconds": r["seconds"], "peak_mb": r["peak_bytes"] / 2**20} for r in cano},
        "sdpa": {r["n"]: {"seconds": r["seconds"], "peak_mb": r["peak_bytes"] / 2**20} for r in sdpa},
        "cano_loglog_slope": _slope(cano) if len(cano) > 1 else None,
        "sdpa_loglog_slope": _slope(sdpa) if len(sdpa) > 1 else None,
        "sdpa_over_cano_time": {n: common[n]["seconds"] / r["seconds"] for n, r in
                                ((r["n"], r) for r in cano) if n in common},
        "forward_points_per_s": fwd["n"] / fwd["seconds"] if fwd else None,
        "sample_sizes": [small, large],
        "sample_chunk_points": SAMPLE_CHUNK[not gpu],
        "sample_cache_mb": SAMPLE_CACHE_BYTES / 2**20,
        "sample_state_on_disk": not gpu,
        "sample_seconds": [s["seconds"] if s else None for s in (s_small, s_large)],
        "sample_points_per_s": [n * n / s["seconds"] if s else None for n, s in ((small, s_small), (large, s_large))],
        "sample_peak_mb": [s["total_peak_bytes"] / 2**20 if s else None for s in (s_small, s_large)],
        "sample_peak_ratio": (s_large["total_peak_bytes"] / s_small["total_peak_bytes"]) if s_small and s_large
        else None,
        "sample_growth_mb": [s["peak_bytes"] / 2**20 if s else None for s in (s_small, s_large)],
        "sample_growth_ratio": (s_large["peak_bytes"] / max(s_small["peak_bytes"], 1)) if s_small and s_large
        else None,
        "sample_state_mb": [n * n * 4 * 3 / 2**20 for n in (small, large)],  # x_t, the only per-pixel state
        "efficiency": eff,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
