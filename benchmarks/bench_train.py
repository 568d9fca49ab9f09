"""Training throughput (points/s) of `infbrush train` with 1 and 2 CPU processes (DDP, gloo), and — with
``--gpu`` on a CUDA machine — the paper-size rows of ``bench_gpu.py`` (65,536 points per image, batch 20 per GPU,
bf16 and fp32).

    python benchmarks/bench_train.py            # CPU, under ~3 minutes; last line is one JSON object
    python benchmarks/bench_train.py --gpu      # GPU step at the paper's setting

CPU runs use the demo model preset on a synthetic 128² image store, one thread per process, the median
over the logged steps after the first two (warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_store(path: Path, n: int, size: int) -> None:
    from infbrush.data.store import ImageStoreWriter

    rng = np.random.default_rng(0)
    with ImageStoreWriter(path, image_size=size, channels=3, thumb_size=32) as writer:
        for i in range(n):
            writer.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), f"img{i}")


def cpu_run(tmp: Path, processes: int, args: argparse.Namespace) -> dict:
    """points/s of `infbrush train` with ``processes`` CPU ranks on the same global batch."""
    run = tmp / f"p{processes}"
    train = ["-m", "infbrush", "train", "--store", str(tmp / "images.h5"), "--uncond", "--out", str(run),
             "--model-preset", args.preset, "--model-args", args.model_args, "--steps", str(args.steps),
             "--batch-size", str(args.batch_size), "--n-points", str(args.n_points), "--mollify-sigma",
             str(1 / args.size), "--log-every", "1", "--ckpt-every", str(10 * args.steps), "--device", "cpu",
             "--no-progress"]
    launcher = [sys.executable] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(launcher + train, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{processes}-process run failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["points_per_s"] for r in records[2:]] or [r["points_per_s"] for r in records]
    return {"processes": processes, "points_per_s": statistics.median(rates),
            "s_per_step": args.batch_size * args.n_points / statistics.median(rates),
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--model-args", default="{}")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n-points", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--gpu", action="store_true", help="also time the paper-size GPU steps (bench_gpu.py)")
    args = parser.parse_args()

    result: dict = {"benchmark": "train_throughput", "preset": args.preset, "image_size": args.size,
                    "n_points": args.n_points, "global_batch": args.batch_size, "threads_per_process": 1}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_store(tmp / "images.h5", n=8, size=args.size)
        result["cpu"] = [cpu_run(tmp, p, args) for p in (1, 2)]
    result["ddp_speedup_2proc"] = result["cpu"][1]["points_per_s"] / result["cpu"][0]["points_per_s"]
    if args.gpu:
        from bench_gpu import main as gpu_main  # the paper-size training step (bf16 and fp32) lives there

        gpu_main(["--sizes", "1024", "--steps", "2"])
    for row in result["cpu"]:
        print(f"{row['processes']} CPU process(es): {row['points_per_s']:.0f} points/s "
              f"({row['s_per_step']:.2f} s/step)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
