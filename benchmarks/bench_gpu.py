"""GPU figures of issue 13 at the paper's sizes: a training step and sampling at 1024² and 4096².

* ``train``: one optimiser step of the paper preset (≈ 85 M parameters) at 65,536 points per image × batch 20
  (the paper's setting, NUMBERS.md), bf16 autocast and fp32: points/s and peak GPU memory.
* ``sample``: DDIM with classifier-free guidance (two passes per step) of the paper preset at 1024² and 4096²,
  one image, chunks of ``--chunk-points`` points, bf16 autocast: seconds per step and peak memory. The 4096²
  run is timed over ``--probe-steps`` steps first; the full ``--steps`` run follows only when its projected
  time is under ``--max-sample-s`` (else the projection is reported, marked as such).

    python benchmarks/bench_gpu.py                   # needs CUDA; last line is one JSON object

Weights are random (cost does not depend on them); timings use CUDA synchronisation, the median of the
timed steps after a warm-up step.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def train_rows(args) -> list[dict]:
    import torch

    from infbrush.diffusion import Diffusion, PointLoss, training_loss
    from infbrush.models import build_model, count_parameters, model_args_from_preset

    device = args.device
    rows = []
    for precision in ("bf16", "fp32"):
        torch.manual_seed(0)
        model = build_model(model_args_from_preset("paper", in_channels=3, cond_dim=512, cano=True)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.9, 0.99))
        images = torch.rand(args.batch, 3, args.image_size, args.image_size, device=device) * 2 - 1
        cond = torch.randn(args.batch, 512, device=device)
        _reset_peak(device)
        times = []
        for step in range(args.train_steps):
            gens = [torch.Generator(device=device).manual_seed(step * 1000 + i) for i in range(args.batch)]
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = training_loss(model, images, cond, gens, loss=PointLoss(args.points, cond_drop_prob=0.1),
                                     diffusion=Diffusion(1000, 1 / args.image_size))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            times.append(time.perf_counter() - t0)
        s = statistics.median(times[1:] or times)
        rows.append({"row": f"train_{precision}", "parameters": count_parameters(model), "batch": args.batch,
                     "n_points": args.points, "s_per_step": round(s, 4),
                     "points_per_s": round(args.batch * args.points / s),
                     "peak_mem_gib": round(_peak_gib(device), 2)})
        print(json.dumps(rows[-1]), flush=True)
        del model, optimizer
    return rows


def sample_once(model, size: int, steps: int, args) -> tuple[float, float]:
    """Wall seconds and peak GiB of one guided DDIM run of ``steps`` steps at size²."""
    import torch

    from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample

    cond = torch.randn(1, 512, device=args.device)
    _reset_peak(args.device)
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast(args.device, dtype=torch.bfloat16):
        ddim_sample(model, cond, (size, size), seeds=[0], diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / size),
                    settings=SamplingSettings(steps=steps, guidance_scale=3.0),
                    memory=SamplingMemory(chunk_points=args.chunk_points), device=args.device)
    _sync(args.device)
    return time.perf_counter() - t0, _peak_gib(args.device)


def sample_rows(args) -> list[dict]:
    import torch

    from infbrush.models import build_model, model_args_from_preset

    torch.manual_seed(0)
    model = build_model(model_args_from_preset("paper", in_channels=3, cond_dim=512, cano=True)).to(args.device).eval()
    sample_once(model, 256, 1, args)  # warm-up (kernels, allocator)
    rows = []
    for size in args.sizes:
        probe_s, probe_mem = sample_once(model, size, args.probe_steps, args)
        per_step = probe_s / args.probe_steps
        row = {"row": f"sample_{size}", "size": size, "chunk_points": args.chunk_points, "guidance_passes": 2,
               "s_per_step_probe": round(per_step, 3), "peak_mem_gib": round(probe_mem, 2)}
        if per_step * args.steps <= args.max_sample_s:
            total, mem = sample_once(model, size, args.steps, args)
            row |= {"steps": args.steps, "total_s": round(total, 1), "measured": True, "peak_mem_gib": round(mem, 2)}
        else:
            row |= {"steps": args.steps, "total_s": round(per_step * args.steps, 1), "measured": False}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--points", type=int, default=65536)
    p.add_argument("--image-size", type=int, default=4096)
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--probe-steps", type=int, default=2)
    p.add_argument("--chunk-points", type=int, default=1 << 22)
    p.add_argument("--max-sample-s", type=float, default=150.0)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--device", default="cuda", help="cuda (cpu: a smoke test of the script at tiny sizes)")
    args = p.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    result = {"benchmark": "gpu", "device": name, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "rows": []}
    if not args.skip_train:
        result["rows"] += train_rows(args)
    result["rows"] += sample_rows(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
