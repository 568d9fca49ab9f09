"""Sample quality against network evaluations (NFE) per image, for each sampler, spacing and guidance interval.

Two parts, each paired (the same conditions and seeds for every setting):

1. **Known target** (always): Gaussian data N(μ, s²) per point, whose denoiser is closed-form and whose exact
   probability-flow sample of each seed is known; the RMS error of each (sampler, spacing) against NFE.
2. **A trained model** (``--weights`` and ``--store``): a label-conditioned demo model, ``--per-class`` images of
   every class per setting; or, with ``--embeddings``, an embedding-conditioned one, conditioned on the embeddings of
   the first ``--per-class`` labelled held-out images of every class (``from_held_out``, as the ``control`` rule
   samples them; fewer where a class holds fewer). Every setting is judged by the project's control judge
   (``infbrush.evaluate.control``, fit on the real training split), with the paired difference of control against the
   first setting (the reference, e.g. DDIM-50) and its 95 % bootstrap interval, KID against the real held-out images
   (Inception, clean-fid's unbiased estimator), per-class precision and recall (Kynkäänniemi et al. 2019, k = 3, on
   the same Inception features; ``prdc``) and class-conditional KID, so that no setting wins by collapsing a class.

    python benchmarks/bench_samplers.py --weights /tmp/bl/final_2000/ema.pt --store results/demo_naip/images.h5 \
        --guidance 3 --per-class 16 --settings ddim:linear:50 ddim:linear:20 dpmpp_2m:lambda:10 unipc:lambda:10 \
        unipc:lambda:15:0-800

A setting is SAMPLER:SPACING:STEPS[:T_LO-T_HI][@GUIDANCE] (the guidance interval, default every step; the
guidance scale, default ``--guidance``). NFE counts the
denoiser's evaluations per image (two at guided steps). Sampling seconds are wall time on this machine with
``--threads`` threads: ratios between settings of one run only. The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

MU, S = 0.2, 0.3  # the Gaussian target of part 1


class Counting:
    """A denoiser wrapper that counts evaluations per image (rows of each call / images of the run)."""

    def __init__(self, model, images: int):
        self.model, self.images, self.rows = model, images, 0
        for name in ("in_channels", "prediction"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        if hasattr(model, "stream"):
            self.stream = self._stream

    def _stream(self, n_points, read, write, t, cond, **kw):
        self.rows += t.shape[0]
        self.model.stream(n_points, read, write, t, cond, **kw)

    def __call__(self, x, coords, t, cond=None, image_size=None, cond_mask=None):
        self.rows += t.shape[0]
        return self.model(x, coords, t, cond, image_size, cond_mask=cond_mask) if cond_mask is not None else \
            self.model(x, coords, t, cond, image_size)

    @property
    def nfe(self) -> float:
        return self.rows / self.images


def parse_setting(text: str) -> dict:
    body, _, scale = text.partition("@")
    parts = body.split(":")
    if len(parts) not in (3, 4):
        raise SystemExit(f"--settings {text!r}: expected SAMPLER:SPACING:STEPS[:T_LO-T_HI][@GUIDANCE]")
    interval = None
    if len(parts) == 4:
        lo, hi = parts[3].split("-")
        interval = (int(lo), int(hi))
    return {"name": text, "sampler": parts[0], "spacing": parts[1], "steps": int(parts[2]), "interval": interval,
            "guidance": float(scale) if scale else None}


def gaussian_part(steps_list: list[int]) -> list[dict]:
    """RMS error against the exact sample of a Gaussian target, per sampler × spacing × steps."""
    from infbrush.diffusion import SAMPLERS, Diffusion, SamplingSettings, cosine_alpha_bar, ddim_sample, initial_noise
    from infbrush.diffusion.schedule import SPACINGS

    ab = cosine_alpha_bar(1000)
    size, seeds = (32, 32), [0, 1, 2, 3]

    def v_hat(x, coords, t, cond=None, image_size=None):
        a = ab[t].view(-1, 1, 1)
        al, si, xd = a.sqrt(), (1 - a).sqrt(), x.double()
        x0 = MU + al * S**2 / (a * S**2 + 1 - a) * (xd - al * MU)
        return (al * (xd - al * x0) / si - si * x0).to(x.dtype)

    x_t = initial_noise(size, seeds, 1 / size[0], 3).double()
    a_t = float(ab[-1])
    exact = (MU + S * (x_t - math.sqrt(a_t) * MU) / math.sqrt(a_t * S**2 + 1 - a_t)).clamp(-1, 1)
    exact = exact.view(len(seeds), *size, 3).permute(0, 3, 1, 2)
    rows = []
    for sampler in SAMPLERS:
        for spacing in SPACINGS:
            for steps in steps_list:
                net = Counting(v_hat, len(seeds))
                net.prediction = "v"  # what a plain callable outputs is its attribute, as a denoiser's
                out = ddim_sample(net, None, size, seeds=seeds,
                                  diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / size[0]),
                                  settings=SamplingSettings(steps=steps, sampler=sampler, spacing=spacing,
                                                            clip_x0=False))
                rows.append({"sampler": sampler, "spacing": spacing, "steps": steps, "nfe": net.nfe,
                             "rms_error": float(((out.double() - exact) ** 2).mean().sqrt())})
    return rows


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict:
    """Improved precision / recall (Kynkäänniemi et al. 2019) with prdc's k-NN manifolds."""
    from prdc import compute_prdc

    k = min(k, len(real) - 2, len(fake) - 2)  # prdc needs k + 1 neighbours besides the point itself
    if k < 1:
        return {"precision": None, "recall": None, "k": 0}
    got = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {"precision": float(got["precision"]), "recall": float(got["recall"]), "k": k}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def model_part(args, settings: list[dict]) -> dict:
    from infbrush.data.store import ImageStore
    from infbrush.diffusion import Diffusion, SamplingSettings, ddim_sample
    from infbrush.evaluate.control import class_scores, fit_judge, image_features
    from infbrush.evaluate.extractors import load_inception
    from infbrush.evaluate.fid import kernel_inception_distance
    from infbrush.sample.run import load_weights
    from infbrush.stats import paired_difference_interval

    model, ckpt = load_weights(args.weights)
    config = ckpt.get("config") or {}
    store = ImageStore(args.store)
    names = list(store.label_names)
    k = len(names)
    if args.embeddings:
        from infbrush.sample.conditions import from_held_out

        specs = from_held_out(args.store, args.embeddings, seed=0, per_class=args.per_class)
        labels = np.array([spec.label for spec in specs])
        cond = torch.from_numpy(np.stack([spec.cond for spec in specs])).float()
    else:
        labels = np.repeat(np.arange(k), args.per_class)
        cond = torch.nn.functional.one_hot(torch.from_numpy(labels), k).float()
    seeds = list(range(len(labels)))
    judge, _, judge_summary = fit_judge(args.store)
    inception = load_inception()
    held = np.flatnonzero((store.split == 1) & (store.labels >= 0))
    real_labels = np.asarray(store.labels)[held]
    real_feats = inception.features([store.image(int(r))[..., :3] for r in held])
    diffusion = Diffusion(timesteps=int(config["timesteps"]), mollify_sigma=float(config["mollify_sigma"]))
    rows, reference = [], None
    for setting in settings:
        net = Counting(model, len(seeds))
        t0 = time.perf_counter()
        with torch.no_grad():
            scale = setting["guidance"] if setting["guidance"] is not None else args.guidance
            images = ddim_sample(net, cond, store.image_size, seeds=seeds, diffusion=diffusion,
                                 settings=SamplingSettings(steps=setting["steps"], sampler=setting["sampler"],
                                                           spacing=setting["spacing"], guidance_scale=scale,
                                                           guidance_interval=setting["interval"]))
        seconds = time.perf_counter() - t0
        u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        predicted = judge.predict(np.stack([image_features(im) for im in u8]))
        correct = predicted == labels
        scores = class_scores(labels, predicted, names)
        feats = inception.features(list(u8))
        per_class = {}
        for c, name in enumerate(names):
            real_c, fake_c = real_feats[real_labels == c], feats[labels == c]
            per_class[name] = {"control": float(correct[labels == c].mean()),
                               "kid": kernel_inception_distance(fake_c, real_c),
                               **precision_recall(real_c, fake_c)}
        row = {**{k_: v for k_, v in setting.items() if k_ not in ("interval", "guidance")},
               "guidance": setting["guidance"] if setting["guidance"] is not None else args.guidance,
               "guidance_interval": setting["interval"], "nfe": net.nfe, "seconds": round(seconds, 1),
               "control": scores["mean_accuracy"], "control_ci95": scores["mean_ci95"],
               "kid": kernel_inception_distance(feats, real_feats),
               "mean_recall": _mean(v["recall"] for v in per_class.values()),
               "mean_precision": _mean(v["precision"] for v in per_class.values()),
               "per_class": per_class}
        if reference is None:
            reference = correct
        else:
            row["control_minus_reference"] = float(correct.mean() - reference.mean())
            row["control_minus_reference_ci95"] = paired_difference_interval(correct, reference)
        if args.sheets:
            from PIL import Image

            sheet = np.concatenate([np.concatenate(list(u8[labels == c][:8]), 1) for c in range(k)], 0)
            Path(args.sheets).mkdir(parents=True, exist_ok=True)
            Image.fromarray(sheet).save(f"{args.sheets}/{setting['name'].replace(':', '_')}.png")
        print(json.dumps({key: row[key] for key in ("name", "nfe", "control", "control_ci95", "kid",
                                                      "mean_recall", "seconds")}), file=sys.stderr, flush=True)
        rows.append(row)
    return {"weights": args.weights, "store": args.store, "embeddings": args.embeddings,
            "conditions": int(len(labels)), "per_class": args.per_class, "guidance": args.guidance,
            "judge_real_held_out": judge_summary["real_held_out"]["mean_accuracy"], "chance": 1.0 / k,
            "reference": settings[0]["name"], "rows": rows}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gaussian-steps", type=int, nargs="+", default=[5, 10, 15, 20, 30, 50])
    p.add_argument("--weights",
                   help="a label-conditioned model (ema.pt), or an embedding-conditioned one with --embeddings")
    p.add_argument("--embeddings", help="the embeddings.h5 an embedding-conditioned --weights was trained on")
    p.add_argument("--store", help="its images.h5 (judge, real features)")
    p.add_argument("--settings", nargs="+", default=["ddim:linear:50", "ddim:linear:20", "dpmpp_2m:lambda:10",
                                                      "unipc:lambda:10", "unipc:lambda:15"])
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--per-class", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sheets", help="folder for one contact sheet per setting (8 images per class)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"benchmark": "samplers", "threads": args.threads,
              "gaussian": gaussian_part(args.gaussian_steps)}
    for row in result["gaussian"]:
        print(json.dumps(row), file=sys.stderr)
    if args.weights:
        if not args.store:
            raise SystemExit("--weights needs --store")
        result["model"] = model_part(args, [parse_setting(s) for s in args.settings])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
