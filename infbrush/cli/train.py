"""``infbrush train``: train the function-space diffusion model (one process, or DDP under torchrun/srun).

Rerunning the same command resumes from the newest checkpoint in ``--out``. Exit codes: 0 done;
75 (``infbrush.runtime.preemption.REQUEUE_EXIT_CODE``) after SIGTERM/SIGUSR1 with a checkpoint written —
under SLURM the job is also requeued with ``scontrol requeue $SLURM_JOB_ID``; 2 on a user error or a
non-finite loss (after saving the state before the bad step).
"""
from __future__ import annotations

import argparse
import json

from infbrush.errors import InfbrushError
from infbrush.train.config import AMP_MODES, TrainConfig
from infbrush.train.schedules import EMA_KINDS, LR_DECAYS

HELP = "Train the ∞-Brush diffusion model on an image store (DDP, AMP, EMA, resumable, preemption-safe)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(store="", out="")  # one owner of every default: the library's config
    io = parser.add_argument_group("data and outputs")
    io.add_argument("--store", required=True, help="image store (images.h5); images with split == 0 are used")
    cond = io.add_mutually_exclusive_group(required=True)
    cond.add_argument("--cond-embeddings", metavar="H5", help="condition on embeddings.h5 features (aligned by ids)")
    cond.add_argument("--cond-labels", type=int, metavar="N_CLASSES", help="condition on one-hot store labels")
    cond.add_argument("--uncond", action="store_true", help="train without a condition")
    io.add_argument("--out", required=True, help="run folder: ckpt_*.pt, metrics.jsonl, samples/")
    io.add_argument("--export", help="write the final EMA weights here ({model, model_args, config, step})")

    model = parser.add_argument_group("model and diffusion")
    model.add_argument("--model-preset", default=d.model_preset, help="model size preset (demo | paper)")
    model.add_argument("--model-args", default="{}", metavar="JSON", help="overrides of the preset's model arguments")
    model.add_argument("--no-cano", action="store_true", help="ablation: drop the cross-attention neural operator")
    model.add_argument("--cond-standardize", action="store_true",
                       help="with --cond-embeddings: standardise each embedding dimension over the training set "
                            "(statistics saved with the weights)")
    model.add_argument("--cond-neighbors", type=int, default=d.cond_neighbors, metavar="K",
                       help="with --cond-embeddings: condition on the mean of each embedding's K nearest training "
                            "embeddings (the training table is saved with the weights; 0 = off)")
    model.add_argument("--n-points", type=int, default=d.n_points, help="random pixels per image per step")
    model.add_argument("--mollify-sigma", type=float, default=d.mollify_sigma, help="noise mollifier std (fraction of side)")
    model.add_argument("--cond-drop-prob", type=float, default=d.cond_drop_prob, help="probability of dropping the condition")
    model.add_argument("--timesteps", type=int, default=d.timesteps, help="diffusion steps T of the cosine schedule")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (split over processes)")
    opt.add_argument("--lr", type=float, default=d.lr)
    opt.add_argument("--betas", type=float, nargs=2, default=list(d.betas), metavar=("B1", "B2"))
    opt.add_argument("--ema-rate", type=float, default=d.ema_rate, help="EMA decay of --ema-kind rate")
    opt.add_argument("--ema-kind", default=d.ema_kind,
                     help=f"{' | '.join(EMA_KINDS)}: the fixed --ema-rate (with warm-up; the paper's) or EDM2's "
                          "power-function EMA of relative width --ema-std (default %(default)s)")
    opt.add_argument("--ema-std", type=float, default=d.ema_std,
                     help="power EMA: relative width σ_rel of the average (EDM2; default %(default)s)")
    opt.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (<= 0: no clipping)")
    opt.add_argument("--seed", type=int, default=d.seed)
    opt.add_argument("--lr-warmup", type=int, default=d.lr_warmup,
                     help="linear lr warm-up steps (default %(default)s: the paper's constant lr)")
    opt.add_argument("--lr-decay", choices=LR_DECAYS, default=d.lr_decay,
                     help="lr after the warm-up (default %(default)s)")
    opt.add_argument("--lr-final-fraction", type=float, default=d.lr_final_fraction,
                     help="cosine decay ends at this fraction of --lr (default %(default)s)")
    opt.add_argument("--balance-labels", action="store_true",
                     help="draw training images class-balanced by the store's labels")
    opt.add_argument("--stratify-t", action="store_true",
                     help="stratify the timesteps of each global batch over [0, T)")
    opt.add_argument("--t-dist", default=d.t_dist,
                     help="law of the training timestep: uniform (the paper's), lognormal (EDM) or laplace "
                          "(Hang et al. 2024) on log-SNR (default %(default)s)")
    opt.add_argument("--t-dist-loc", type=float, default=d.t_dist_loc, metavar="LAMBDA",
                     help="location of log-SNR under --t-dist (default: the law's published value)")
    opt.add_argument("--t-dist-scale", type=float, default=d.t_dist_scale,
                     help="scale of log-SNR under --t-dist (default: the law's published value)")
    opt.add_argument("--loss-weighting", default=d.loss_weighting,
                     help="none (the paper's plain mean) or min_snr (Min-SNR-γ, Hang et al. 2023)")
    opt.add_argument("--min-snr-gamma", type=float, default=d.min_snr_gamma, help="γ of --loss-weighting min_snr")

    run = parser.add_argument_group("logging, checkpoints, hardware")
    run.add_argument("--log-every", type=int, default=d.log_every)
    run.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    run.add_argument("--keep", type=int, default=d.keep, help="checkpoints kept")
    run.add_argument("--on-data-change", default=d.on_data_change, choices=["error", "restart"],
                     help="existing checkpoints trained on other images/conditions or with another model "
                          "configuration: stop (default) or start over")
    run.add_argument("--sample-every", type=int, default=d.sample_every, help="preview sample grid every N steps (0: never)")
    run.add_argument("--sample-steps", type=int, default=d.sample_steps, help="DDIM steps of the preview")
    run.add_argument("--sample-images", type=int, default=d.sample_images)
    run.add_argument("--sample-size", type=int, default=d.sample_size, help="preview side in pixels (≤ training size)")
    run.add_argument("--amp", default=d.amp, choices=AMP_MODES,
                     help="autocast: auto = bf16 on GPU, off on CPU")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    run.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    run.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def _check(args: argparse.Namespace) -> None:
    positive = ("steps", "batch_size", "n_points", "timesteps", "log_every", "ckpt_every", "keep", "sample_steps",
                "sample_images", "sample_size")
    for name in positive:
        if getattr(args, name) < 1:
            raise InfbrushError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("sample_every", "workers", "cond_neighbors"):
        if getattr(args, name) < 0:
            raise InfbrushError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not args.lr > 0:
        raise InfbrushError(f"--lr must be > 0, got {args.lr}")
    if not all(0 <= b < 1 for b in args.betas):
        raise InfbrushError(f"--betas must be in [0, 1), got {args.betas}")
    if args.lr_warmup < 0:
        raise InfbrushError(f"--lr-warmup must be >= 0, got {args.lr_warmup}")
    if not 0 <= args.lr_final_fraction <= 1:
        raise InfbrushError(f"--lr-final-fraction must be in [0, 1], got {args.lr_final_fraction}")
    if not 0 <= args.ema_rate < 1:
        raise InfbrushError(f"--ema-rate must be in [0, 1), got {args.ema_rate}")
    if not 0 <= args.cond_drop_prob <= 1:
        raise InfbrushError(f"--cond-drop-prob must be in [0, 1], got {args.cond_drop_prob}")
    if not 0 < args.mollify_sigma <= 0.5:
        raise InfbrushError(f"--mollify-sigma must be in (0, 0.5], got {args.mollify_sigma}")
    _check_recipe(args)


def _check_recipe(args: argparse.Namespace) -> None:
    """The recipe switches, each checked by the object that uses it; the error names the flag."""
    from infbrush.diffusion.noise_levels import LossWeighting, NoiseLevels
    from infbrush.train.schedules import power_ema_gamma

    checks = (("--t-dist", lambda: NoiseLevels(args.t_dist, args.t_dist_loc, args.t_dist_scale)),
              ("--loss-weighting", lambda: LossWeighting(args.loss_weighting, args.min_snr_gamma)),
              ("--ema-std", lambda: power_ema_gamma(args.ema_std) if args.ema_kind == "power" else None))
    if args.ema_kind not in EMA_KINDS:
        raise InfbrushError(f"--ema-kind {args.ema_kind!r} is not one of {', '.join(EMA_KINDS)}")
    for flag, check in checks:
        try:
            check()
        except ValueError as err:
            raise InfbrushError(f"{flag}: {err}") from None


def config_from_args(args: argparse.Namespace):
    """The :class:`infbrush.train.loop.TrainConfig` for parsed arguments (validated)."""
    _check(args)
    try:
        overrides = json.loads(args.model_args)
    except json.JSONDecodeError as err:
        raise InfbrushError(f"--model-args is not valid JSON ({err})") from None
    if not isinstance(overrides, dict):
        raise InfbrushError(f"--model-args must be a JSON object, got {args.model_args!r}")
    return TrainConfig(
        store=args.store, out=args.out, export=args.export, cond_embeddings=args.cond_embeddings,
        cond_labels=args.cond_labels, model_preset=args.model_preset, model_args=overrides, cano=not args.no_cano,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, betas=tuple(args.betas), ema_rate=args.ema_rate,
        grad_clip=args.grad_clip, n_points=args.n_points, mollify_sigma=args.mollify_sigma,
        cond_drop_prob=args.cond_drop_prob, timesteps=args.timesteps, seed=args.seed, log_every=args.log_every,
        ckpt_every=args.ckpt_every, keep=args.keep, sample_every=args.sample_every, sample_steps=args.sample_steps,
        sample_images=args.sample_images, sample_size=args.sample_size, amp=args.amp, compile=args.compile,
        workers=args.workers, device=args.device, progress=not args.no_progress,
        on_data_change=args.on_data_change, lr_warmup=args.lr_warmup, lr_decay=args.lr_decay,
        lr_final_fraction=args.lr_final_fraction, balance_labels=args.balance_labels, stratify_t=args.stratify_t,
        cond_standardize=args.cond_standardize, cond_neighbors=args.cond_neighbors, ema_kind=args.ema_kind,
        ema_std=args.ema_std, t_dist=args.t_dist, t_dist_loc=args.t_dist_loc, t_dist_scale=args.t_dist_scale,
        loss_weighting=args.loss_weighting, min_snr_gamma=args.min_snr_gamma)


def main(args: argparse.Namespace) -> int:
    from infbrush.train.loop import train

    return train(config_from_args(args))
