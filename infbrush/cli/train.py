"""``infbrush train``: train the function-space diffusion model (one process, or DDP under torchrun/srun).

Rerunning the same command resumes from the newest checkpoint in ``--out``. Exit codes: 0 done;
75 (``infbrush.runtime.preemption.REQUEUE_EXIT_CODE``) after SIGTERM/SIGUSR1 with a checkpoint written —
under SLURM the job is also requeued with ``scontrol requeue $SLURM_JOB_ID``; 2 on a user error or a
non-finite loss (after saving the state before the bad step).

Every option but the data, condition and output ones comes from ``TrainConfig`` (its defaults and types) through
``add_config_options``; this module adds only the help texts and the checks.
"""
from __future__ import annotations

import argparse
import json

from infbrush.errors import InfbrushError
from infbrush.train.config import AMP_MODES, TrainConfig
from infbrush.train.schedules import EMA_KINDS, LR_DECAYS

HELP = "Train the ∞-Brush diffusion model on an image store (DDP, AMP, EMA, resumable, preemption-safe)."

MODEL = {  # option groups: field → help (the default is appended from TrainConfig)
    "model_preset": "model size preset (demo | paper)",
    "cano": "ablation: drop the cross-attention neural operator",
    "cond_standardize": "with --cond-embeddings: standardise each embedding dimension over the training set "
                        "(statistics saved with the weights)",
    "cond_neighbors": "with --cond-embeddings: condition on the mean of each embedding's K nearest training "
                      "embeddings (the training table is saved with the weights; 0 = off)",
    "n_points": "random pixels per image per step",
    "mollify_sigma": "noise mollifier std (fraction of the side)",
    "cond_drop_prob": "probability of dropping the condition",
    "timesteps": "diffusion steps T of the cosine schedule",
}
OPTIMISATION = {
    "steps": "total optimizer steps",
    "batch_size": "global batch (split over processes)",
    "lr": "Adam learning rate",
    "betas": "Adam betas",
    "ema_rate": "EMA decay of --ema-kind rate",
    "ema_warmup": "--ema-kind rate: the constant rate from step 0 (no warm-up; the old recipe, A/B only)",
    "ema_kind": f"{' | '.join(EMA_KINDS)}: the fixed --ema-rate (with warm-up; the paper's) or EDM2's "
                "power-function EMA of relative width --ema-std",
    "ema_std": "power EMA: relative width σ_rel of the average (EDM2)",
    "grad_clip": "max gradient norm (<= 0: no clipping)",
    "seed": "initial weights; points, timesteps and noise per (seed, step, slot)",
    "lr_warmup": "linear lr warm-up steps (0: the paper's constant lr)",
    "lr_decay": f"lr after the warm-up: {' | '.join(LR_DECAYS)}",
    "lr_final_fraction": "cosine decay ends at this fraction of --lr",
    "balance_labels": "draw training images class-balanced by the store's labels",
    "stratify_t": "stratify the timesteps of each global batch over [0, T)",
    "t_dist": "law of the training timestep: uniform (the paper's), lognormal (EDM) or laplace "
              "(Hang et al. 2024) on log-SNR",
    "t_dist_loc": "location of log-SNR under --t-dist (None: the law's published value)",
    "t_dist_scale": "scale of log-SNR under --t-dist (None: the law's published value)",
    "loss_weighting": "none (the paper's plain mean) or min_snr (Min-SNR-γ, Hang et al. 2023)",
    "min_snr_gamma": "γ of --loss-weighting min_snr",
}
RUN = {
    "log_every": "steps between metrics.jsonl lines",
    "ckpt_every": "steps between checkpoints (and on SIGTERM)",
    "keep": "checkpoints kept",
    "on_data_change": "existing checkpoints trained on other images/conditions or with another model "
                      "configuration: error (stop) or restart",
    "sample_every": "preview sample grid every N steps (0: never)",
    "sample_steps": "DDIM steps of the preview",
    "sample_images": "images in the preview",
    "sample_size": "preview side in pixels (≤ training size)",
    "amp": f"autocast: {' | '.join(AMP_MODES)} (auto = bf16 on GPU, off on CPU)",
    "compile": "torch.compile the model",
    "workers": "DataLoader worker processes",
    "device": "auto | cpu | cuda",
    "progress": "no tqdm bar",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_config_options

    d = TrainConfig(store="", out="")  # one owner of every default: the library's config
    io = parser.add_argument_group("data and outputs")
    io.add_argument("--store", required=True, help="image store (images.h5); images with split == 0 are used")
    cond = io.add_mutually_exclusive_group(required=True)
    cond.add_argument("--cond-embeddings", metavar="H5", help="condition on embeddings.h5 features (aligned by ids)")
    cond.add_argument("--cond-labels", type=int, metavar="N_CLASSES", help="condition on one-hot store labels")
    cond.add_argument("--uncond", action="store_true", help="train without a condition")
    io.add_argument("--out", required=True, help="run folder: ckpt_*.pt, metrics.jsonl, samples/")
    io.add_argument("--export", help="write the final EMA weights here ({model, model_args, diffusion, config, step})")
    model = parser.add_argument_group("model and diffusion")
    model.add_argument("--model-args", default="{}", metavar="JSON",
                       help="overrides of the preset's model arguments (default: %(default)s)")
    add_config_options(model, d, MODEL)
    add_config_options(parser.add_argument_group("optimisation"), d, OPTIMISATION)
    add_config_options(parser.add_argument_group("logging, checkpoints, hardware"), d, RUN)


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
    for flag, value, valid in (("--lr-decay", args.lr_decay, LR_DECAYS), ("--amp", args.amp, AMP_MODES),
                               ("--on-data-change", args.on_data_change, ("error", "restart"))):
        if value not in valid:
            raise InfbrushError(f"{flag} {value!r} is not one of {', '.join(valid)}")
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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed arguments (validated)."""
    from infbrush.cli.options import config_from_args as build

    _check(args)
    try:
        overrides = json.loads(args.model_args)
    except json.JSONDecodeError as err:
        raise InfbrushError(f"--model-args is not valid JSON ({err})") from None
    if not isinstance(overrides, dict):
        raise InfbrushError(f"--model-args must be a JSON object, got {args.model_args!r}")
    return build(TrainConfig, args, model_args=overrides)


def main(args: argparse.Namespace) -> int:
    from infbrush.train.loop import train

    return train(config_from_args(args))
