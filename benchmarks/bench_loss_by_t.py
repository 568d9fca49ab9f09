"""Held-out denoising error per noise level, checkpoint against checkpoint (issue 27: where does a short run lag?).

For every checkpoint and every timestep t of ``--t``, the same held-out images, the same random pixels and the
same mollified noise (seeded per image, not per checkpoint): x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε at ``--points``
pixels of each image, the model's x̂_0 from its ε̂ or v̂ (its EMA weights, conditioned on the image's own class
label or embedding), and the mean squared error of x̂_0 against x_0 (images in [-1, 1], x̂_0 clipped as the
samplers clip it). Baselines per t: x̂_0 = 0 (mean grey: E x_0²), x̂_0 = x_t / sqrt(ᾱ_t) (no denoising: the
noise left in) and the untrained network (``--untrained``). The x̂_0 error
at small t is what a sample keeps as grain; at large t what it gets wrong in colour and layout.

Each row: per t, the mean over images with a 95 % bootstrap interval, and the difference to the first checkpoint
paired over the same images and noise. Runs anywhere (forward passes only; no timing).

    python benchmarks/bench_loss_by_t.py --store results/demo_naip/images.h5 --condition label \\
        --weights a=runs/final_500/ema.pt b=runs/final_1000/ema.pt --t 10 50 100 200 400 600 800 950

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from infbrush.evaluate.large_field import mean_interval  # the mean over images with its 95 % bootstrap interval


@torch.no_grad()
def x0_errors(model, diffusion, images: torch.Tensor, cond: torch.Tensor | None, t: int, n_points: int,
              seed: int, rows: np.ndarray, batch: int = 16) -> np.ndarray:
    """(n,) mean squared x̂_0 error per image at timestep ``t``; ``model`` "zero": x̂_0 = 0, "identity": x̂_0 =
    x_t / sqrt(ᾱ_t) (no denoising). Pixels and noise come from generators seeded by (seed, t, store row): the same
    for every model."""
    from infbrush.diffusion.mollifier import mollified_noise_points
    from infbrush.diffusion.points import sample_points
    from infbrush.diffusion.schedule import x0_from_v, predict_x0

    alpha_bar = diffusion.alpha_bar()
    a = float(alpha_bar[t])
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        gens = [torch.Generator().manual_seed(seed * 1_000_003 + t * 10_007 + int(r)) for r in rows[i:i + batch]]
        coords, x0, _ = sample_points(x, n_points, gens)  # (B, N, 2), (B, N, C)
        eps = torch.stack([mollified_noise_points(coords[j], int(torch.randint(2**62, (1,), generator=g)),
                                                  diffusion.mollify_sigma, x.shape[1]) for j, g in enumerate(gens)])
        x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps.to(x0)
        if model == "zero":
            x0_hat = torch.zeros_like(x0)
        elif model == "identity":
            x0_hat = x_t / a ** 0.5
        else:
            tt = torch.full((len(x),), t, dtype=torch.long)
            c = None if cond is None else cond[i:i + batch]
            pred = model(x_t, coords, tt, c, tuple(x.shape[2:]))
            x0_hat = x0_from_v(x_t, pred, a) if model.prediction == "v" else predict_x0(x_t, pred, a)
        out.append(((x0_hat.clamp(-1, 1) - x0) ** 2).mean(dim=(1, 2)).double().numpy())
    return np.concatenate(out)


def main(argv=None) -> None:
    from infbrush.data.conditions import load_conditions
    from infbrush.data.store import ImageStore
    from infbrush.diffusion import Diffusion
    from infbrush.models import build_model
    from infbrush.sample.run import load_weights

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--condition", choices=["label", "embedding"], default="label")
    p.add_argument("--embeddings", help="embeddings.h5 (with --condition embedding)")
    p.add_argument("--weights", nargs="+", required=True, help="NAME=PATH (ema.pt or ckpt_*.pt), the first is the "
                   "reference of the paired differences")
    p.add_argument("--t", type=int, nargs="+", default=[10, 50, 100, 200, 400, 600, 800, 950])
    p.add_argument("--points", type=int, default=1024, help="pixels per image (the demo trains on 1,024 of 64²)")
    p.add_argument("--untrained", action="store_true", help="also the untrained network (seed 0) as a row")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    store = ImageStore(args.store)
    rows = np.flatnonzero(np.asarray(store.split) == 1)
    images = torch.from_numpy(np.stack([store.image(int(r)) for r in rows])).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = np.asarray(store.labels)[rows]
    if args.condition == "label":
        cond = torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), len(store.label_names)).float()
    else:
        cond = load_conditions(store, rows, embeddings=args.embeddings)

    models = {}
    for spec in args.weights:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--weights {spec!r}: expected NAME=PATH")
        models[name] = load_weights(path)
    first_ckpt = next(iter(models.values()))[1]
    diffusion = Diffusion.of_checkpoint(first_ckpt, args.weights[0].partition("=")[2])
    if args.untrained:
        torch.manual_seed(0)
        models["untrained"] = (build_model(first_ckpt["model_args"]).eval().requires_grad_(False), first_ckpt)

    errors = {name: {t: x0_errors(m, diffusion, images, cond, t, args.points, args.seed, rows) for t in args.t}
              for name, (m, _) in models.items()}
    for baseline in ("zero", "identity"):
        errors[baseline] = {t: x0_errors(baseline, diffusion, images, cond, t, args.points, args.seed, rows)
                            for t in args.t}
    ref = next(iter(models))
    result = {"benchmark": "loss_by_t", "store": args.store, "condition": args.condition, "images": len(rows),
              "points": args.points, "t": args.t, "weights": args.weights, "rows": []}
    for name, per_t in errors.items():
        row = {"name": name, "x0_mse": {}, "ci95": {}, "minus_" + ref: {}, "minus_" + ref + "_ci95": {}}
        for t, e in per_t.items():
            m, d = mean_interval(e, 2000, 0), mean_interval(e - errors[ref][t], 2000, 0)
            row["x0_mse"][t], row["ci95"][t] = m["mean"], m["ci95"]
            row["minus_" + ref][t], row["minus_" + ref + "_ci95"][t] = d["mean"], d["ci95"]
        result["rows"].append(row)
        print(name.ljust(12), " ".join(f"t={t}:{row['x0_mse'][t]:.4f}" for t in args.t), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
