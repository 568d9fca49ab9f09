"""Sampling throughput and peak memory vs output size (issue 8 benchmark).

Each (model, size) runs in its own subprocess (so peak RSS is per size): one image, ``--steps`` DDIM steps,
fixed ``--chunk-points``, output written as PNG (≤ 2048²) or a pyramidal JPEG TIFF (above), as ``infbrush
sample`` does. Two series by default, because a real network at 4096² takes hours on 2 CPU cores:

* ``zero`` at ``--sizes`` (512² … 4096²): a null denoiser (ε = 0) through the real ``ddim_sample`` and TIFF
  writer — memory of the sampler state (noise, coords, x_t) and the writer, which is what grows with size;
* ``tiny`` at ``--model-sizes`` (256², 512²): a small real ``InfBrushDenoiser`` (random weights; cost does not
  depend on the weights) for throughput in megapixel-steps per second.

    python benchmarks/bench_sample.py [--sizes 512 1024 2048 4096] [--model-sizes 256 512] [--steps 2]
    python benchmarks/bench_sample.py --models demo --model-sizes 4096 --steps 50 --device cuda   # GPU

Prints one JSON line per run and, last, one JSON object with the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _model_args(cond_dim: int) -> dict:
    try:
        from infbrush.models import model_args_from_preset

        return dict(model_args_from_preset("demo", in_channels=3, cond_dim=cond_dim, cano=True))
    except ImportError:  # preset function not available: the denoiser's defaults
        return {"name": "infbrush", "in_channels": 3, "cond_dim": cond_dim, "cano": True}


TINY = dict(name="infbrush", in_channels=3, sparse_channels=16, sparse_grid=16, emb_dim=32, cond_tokens=2,
            num_heads=2, grid_size=16, grid_channels=8, channel_mult=[1, 2], grid_heads=2, cano=True)


def _zero_denoiser(x, coords, t, cond=None, image_size=None, cond_mask=None):
    return x.new_zeros(x.shape)  # (B, N, C)


class ZeroStream:
    """The null denoiser (ε = 0) evaluated chunk by chunk, as the sampler streams a real one: with x_t on disk
    nothing image-sized is ever in RAM, so peak RSS measures the sampler and the TIFF writer alone."""

    def stream(self, n_points, read, write, t, cond, *, chunk_points=None, cond_mask=None, cache_bytes=0):
        step = chunk_points or n_points
        for s in range(0, n_points, step):
            e = min(s + step, n_points)
            x, _ = read(s, e)
            write(s, e, x.new_zeros(x.shape))


def child(model_kind: str, size: int, steps: int, chunk_points: int, device: str, threads: int,
          state_dir: str | None = None) -> dict:
    import torch

    from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample
    from infbrush.models import build_model
    from infbrush.sample.outputs import choose_format, write_image

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cond_dim = 64
    if model_kind == "zero":
        model, n_params = (ZeroStream() if state_dir else _zero_denoiser), 0
    else:
        args = _model_args(cond_dim) if model_kind == "demo" else {**TINY, "cond_dim": cond_dim}
        model = build_model(args).to(device).eval().requires_grad_(False)
        n_params = sum(p.numel() for p in model.parameters())
    cond = torch.randn(1, cond_dim, device=device)
    rss_before = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        chunks = None if model_kind == "zero" and not state_dir else chunk_points
        image = ddim_sample(model, cond, (size, size), seeds=[0],
                            diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 256),
                            settings=SamplingSettings(steps=steps),
                            memory=SamplingMemory(chunk_points=chunks, state_dir=state_dir),
                            device=device)[0]  # (C, H, W); a memory map with state_dir
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_sample = time.perf_counter() - t0
    fmt = choose_format("auto", (size, size))
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        write_image(Path(tmp) / f"x.{fmt}", image, fmt)
        t_write = time.perf_counter() - t1
    out = {"model": model_kind, "size": size, "steps": steps, "chunk_points": chunk_points, "device": device, "format": fmt,
           "state_on_disk": bool(state_dir),
           "sample_s": round(t_sample, 3), "write_s": round(t_write, 3),
           "s_per_step": round(t_sample / steps, 3),
           "mpix_steps_per_s": round(size * size * steps / 1e6 / t_sample, 4),
           "rss_after_model_mb": round(rss_before, 1), "peak_rss_mb": round(_rss_mb(), 1),
           "model_params": n_params}
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _run(model_kind: str, size: int, a) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, __file__, "--child", str(size), "--child-model", model_kind, "--steps", str(a.steps),
           "--chunk-points", str(a.chunk_points), "--device", a.device, "--threads", str(a.threads)] + \
        (["--state-dir", a.state_dir] if a.state_dir else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": model_kind, "size": size, "skipped": f"over {a.timeout:.0f} s"}
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"{model_kind} {size}: child failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(rows: list[dict]) -> dict:
    ok = [r for r in rows if "skipped" not in r]
    if len(ok) < 2:
        return {}
    small, large = ok[0], ok[-1]
    return {"sizes": [r["size"] for r in rows], "sample_s": [r.get("sample_s") for r in rows],
            "peak_rss_mb": [r.get("peak_rss_mb") for r in rows],
            "pixel_ratio": (large["size"] / small["size"]) ** 2,
            "time_ratio": round(large["sample_s"] / small["sample_s"], 2),
            "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
            "rss_growth_bytes_per_pixel": round((large["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20
                                                / (large["size"] ** 2 - small["size"] ** 2), 1),
            "mpix_steps_per_s": large["mpix_steps_per_s"]}


def child_ranks(size: int, steps: int, chunk_points: int) -> None:
    """One demo-model image of size², sampled by this process alone or, under torchrun, by all ranks together."""
    import torch

    from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample
    from infbrush.models import build_model
    from infbrush.models.ranks import RankSplitDenoiser
    from infbrush.runtime.distributed import cleanup_distributed, init_distributed, rank_layout

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(_model_args(64)).eval().requires_grad_(False)
    world = rank_layout()[1]
    rank = 0
    if world > 1:
        rank = init_distributed("cpu").rank
        model = RankSplitDenoiser(model)
    cond = torch.randn(1, 64)
    t0 = time.perf_counter()
    with torch.no_grad():
        image = ddim_sample(model, cond, (size, size), seeds=[0],
                            diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 256),
                            settings=SamplingSettings(steps=steps, guidance_scale=2.0),
                            memory=SamplingMemory(chunk_points=chunk_points))
    seconds = time.perf_counter() - t0
    if rank == 0:
        print(json.dumps({"processes": world, "size": size, "steps": steps, "seconds": round(seconds, 2),
                          "checksum": float(image.double().sum())}), flush=True)
    if world > 1:
        cleanup_distributed()


def ranks_series(a) -> dict:
    """Seconds of one image by 1 process and by 2 (torchrun, gloo), each 1 thread; the images must agree."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    args = [__file__, "--child-ranks", "--child", str(a.ranks_size), "--steps", str(a.steps), "--chunk-points",
            str(a.chunk_points)]
    rows = []
    for launcher in ([sys.executable], [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                        "--nproc_per_node", "2"]):
        done = subprocess.run(launcher + args, capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"ranks run failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    one, two = rows
    return {"size": a.ranks_size, "steps": a.steps, "chunk_points": a.chunk_points, "one_process_s": one["seconds"],
            "two_processes_s": two["seconds"], "speedup": round(one["seconds"] / two["seconds"], 2),
            "checksum_rel_diff": abs(one["checksum"] - two["checksum"]) / max(abs(one["checksum"]), 1e-12)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048, 4096], help="null-denoiser sizes")
    p.add_argument("--models", nargs="*", default=["tiny"], choices=["tiny", "demo"])
    p.add_argument("--model-sizes", type=int, nargs="*", default=[256, 512], help="real-network sizes")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--chunk-points", type=int, default=65536)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=150, help="seconds per run before it is reported as skipped")
    p.add_argument("--state-dir", help="keep x_t in a scratch file here (bounded RSS; the zero series streams)")
    p.add_argument("--ranks-size", type=int, default=0,
                   help="also time one image of this side sampled by 1 and by 2 processes (1 thread each)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-model", default="zero", help=argparse.SUPPRESS)
    p.add_argument("--child-ranks", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_ranks:
        child_ranks(a.child, a.steps, a.chunk_points)
        return 0
    if a.child:
        print(json.dumps(child(a.child_model, a.child, a.steps, a.chunk_points, a.device, a.threads, a.state_dir)))
        return 0
    summary = {"benchmark": "sample", "steps": a.steps, "chunk_points": a.chunk_points, "device": a.device,
               "state_on_disk": bool(a.state_dir)}
    if a.ranks_size:
        summary["ranks"] = ranks_series(a)
        print(json.dumps(summary["ranks"]), flush=True)
    series = [("zero", a.sizes)] + [(m, a.model_sizes) for m in a.models]
    for kind, sizes in series:
        rows = []
        for size in sizes:
            rows.append(_run(kind, size, a))
            print(json.dumps(rows[-1]), flush=True)
        summary[kind] = _ratios(rows) or rows
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
