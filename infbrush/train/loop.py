"""The training loop of ∞-Brush, readable top to bottom (nanoGPT style).

One step: a global batch of large images (and their conditions) → per image, a random pixel subset,
a timestep and mollified noise (``infbrush.diffusion.training_loss``, paper eq. 14) → MSE on ε → Adam
(lr, betas) → gradient clipping → EMA update → log. Runs as one process or as DDP ranks under
``torchrun`` / ``srun``; only rank 0 writes files.

Determinism: every random draw of the loss comes from a generator per image seeded by
(seed, step, slot in the global batch), and the data order is a pure function of (seed, position), so
(a) W DDP ranks splitting a global batch reproduce single-process training, and (b) resuming from a
checkpoint reproduces the uninterrupted run.

Exit: 0 when done; ``preemption.REQUEUE_EXIT_CODE`` (75) after SIGTERM/SIGUSR1 with a checkpoint written
(rerun the same command to resume); a non-finite loss raises :class:`NonFiniteLossError` after saving
the state from before the bad step.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch

from infbrush.data.conditions import load_conditions
from infbrush.errors import InfbrushError
from infbrush.io import append_jsonl, atomic_path
from infbrush.runtime import distributed as D
from infbrush.runtime.checkpoint import capture_rng_state, load_latest_checkpoint, restore_rng_state, save_checkpoint
from infbrush.runtime.preemption import REQUEUE_EXIT_CODE, PreemptionFlag, request_requeue
from infbrush.train.config import AMP_MODES, TrainConfig
from infbrush.train.data import DataPosition, RankBatches, TrainImages, image_generators, training_rows
from infbrush.train.schedules import EMA_KINDS, ema_decay, lr_factor, power_ema_decay, power_ema_gamma


class NonFiniteLossError(InfbrushError):
    """The loss or gradient norm became NaN/inf; a checkpoint of the state before that step was written."""


def resolve_model_args(preset: str, overrides: dict, *, in_channels: int, cond_dim: int, cano: bool,
                       image_size: tuple[int, int] | None = None) -> dict:
    """Full model arguments: the preset's (``infbrush.models.model_args_from_preset``) updated with overrides.

    With ``image_size`` (the training lattice) the preset's Fourier octaves are capped so that none aliases
    there (``max_fourier_freqs``); an explicit ``fourier_freqs`` override is kept as given.
    """
    from infbrush import models
    from infbrush.models.embeddings import max_fourier_freqs

    try:
        args = dict(models.model_args_from_preset(preset, in_channels=in_channels, cond_dim=cond_dim, cano=cano))
    except ValueError as err:
        raise InfbrushError(f"--model-preset: {err}") from None
    if image_size is not None:
        args["fourier_freqs"] = min(int(args["fourier_freqs"]), max_fourier_freqs(image_size))
    args.update(overrides)
    args.update({"in_channels": in_channels, "cond_dim": cond_dim, "cano": cano})
    return args


def _autocast(amp: str, device: torch.device):
    """bf16/fp16 autocast context, or a null context (``auto`` = bf16 on GPU, off on CPU)."""
    if amp not in AMP_MODES:
        raise InfbrushError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if amp == "off":
        return contextlib.nullcontext(), amp
    if amp == "fp16" and device.type != "cuda":
        raise InfbrushError("--amp fp16 needs a CUDA device; use bf16 or off on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), amp


def data_fingerprint(store, rows, cond_table: torch.Tensor | None) -> str:
    """sha256 of what a run trains on: the store's image shape, the training rows' ids and their conditions."""
    digest = hashlib.sha256(repr(tuple(store.shape[1:])).encode())
    for row in rows:
        digest.update(store.ids[int(row)].encode() + b"\0")
    if cond_table is not None:
        digest.update(cond_table.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _rewrite_metrics(path: Path, upto_step: int) -> None:
    """Drop metric lines past ``upto_step`` (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a partial last line from a kill
        if record.get("step", 0) <= upto_step:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in kept))


def _save_grid(images: torch.Tensor, path: Path) -> None:
    """(B, C, H, W) in [-1, 1] → one PNG row (first 3 channels), atomically."""
    from PIL import Image

    grid = torch.cat(list(images[:, :3].clamp(-1, 1)), dim=2)  # (C, H, B·W)
    array = ((grid + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(tmp, format="PNG")


def train(cfg: TrainConfig) -> int:
    """Train (or resume) the run described by ``cfg``; returns the process exit code (0 or REQUEUE_EXIT_CODE)."""
    from infbrush.data.store import ImageStore
    from infbrush.diffusion import PointLoss, SamplingSettings, ddim_sample, training_loss
    from infbrush.diffusion.process import Diffusion
    from infbrush.diffusion.noise_levels import LossWeighting, NoiseLevels
    from infbrush.models import build_model

    # ---------------------------------------------------------------- the recipe's switches, checked first
    try:
        noise_levels = NoiseLevels(cfg.t_dist, cfg.t_dist_loc, cfg.t_dist_scale)
        weighting = LossWeighting(cfg.loss_weighting, cfg.min_snr_gamma)
        if cfg.ema_kind not in EMA_KINDS:
            raise ValueError(f"unknown EMA kind {cfg.ema_kind!r}; valid: {', '.join(EMA_KINDS)}")
        ema_gamma = power_ema_gamma(cfg.ema_std) if cfg.ema_kind == "power" else None
    except ValueError as err:
        raise InfbrushError(f"training recipe: {err}") from None

    # ---------------------------------------------------------------- processes, devices, precision
    dist = D.init_distributed(cfg.device)
    device = dist.device
    autocast, amp = _autocast(cfg.amp, device)
    out = Path(cfg.out)
    metrics_path, samples_dir = out / "metrics.jsonl", out / "samples"
    if cfg.batch_size % dist.world_size:
        raise InfbrushError(f"--batch-size {cfg.batch_size} is not divisible by the {dist.world_size} processes")
    local_batch = cfg.batch_size // dist.world_size
    my_slots = range(dist.rank * local_batch, (dist.rank + 1) * local_batch)  # my part of the global batch

    # ---------------------------------------------------------------- data and conditions
    store = ImageStore(cfg.store)
    rows = training_rows(store)  # (n_train,) store rows with split == 0
    cond_table = load_conditions(store, rows, embeddings=cfg.cond_embeddings, n_classes=cfg.cond_labels)  # (n, D)
    row_to_k = {int(r): k for k, r in enumerate(rows)}
    height, width = store.image_size
    if not 1 <= cfg.n_points <= height * width:
        raise InfbrushError(f"--n-points {cfg.n_points} must be in [1, {height * width}] for {height}x{width} images")

    # ---------------------------------------------------------------- model, EMA, optimizer
    cond_dim = 0 if cond_table is None else int(cond_table.shape[1])  # 0: unconditional model
    embedding_args = {"cond_standardize": cfg.cond_standardize, "cond_neighbors": cfg.cond_neighbors}
    embedding_args = {k: v for k, v in embedding_args.items() if v and cfg.cond_embeddings}  # labels: as they are
    model_args = resolve_model_args(cfg.model_preset, {**cfg.model_args, **embedding_args}, in_channels=store.channels,
                                    cond_dim=cond_dim, cano=cfg.cano, image_size=(height, width))
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    try:
        model = build_model(model_args).to(device)
    except ValueError as err:
        raise InfbrushError(f"--model-args: {err}") from None
    if (model_args.get("cond_standardize") or model_args.get("cond_neighbors")) and cond_table is not None:
        model.cond_embed.fit(cond_table.to(device))  # the training set's statistics, saved with the weights
    torch.manual_seed(cfg.seed + 1000003 * dist.rank)  # per-rank stream for dropout (if any)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    try:
        diffusion = Diffusion(timesteps=cfg.timesteps, mollify_sigma=cfg.mollify_sigma)
        objective = PointLoss(cfg.n_points, cfg.cond_drop_prob, prediction=model_args.get("prediction", "eps"),
                              noise_levels=noise_levels, weighting=weighting)
    except ValueError as err:
        raise InfbrushError(f"diffusion: {err}") from None

    # ---------------------------------------------------------------- resume from the newest checkpoint
    step, consumed = 0, 0
    fingerprint = data_fingerprint(store, rows, cond_table)
    ckpt = load_latest_checkpoint(out, map_location="cpu")
    stale = None  # why the newest checkpoint cannot be resumed, if it cannot
    if ckpt is not None and ckpt["config"].get("data_fingerprint", fingerprint) != fingerprint:
        stale = "was trained on other data (images or conditions changed)"  # resuming would mix two datasets
    elif ckpt is not None and ckpt["model_args"] != model_args:
        changed = sorted(k for k in set(ckpt["model_args"]) | set(model_args)
                         if ckpt["model_args"].get(k) != model_args.get(k))
        stale = f"has another model configuration (keys: {', '.join(changed)})"
    if stale:
        # Stale checkpoints: Snakemake reruns a rule when its inputs or params changed (--on-data-change restart)
        if cfg.on_data_change != "restart":
            raise InfbrushError(f"{out}: the checkpoint at step {ckpt['step']} {stale}; use a new --out, delete its "
                                f"checkpoints or pass --on-data-change restart")
        if dist.is_main:
            warnings.warn(f"{out}: the checkpoint at step {ckpt['step']} {stale}; starting over", stacklevel=2)
            for old in out.glob("ckpt_*.pt"):
                old.unlink()
        D.barrier()
        ckpt = None
    if ckpt is not None:
        changed = [k for k, v in cfg.to_dict().items() if k not in ("steps", "progress", "workers", "device",
                                                                    "on_data_change")
                   and ckpt["config"].get(k) != v]
        if changed and dist.is_main:
            warnings.warn(f"{out}: resuming with changed settings {changed}", stacklevel=2)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, consumed = int(ckpt["step"]), int(ckpt["data_position"]["consumed"])
        rng = ckpt["rng"]
        restore_rng_state(rng[dist.rank] if len(rng) == dist.world_size else rng[0])
        if dist.is_main:
            print(f"resuming from {out}/ckpt_{step:08d}.pt (step {step})", file=sys.stderr)
    if dist.is_main:
        _rewrite_metrics(metrics_path, step)  # drop lines logged after the checkpoint (all of them if none)
    del ckpt

    raw_model = model  # unwrapped, for state_dict and EMA
    if cfg.compile:
        model = torch.compile(model)
    if dist.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)

    def checkpoint(at_step: int) -> None:
        """All ranks: gather RNG states; rank 0 writes ckpt_{at_step}.pt; everyone waits for it."""
        rngs = [None] * dist.world_size
        if dist.distributed:
            torch.distributed.all_gather_object(rngs, capture_rng_state())
        else:
            rngs = [capture_rng_state()]
        if dist.is_main:
            state = {"model": raw_model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "step": at_step, "rng": rngs,
                     "data_position": DataPosition.at(consumed, len(rows)).as_dict(),
                     "model_args": model_args, "diffusion": diffusion.as_dict(),
                     "config": {**cfg.to_dict(), "data_fingerprint": fingerprint}}
            save_checkpoint(out, state, at_step, keep=cfg.keep)
        D.barrier()

    # ---------------------------------------------------------------- the loop
    loader = torch.utils.data.DataLoader(
        TrainImages(store),
        batch_sampler=RankBatches(rows, cfg.seed, cfg.batch_size, step, cfg.steps, dist.rank, dist.world_size,
                                  start_position=consumed,
                                  labels=store.labels[rows] if cfg.balance_labels else None),
        num_workers=cfg.workers, pin_memory=device.type == "cuda", persistent_workers=False)
    sample_cond = None if cond_table is None else cond_table[: cfg.sample_images].to(device)
    sample_size = (min(cfg.sample_size, height), min(cfg.sample_size, width))
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not (dist.is_main and cfg.progress), desc="train",
               unit="step", dynamic_ncols=True, file=sys.stderr)
    t_log, steps_since_log = time.perf_counter(), 0
    with PreemptionFlag() as preempt:
        for images, batch_rows in loader:
            # -- stop cleanly on SIGTERM / SIGUSR1 (any rank) with a checkpoint of the current state
            if D.any_rank(preempt.requested, device):
                checkpoint(step)
                if dist.is_main:
                    print(f"{preempt.signal_name or 'signal'} received: checkpoint at step {step} written to {out}; "
                          f"exiting with {REQUEUE_EXIT_CODE} (rerun the same command to resume)", file=sys.stderr)
                    request_requeue()
                bar.close()
                D.cleanup_distributed()
                return REQUEUE_EXIT_CODE

            # -- batch: uint8 (b, C, H, W) → [-1, 1]; conditions; one generator per image
            x0 = images.to(device, non_blocking=True).float() / 127.5 - 1.0  # (b, C, H, W)
            cond = None if cond_table is None else \
                cond_table[[row_to_k[int(r)] for r in batch_rows]].to(device)  # (b, D)
            generators = image_generators(cfg.seed, step, my_slots)

            # -- forward: random pixels, noise, ε-prediction loss (mean over my images)
            model.train()
            t_strata = (list(my_slots), cfg.batch_size) if cfg.stratify_t else None
            with autocast:
                loss = training_loss(model, x0, cond, generators, loss=objective, diffusion=diffusion,
                                     t_strata=t_strata)
            global_loss = D.all_reduce_mean(loss.detach().float())
            if not torch.isfinite(global_loss):
                checkpoint(step)
                raise NonFiniteLossError(f"loss is {global_loss.item()} at step {step}; the state before this step "
                                         f"is saved as {out}/ckpt_{step:08d}.pt (lower --lr or check the data)")

            # -- backward (gradients averaged over ranks by DDP), clip, Adam, EMA
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(),
                                                       cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            if not torch.isfinite(grad_norm) and amp != "fp16":  # fp16: the scaler skips the step itself
                optimizer.zero_grad(set_to_none=True)
                checkpoint(step)
                raise NonFiniteLossError(f"gradient norm is {grad_norm.item()} at step {step}; the state before "
                                         f"this step is saved as {out}/ckpt_{step:08d}.pt")
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg.steps, cfg.lr_warmup, cfg.lr_decay, cfg.lr_final_fraction)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema_gamma is not None:
                decay = power_ema_decay(ema_gamma, step)
            else:
                decay = ema_decay(cfg.ema_rate, step) if cfg.ema_warmup else cfg.ema_rate
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), raw_model.parameters()):
                    p_ema.lerp_(p, 1.0 - decay)  # ema ← decay·ema + (1-decay)·θ
                for b_ema, b in zip(ema.buffers(), raw_model.buffers()):
                    b_ema.copy_(b)
            step += 1
            consumed += cfg.batch_size  # stream positions used (the data position saved in checkpoints)
            steps_since_log += 1
            bar.update(1)

            # -- log, checkpoint, preview samples (rank 0 writes)
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - t_log
                record = {"step": step, "loss": global_loss.item(), "lr": optimizer.param_groups[0]["lr"],
                          "grad_norm": grad_norm.item(),
                          "points_per_s": steps_since_log * cfg.batch_size * cfg.n_points / max(elapsed, 1e-9),
                          "time": time.time()}
                if dist.is_main:
                    append_jsonl(metrics_path, record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", pts_s=f"{record['points_per_s']:.3g}")
                t_log, steps_since_log = time.perf_counter(), 0
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                checkpoint(step)
            if cfg.sample_every and step % cfg.sample_every == 0 and dist.is_main:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
                    grid = ddim_sample(ema, sample_cond, sample_size, seeds=list(range(cfg.sample_images)),
                                       diffusion=diffusion, settings=SamplingSettings(steps=cfg.sample_steps))
                _save_grid(grid, samples_dir / f"step_{step:08d}.png")
    bar.close()

    # ---------------------------------------------------------------- export the EMA weights
    if dist.is_main and cfg.export:
        with atomic_path(cfg.export) as tmp:
            weights = {k: v.detach().cpu() for k, v in ema.state_dict().items()}  # loads on any machine
            torch.save({"model": weights, "model_args": model_args, "diffusion": diffusion.as_dict(),
                        "config": cfg.to_dict(), "step": step,
                        "label_names": list(store.label_names or [])}, tmp)
        print(f"exported EMA weights at step {step} to {cfg.export}", file=sys.stderr)
    D.barrier()
    D.cleanup_distributed()
    return 0
