"""Learning efficiency of the demo generator (issue 12): control accuracy, KID and speckle against training time.

For each A/B row (a training configuration), one training run on a demo image store is evaluated at every
checkpoint: its EMA weights sample ``--per-class`` images of every class at the training size (DDIM, per-image
seeds), the project's judge (``infbrush.evaluate.control``: fit on the real training split) scores them, KID
(Inception, clean-fid's unbiased estimator) compares them with the real held-out images, and the speckle
fraction counts pixels more than 64 grey levels from their 3×3 median in some channel (real images: ~0.01 %).
Rows switch one fix at a time off the final configuration, so each fix's effect is read side by side.

    python benchmarks/bench_learning.py --store results/demo_naip/images.h5 --condition label \
        --rows final no_v_prediction no_value_skip --steps 600 --eval-every 200

Label rows condition on the store's class labels; ``--condition embedding --embeddings results/<ds>/embeddings.h5``
conditions on held-out images' embeddings (the sampled image of a held-out patch is judged against its label).
Times are wall seconds of the training run on this machine (1 thread unless --threads): read them as ratios
between rows, measured in one run. The last line printed is one JSON object with every row and curve.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_samplers' precision / recall

FINAL = {"n_points": 1024, "batch_size": 16, "lr": 1e-3, "lr_warmup": 20, "lr_decay": "cosine",
         "balance_labels": True, "stratify_t": True, "ema_warmup": True, "cond_standardize": True, "model_args": {}}
ROWS = {  # name → changes from FINAL (each switches one fix of issue 12 off, or is a variant worth comparing)
    "final": {},
    "no_v_prediction": {"model_args": {"prediction": "eps"}},
    "no_value_skip": {"model_args": {"value_skip": False}},
    "aliased_fourier": {"model_args": {"fourier_freqs": 7}},
    "no_ema_warmup": {"ema_warmup": False},
    "no_schedule_balance_strata": {"lr_warmup": 0, "lr_decay": "constant", "balance_labels": False,
                                   "stratify_t": False},
    "b4_all_points": {"batch_size": 4, "n_points": 4096},
    "cond_film": {"model_args": {"cond_film": True}},
    "cond_noise": {"model_args": {"cond_noise": 0.5}},  # condition augmentation (standardised units)
    "unstandardized": {"cond_standardize": False},
    "cond_neighbors": {"model_args": {"cond_neighbors": 16}},  # condition = mean of its 16 nearest training ones
    "grid32": {"model_args": {"grid_size": 32}},
    "batch8": {"batch_size": 8},
    # issue 27's recipe switches (one at a time off "final"; images × points at the same 16,384 points per step)
    "min_snr": {"loss_weighting": "min_snr"},                  # Min-SNR-γ, γ = 5 (Hang et al. 2023)
    "lognormal_t": {"t_dist": "lognormal"},                    # EDM's log-normal σ (Karras et al. 2022)
    "laplace_t": {"t_dist": "laplace"},                        # Laplace log-SNR (Hang et al. 2024)
    "power_ema": {"ema_kind": "power", "ema_std": 0.1},        # EDM2's power-function EMA, σ_rel 0.10
    "constant_lr": {"lr_decay": "constant"},                   # no decay: a short run keeps learning to its end
    "lr_2x": {"lr": 2e-3},                                     # twice the peak lr, cosine as final
    "b64_256pts": {"batch_size": 64, "n_points": 256},
    "b32_512pts": {"batch_size": 32, "n_points": 512},
    "before_issue_12": {"batch_size": 4, "n_points": 4096, "lr_warmup": 0, "lr_decay": "constant",
                        "balance_labels": False, "stratify_t": False, "ema_warmup": False,
                        "model_args": {"fourier_freqs": 7, "prediction": "eps", "value_skip": False}},
}


def speckle_fraction(images: np.ndarray, threshold: int = 64) -> float:
    """Fraction of pixels of (B, H, W, 3) uint8 images further than ``threshold`` from their 3×3 median."""
    from scipy.ndimage import median_filter

    x = images.astype(np.int16)
    med = median_filter(x, size=(1, 3, 3, 1))
    return float((np.abs(x - med) > threshold).any(-1).mean())


def conditions(store, condition: str, per_class: int, embeddings: str | None):
    """(cond (n, D), intended labels (n,)) for ``per_class`` images of every class."""
    from infbrush.sample.conditions import per_class_rows
    from infbrush.data.conditions import load_conditions

    k = len(store.label_names)
    if condition == "label":
        labels = np.repeat(np.arange(k), per_class)
        return torch.nn.functional.one_hot(torch.from_numpy(labels), k).float(), labels
    held = np.flatnonzero(store.split == 1)
    rows = per_class_rows(held, np.asarray(store.labels)[held], per_class)
    return load_conditions(store, rows, embeddings=embeddings), np.asarray(store.labels)[rows]


def evaluate_checkpoint(ckpt_path: Path, cfg, store, judge, inception, real_feats, cond, labels, steps: int,
                        guidance: float = 3.0, device: str = "cpu", real_labels=None) -> dict:
    """Sample with the checkpoint's EMA weights (guidance scale ``guidance``), judge, KID (when ``inception``),
    per-class precision / recall (bench_samplers' prdc), speckle; ``correct`` per image for paired intervals."""
    from infbrush.diffusion import Diffusion, SamplingSettings, ddim_sample
    from infbrush.evaluate.control import class_scores, image_features
    from infbrush.evaluate.fid import kernel_inception_distance
    from infbrush.models import build_model

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["model_args"])
    model.load_state_dict(ckpt["ema"])
    model.eval().to(device)
    height, width = store.image_size
    t0 = time.perf_counter()
    images = ddim_sample(model, cond.to(device), (height, width), seeds=list(range(len(labels))),
                         diffusion=Diffusion(timesteps=cfg.timesteps, mollify_sigma=cfg.mollify_sigma),
                         settings=SamplingSettings(steps=steps, guidance_scale=guidance), device=device).cpu()
    sample_s = time.perf_counter() - t0
    u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
    predicted = judge.predict(np.stack([image_features(im) for im in u8]))
    scores = class_scores(labels, predicted, list(store.label_names))
    kid, recall, precision = None, None, None
    if inception is not None:
        from bench_samplers import _mean, precision_recall

        feats = inception.features(list(u8))
        kid = kernel_inception_distance(feats, real_feats)
        pr = [precision_recall(real_feats[real_labels == c], feats[labels == c]) for c in np.unique(labels)]
        recall, precision = _mean(p["recall"] for p in pr), _mean(p["precision"] for p in pr)
    return {"step": int(ckpt["step"]), "guidance": guidance, "mean_accuracy": scores["mean_accuracy"], "mean_ci95": scores["mean_ci95"],
            "per_class": {k: v["accuracy"] for k, v in scores["per_class"].items()}, "kid": kid,
            "mean_recall": recall, "mean_precision": precision, "correct": (predicted == labels).astype(int).tolist(),
            "speckle": speckle_fraction(u8), "sample_s": round(sample_s, 1)}, u8


def contact_sheet(u8: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """One row of generated images per class."""
    from PIL import Image

    rows = [np.concatenate(list(u8[labels == k]), 1) for k in np.unique(labels)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def run_row(name: str, args, steps: int, store, judge, inception, real_feats, cond, labels, out: Path,
            real_labels=None) -> dict:
    from infbrush.train.config import TrainConfig
    from infbrush.train.loop import train

    changes = ROWS[name]
    settings = {**FINAL, **{k: v for k, v in changes.items() if k != "model_args"}}
    settings["model_args"] = {**FINAL["model_args"], **changes.get("model_args", {})}
    run = out / f"{name}_{steps}"
    cfg = TrainConfig(store=args.store, out=str(run / "train"), export=str(run / "ema.pt"), cond_labels=len(store.label_names)
                      if args.condition == "label" else None,
                      cond_embeddings=args.embeddings if args.condition == "embedding" else None,
                      steps=steps, ckpt_every=args.eval_every or steps, keep=10 ** 6, log_every=10, progress=False,
                      mollify_sigma=1.0 / store.image_size[0], seed=args.seed, device=args.device, amp="off",
                      **settings)
    t0 = time.perf_counter()
    train(cfg)
    train_s = time.perf_counter() - t0
    records = [json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines()]
    start = records[0]["time"] - (records[1]["time"] - records[0]["time"]) if len(records) > 1 else records[0]["time"]
    curve = []
    for ckpt in sorted((run / "train").glob("ckpt_*.pt")):
        for guidance in args.guidance:
            point, u8 = evaluate_checkpoint(ckpt, cfg, store, judge, inception, real_feats, cond, labels,
                                            args.ddim_steps, guidance, args.device, real_labels)
            at = next((r["time"] for r in records if r["step"] == point["step"]), records[-1]["time"])
            point["train_minutes"] = round((at - start) / 60, 2)
            curve.append(point)
            contact_sheet(u8, labels, run / f"sheet_{point['step']:06d}_g{guidance:g}.png")
            np.save(run / f"samples_{point['step']:06d}_g{guidance:g}.npy", u8)
            print(json.dumps({"row": name, "steps": steps, **{k: v for k, v in point.items() if k != "correct"}}),
                  file=sys.stderr, flush=True)
    return {"row": name, "steps": steps, "changes": changes, "train_s": round(train_s, 1), "curve": curve,
            "final": curve[-1]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--condition", choices=("label", "embedding"), default="label")
    parser.add_argument("--embeddings", help="embeddings.h5 (with --condition embedding)")
    parser.add_argument("--rows", nargs="+", default=["final", "before_issue_12"], choices=sorted(ROWS))
    parser.add_argument("--steps", type=int, nargs="+", default=[600],
                        help="training budgets: one run per row and budget (each with its own lr schedule)")
    parser.add_argument("--eval-every", type=int, default=200, help="0: evaluate the final checkpoint only")
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0], help="guidance scales to sample at")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training in fp32 either way)")
    parser.add_argument("--no-kid", action="store_true", help="skip KID (no clean-fid Inception weights needed)")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for runs and contact sheets (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from infbrush.data.store import ImageStore
    from infbrush.evaluate.control import fit_judge

    store = ImageStore(args.store)
    judge, _, judge_summary = fit_judge(args.store)
    inception, real_feats, real_labels = None, None, None
    if not args.no_kid:
        from infbrush.evaluate.extractors import load_inception

        inception = load_inception()
        held = np.flatnonzero((store.split == 1) & (store.labels >= 0))
        real_labels = np.asarray(store.labels)[held]
        real_feats = inception.features([store.image(int(r))[..., :3] for r in held])
    cond, labels = conditions(store, args.condition, args.per_class, args.embeddings)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_learning_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_row(name, args, steps, store, judge, inception, real_feats, cond, labels, out, real_labels)
            for name in args.rows for steps in args.steps]
    from infbrush.stats import paired_difference_interval

    for row in rows[1:]:  # paired on the same conditions and seeds: each row's final point against the first row's
        here, there = np.asarray(row["final"]["correct"]), np.asarray(rows[0]["final"]["correct"])
        row["control_minus_first"] = float(here.mean() - there.mean())
        row["control_minus_first_ci95"] = paired_difference_interval(here, there)
    result = {"benchmark": "learning", "store": args.store, "condition": args.condition, "steps": args.steps,
              "per_class": args.per_class, "ddim_steps": args.ddim_steps, "threads": args.threads, "device": args.device,
              "judge_real_held_out": judge_summary["real_held_out"]["mean_accuracy"],
              "chance": 1.0 / len(store.label_names), "out": str(out), "rows": rows}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
