"""Two demo trainings at once with one thread each, against one after the other with two threads (issue 27).

The demo chain trains four generators on a 2-core machine. With ``threads: 2`` per training rule Snakemake runs
them one after the other, each on both cores; with one thread each it runs two at a time. Which finishes the
chain's training sooner depends on how well one training scales from one thread to two on this CPU, so it is
measured here, as whole processes (start-up included, as in the chain):

- ``serial``: ``infbrush train`` at 2 threads (``OMP_NUM_THREADS=2``), twice in a row;
- ``parallel``: the same two trainings at once, 1 thread each.

Both do the same work: two demo label models (demo_naip's and demo_brca's stores, the demo recipe), ``--steps``
steps each, in fresh run folders. ``--repeats`` interleaved pairs; the ratio serial / parallel is taken pair by
pair (> 1: parallel finishes sooner). Run on an idle machine; nothing else may share the cores.

    python benchmarks/bench_parallel_train.py --steps 100 --repeats 3

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = ["--cond-labels", "4", "--batch-size", "16", "--model-preset", "demo", "--lr", "0.001", "--lr-warmup", "20",
          "--lr-decay", "cosine", "--balance-labels", "--stratify-t", "--workers", "0", "--n-points", "1024",
          "--mollify-sigma", "0.0156", "--cond-drop-prob", "0.1", "--log-every", "10", "--ckpt-every", "1000000",
          "--sample-every", "1000000", "--no-progress"]


def command(store: str, out: Path, steps: int) -> list[str]:
    return ["infbrush", "train", "--store", store, "--out", str(out / "train"), "--export", str(out / "ema.pt"),
            "--steps", str(steps), *RECIPE]


def run_together(commands: list[list[str]], threads: int, log: Path) -> float:
    """Start every command at once with ``threads`` threads each → wall seconds until the last exits."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(log, "a") as sink:
        procs = [subprocess.Popen(c, env=env, stdout=sink, stderr=subprocess.STDOUT) for c in commands]
        codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a training failed (exit codes {codes}); see {log}")
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stores", nargs=2, default=["results/demo_naip/images.h5", "results/demo_brca/images.h5"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    for store in args.stores:
        if not Path(store).is_file():
            raise SystemExit(f"{store}: not found (run the demo chain's stores first)")
    root = Path(tempfile.mkdtemp(prefix="bench_parallel_train_"))
    log = root / "train.log"
    serial, parallel = [], []
    try:
        for r in range(args.repeats):
            outs = [root / f"r{r}_{kind}_{i}" for kind in ("s", "p") for i in range(2)]
            serial.append(sum(run_together([command(s, o, args.steps)], 2, log)
                              for s, o in zip(args.stores, outs[:2])))
            parallel.append(run_together([command(s, o, args.steps) for s, o in zip(args.stores, outs[2:])], 1, log))
            print(json.dumps({"repeat": r, "serial_s": round(serial[-1], 1), "parallel_s": round(parallel[-1], 1)}),
                  file=sys.stderr, flush=True)
            for o in outs:
                shutil.rmtree(o, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = [s / q for s, q in zip(serial, parallel)]
    print(json.dumps({"benchmark": "parallel_train", "steps": args.steps, "repeats": args.repeats,
                      "cpu_count": os.cpu_count(), "serial_2_threads_s": [round(x, 1) for x in serial],
                      "parallel_1_thread_each_s": [round(x, 1) for x in parallel],
                      "serial_over_parallel_median": round(statistics.median(ratios), 3),
                      "serial_over_parallel": [round(x, 3) for x in ratios]}))


if __name__ == "__main__":
    main()
