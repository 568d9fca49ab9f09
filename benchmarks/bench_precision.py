"""bf16 against fp32 for a trained denoiser (issue 13): speed and accuracy of `--amp bf16` / `bf16-grid`.

For exported weights and their image store, side by side in one process (1 thread unless --threads):

* ε̂ accuracy: the relative difference ‖ε̂_bf16 − ε̂_fp32‖ / ‖ε̂_fp32‖ on real held-out images noised at
  t ∈ {50, 250, 500, 750, 950} (all pixels of each image, per-image seeds), and the same for the fp32 model's
  own error against the true noise, for scale;
* samples: the same seeds and conditions sampled in each precision (DDIM ``--steps``, guidance ``--guidance``):
  mean |Δ| per pixel in [0, 255] against fp32, KID against the fp32 set and against the real held-out images
  (clean-fid's Inception, when its weights are installed), and the control judge's accuracy;
* speed: seconds of the sampling runs and of a dense forward, as ratios to fp32.

    python benchmarks/bench_precision.py --weights results/demo_naip/label/ema.pt --store results/demo_naip/images.h5

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch

MODES = ("fp32", "bf16", "bf16-grid")


def _context(mode: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eps-images", type=int, default=16)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from infbrush.data.store import ImageStore
    from infbrush.diffusion import Diffusion, SamplingSettings, cosine_alpha_bar, ddim_sample
    from infbrush.diffusion.mollifier import mollified_noise_grid
    from infbrush.diffusion.points import lattice_coords
    from infbrush.diffusion.schedule import eps_from_v
    from infbrush.evaluate.control import class_scores, fit_judge, image_features
    from infbrush.models import set_precision
    from infbrush.sample.run import load_weights

    model, ckpt = load_weights(args.weights, "cpu")
    store = ImageStore(args.store)
    config = ckpt.get("config") or {}
    sigma = float(config.get("mollify_sigma", 1.0 / store.image_size[0]))
    alpha_bar = cosine_alpha_bar(int(config.get("timesteps", 1000)))
    k = len(store.label_names)
    if int(ckpt["model_args"].get("cond_dim", 0)) != k:
        raise SystemExit(f"{args.weights}: bench_precision needs a label-conditioned model with {k} classes")
    height, width = store.image_size
    coords = lattice_coords((height, width))

    # ---- ε̂ accuracy on real held-out images
    held = np.flatnonzero((store.split == 1) & (np.asarray(store.labels) >= 0))[:args.eps_images]
    x0 = torch.stack([torch.from_numpy(store.image(int(r))[..., :3]).float() / 127.5 - 1 for r in held])  # (B,H,W,C)
    x0 = x0.reshape(len(held), height * width, 3)
    cond = torch.nn.functional.one_hot(torch.as_tensor(np.asarray(store.labels)[held]), k).float()
    eps_rows = {}
    for t in (50, 250, 500, 750, 950):
        noise = torch.stack([mollified_noise_grid((height, width), 1000 + i, sigma, 3).permute(1, 2, 0)
                             .reshape(-1, 3) for i in range(len(held))])
        a = float(alpha_bar[t])
        x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * noise
        tt = torch.full((len(held),), t)
        outs = {}
        for mode in MODES:
            set_precision(model, "bf16-grid" if mode == "bf16-grid" else "off")
            with torch.no_grad(), _context(mode):
                out = model(x_t, coords.expand(len(held), -1, -1), tt, cond).float()
            outs[mode] = eps_from_v(x_t, out, a) if getattr(model, "prediction", "eps") == "v" else out
        ref = outs["fp32"]
        eps_rows[t] = {"fp32_error_vs_true_noise": float((ref - noise).norm() / noise.norm()),
                       **{f"{m}_rel_diff": float((outs[m] - ref).norm() / ref.norm()) for m in MODES[1:]}}
    set_precision(model, "off")

    # ---- samples in each precision
    judge, _, judge_summary = fit_judge(args.store)
    labels = np.repeat(np.arange(k), args.per_class)
    sample_cond = torch.nn.functional.one_hot(torch.from_numpy(labels), k).float()
    sets, seconds = {}, {}
    for mode in MODES:
        set_precision(model, "bf16-grid" if mode == "bf16-grid" else "off")
        t0 = time.perf_counter()
        with torch.no_grad(), _context(mode):
            images = ddim_sample(model, sample_cond, (height, width), seeds=list(range(len(labels))),
                                 diffusion=Diffusion(timesteps=len(alpha_bar), mollify_sigma=sigma),
                                 settings=SamplingSettings(steps=args.steps, guidance_scale=args.guidance))
        seconds[mode] = time.perf_counter() - t0
        sets[mode] = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    set_precision(model, "off")
    kid = {}
    try:
        from infbrush.evaluate.extractors import load_inception
        from infbrush.evaluate.fid import kernel_inception_distance

        inception = load_inception()
        feats = {m: inception.features(list(sets[m])) for m in MODES}
        real_rows = np.flatnonzero((store.split == 1) & (np.asarray(store.labels) >= 0))
        real = inception.features([store.image(int(r))[..., :3] for r in real_rows])
        kid = {m: {"vs_fp32": kernel_inception_distance(feats[m], feats["fp32"]),
                   "vs_real": kernel_inception_distance(feats[m], real)} for m in MODES}
    except Exception as err:  # no Inception weights here: report without KID
        kid = {"skipped": f"{type(err).__name__}: {err}"}
    rows = {}
    for mode in MODES:
        pred = judge.predict(np.stack([image_features(im) for im in sets[mode]]))
        scores = class_scores(labels, pred, list(store.label_names))
        rows[mode] = {"sample_s": round(seconds[mode], 2), "speed_vs_fp32": round(seconds["fp32"] / seconds[mode], 3),
                      "mean_abs_diff_vs_fp32": float(np.abs(sets[mode].astype(int) - sets["fp32"].astype(int)).mean()),
                      "control": scores["mean_accuracy"], "control_ci95": scores["mean_ci95"],
                      "kid": kid.get(mode)}
    print(json.dumps({"benchmark": "precision", "weights": args.weights, "threads": args.threads,
                      "images": len(labels), "steps": args.steps, "guidance": args.guidance,
                      "judge_real_held_out": judge_summary["real_held_out"]["mean_accuracy"],
                      "eps": eps_rows, "samples": rows, "kid_note": kid.get("skipped")}))


if __name__ == "__main__":
    main()
