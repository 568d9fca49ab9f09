"""The DINO training loop (Caron et al., 2021): multi-crop, EMA teacher, resumable, DDP under torchrun/srun.

Defaults follow DINO's recipe: lr = base_lr × global batch / 256 with linear warm-up then cosine decay,
weight decay cosine 0.04 → 0.4, teacher momentum cosine 0.996 → 1, teacher temperature warm-up 0.04 → 0.07
(lightly's DINOLoss), centre momentum 0.9, last head layer frozen for the first epoch, gradient clipping 3,
lightly's DINOTransform augmentations. DINOv2's KoLeo spreading term (lightly's KoLeoLoss) is optional, off by
default.
Checkpoints (``ckpt_XXXXXXXX.pt`` in ``ckpt_dir``) use the training stage's checkpoint helpers; a rerun of
the same command resumes from the newest readable one.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from infbrush.errors import InfbrushError

BOOKKEEPING_KEYS = ("workers", "ckpt_every", "keep", "log_every")  # may change between a run and its resume


@dataclass
class DinoConfig:
    model: str = "vit_base_patch16_224"
    img_size: int = 224                     # global crop size = the backbone's input size
    patch_size: int | None = None           # None = the timm model's own
    depth: int | None = None                # transformer blocks; None = the timm model's own
    global_pool: str | None = None          # "token" (class token, DINO) | "avg" (mean patch token); None = timm's
    epochs: int = 100
    batch_size: int = 64                    # per process
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    local_crops: int = 10
    local_crop_size: int = 96
    global_crop_scale: tuple[float, float] = (0.4, 1.0)   # DINO ViT default (0.4, 1): Caron et al. code
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    # augmentations (lightly's DINOTransform; defaults = DINO's recipe)
    vf_prob: float = 0.0                    # vertical flip (DINO: 0; aerial/histology images have no "up")
    rr_prob: float = 0.0                    # random 90° rotation (DINO: 0)
    cj_prob: float = 0.8                    # colour jitter probability (DINO: 0.8)
    cj_strength: float = 0.5                # scales brightness/contrast/saturation/hue 0.8/0.8/0.4/0.2 (DINO: 0.5)
    gray_prob: float = 0.2                  # random greyscale (DINO: 0.2)
    blur_prob: tuple[float, float, float] = (1.0, 0.1, 0.5)   # Gaussian blur: global 1, global 2, local (DINO)
    solarize_prob: float = 0.2              # solarisation of the second global view (DINO: 0.2)
    lr: float = 5e-4                        # at batch 256
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: tuple[float, float] = (0.04, 0.4)
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_epochs: int = 30
    momentum_teacher: float = 0.996
    center_momentum: float = 0.9
    drop_path: float = 0.1
    clip_grad: float = 3.0
    koleo_weight: float = 0.0               # DINOv2's KoLeo spreading term on the student's global-view features
                                            # (Oquab et al., 2023: 0.1); 0 = DINO v1
    freeze_last_layer: int = 1
    seed: int = 0
    workers: int = 0
    ckpt_every: int = 200                   # steps
    keep: int = 3
    log_every: int = 10


def lr_at(step: int, total: int, warmup: int, base: float, final: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``base``, then cosine decay to ``final`` (float64)."""
    from lightly.utils.scheduler import cosine_schedule

    if step < warmup:
        return base * (step + 1) / warmup
    return float(cosine_schedule(step - warmup, max(1, total - warmup), base, final))


def multicrop_transform(cfg: DinoConfig):
    """lightly's DINOTransform (2 global + ``local_crops`` local views) with the config's augmentation strengths."""
    from lightly.transforms import DINOTransform

    return DINOTransform(global_crop_size=cfg.img_size, global_crop_scale=tuple(cfg.global_crop_scale),
                         local_crop_size=cfg.local_crop_size, local_crop_scale=tuple(cfg.local_crop_scale),
                         n_local_views=cfg.local_crops, vf_prob=cfg.vf_prob, rr_prob=cfg.rr_prob,
                         cj_prob=cfg.cj_prob, cj_strength=cfg.cj_strength, random_gray_scale=cfg.gray_prob,
                         gaussian_blur=tuple(cfg.blur_prob), solarization_prob=cfg.solarize_prob)


def changed_settings(saved: dict, cfg: DinoConfig) -> list[str]:
    """Training settings (all but bookkeeping) in which a checkpoint's config differs from ``cfg``."""
    current = asdict(cfg)
    norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v  # noqa: E731 (tuples come back as lists)
    return [k for k in current if k not in BOOKKEEPING_KEYS and norm(saved.get(k)) != norm(current[k])]


class MultiCropViews:
    """Dataset: image ``indices`` of a store -> DINO views (2 global + n local crops) of its thumbnail."""

    def __init__(self, store, size: int, transform) -> None:
        self.store, self.size, self.transform = store, size, transform

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.store.thumb(int(index), self.size)[..., :3]))

    def __len__(self) -> int:
        return len(self.store)


def collate_views(batch):
    """list over images of list over views (C, h, w) -> list over views of (B, C, h, w)."""
    import torch

    return [torch.stack(views) for views in zip(*batch)]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The deterministic shuffle of epoch ``epoch`` (same on every rank and after a resume)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's global RNGs (the multi-crop augmentations use all three)."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _param_groups(module):
    """DINO's split: no weight decay on biases and norm parameters."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_dino(store_path: str | os.PathLike, out: str | os.PathLike, ckpt_dir: str | os.PathLike,
               config: DinoConfig, device: str = "auto", stop_after: int | None = None,
               progress: bool = True, restart_stale: bool = False) -> dict | None:
    """Train DINO on the store's training images; export the teacher backbone to ``out``.

    Checkpoints of another configuration are an error, or (``restart_stale``, as Snakemake reruns do after a
    params change) deleted so that training starts over.

    Returns a summary dict when training finished (``out`` written), or None when it stopped early
    (``stop_after`` steps done in this call, or a preemption signal) with a checkpoint to resume from.
    """
    import torch
    from lightly.loss import DINOLoss, KoLeoLoss
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule
    from tqdm import tqdm

    from infbrush.data.store import ImageStore
    from infbrush.io import append_jsonl
    from infbrush.ssl.dino import BackboneSpec, DINOPair, DinoHead, export_dino
    from infbrush.runtime.checkpoint import (capture_rng_state, load_latest_checkpoint, restore_rng_state,
                                           save_checkpoint)
    from infbrush.runtime.distributed import (all_reduce_mean, any_rank, barrier, cleanup_distributed,
                                           init_distributed)
    from infbrush.runtime.preemption import PreemptionFlag

    cfg = config
    info = init_distributed(device)
    dev = info.device
    seed_everything(cfg.seed + info.rank)  # lightly's blur/solarisation draw from numpy's global RNG
    store = ImageStore(store_path)
    train_rows = np.flatnonzero(store.split == 0) if (store.split == 0).any() else np.arange(len(store))
    global_batch = cfg.batch_size * info.world_size
    steps_per_epoch = len(train_rows) // global_batch
    if steps_per_epoch < 1:
        raise InfbrushError(f"{store.path}: {len(train_rows)} training images, fewer than one global batch "
                            f"({global_batch}); lower --batch-size")
    total = cfg.epochs * steps_per_epoch
    base_lr = cfg.lr * global_batch / 256.0  # linear scaling rule (DINO, Goyal et al.)

    spec = BackboneSpec.of(cfg)
    head = DinoHead(cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.freeze_last_layer)
    pair = DINOPair(spec, head, cfg.drop_path).to(dev)
    student = pair.student
    if info.distributed:
        student = torch.nn.parallel.DistributedDataParallel(pair.student, device_ids=[dev] if dev.type == "cuda"
                                                            else None)
    koleo = KoLeoLoss()
    loss_fn = DINOLoss(cfg.out_dim, cfg.warmup_teacher_temp, cfg.teacher_temp,
                       max(1, cfg.warmup_teacher_temp_epochs), center_momentum=cfg.center_momentum).to(dev)
    optimizer = torch.optim.AdamW(_param_groups(pair.student), lr=base_lr)
    scaler_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if dev.type == "cuda" else None

    step = 0
    state = load_latest_checkpoint(ckpt_dir, map_location="cpu")
    stale = state is not None and changed_settings(state["config"], cfg)
    if stale and restart_stale:
        if info.is_main:
            print(f"train-dino: {ckpt_dir}: settings changed ({', '.join(stale)}); starting over")
            for old in Path(ckpt_dir).glob("ckpt_*.pt"):
                old.unlink()
            (Path(ckpt_dir) / "metrics.jsonl").unlink(missing_ok=True)
        barrier()
        state = None
    if state is not None:
        if stale:
            key = stale[0]
            raise InfbrushError(f"{ckpt_dir}: checkpoints were made with {key}={state['config'].get(key)!r}, this run "
                                f"has {asdict(cfg).get(key)!r}; use another --ckpt-dir or delete it")
        pair.student.load_state_dict(state["student"])
        pair.teacher.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        loss_fn.load_state_dict(state["loss"])
        step = int(state["step"])
        if info.is_main:
            print(f"train-dino: resuming from step {step} of {total} ({ckpt_dir})")

    dataset = MultiCropViews(store, cfg.img_size, multicrop_transform(cfg))

    def checkpoint(at: int) -> None:
        if info.is_main:
            save_checkpoint(ckpt_dir, {"student": pair.student.state_dict(), "teacher": pair.teacher.state_dict(),
                                       "optimizer": optimizer.state_dict(), "loss": loss_fn.state_dict(),
                                       "rng": capture_rng_state(), "step": at, "config": asdict(cfg)},
                            at, cfg.keep)

    if state is not None:  # last, so that nothing below consumes random numbers before the loop
        restore_rng_state(state["rng"])
    flag = PreemptionFlag()
    metrics_path = Path(ckpt_dir) / "metrics.jsonl"
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    start, loss_value, started, cpu_started = step, float("nan"), time.perf_counter(), time.process_time()
    bar = tqdm(total=total, initial=step, desc="train-dino", disable=not (progress and info.is_main))
    try:
        while step < total:
            epoch, position = divmod(step, steps_per_epoch)
            order = train_rows[epoch_order(len(train_rows), cfg.seed, epoch)]
            batches = [order[b * global_batch:(b + 1) * global_batch][info.rank::info.world_size].tolist()
                       for b in range(position, steps_per_epoch)]
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers,
                                                 collate_fn=collate_views, persistent_workers=False)
            for views in loader:
                views = [v.to(dev, non_blocking=True) for v in views]  # 2 × (B, C, G, G), L × (B, C, l, l)
                lr = lr_at(step, total, cfg.warmup_epochs * steps_per_epoch, base_lr, cfg.min_lr)
                wd = float(cosine_schedule(step, total, cfg.weight_decay[0], cfg.weight_decay[1]))
                optimizer.param_groups[0].update(lr=lr, weight_decay=wd)
                optimizer.param_groups[1].update(lr=lr)
                with torch.autocast(dev.type, dtype=scaler_dtype, enabled=scaler_dtype is not None):
                    teacher_out = [pair.teacher(v) for v in views[:2]]
                    global_out = [student(v, with_features=True) for v in views[:2]]
                    student_out = [logits for logits, _ in global_out] + [student(v) for v in views[2:]]
                    loss = loss_fn([t.float() for t in teacher_out], [s.float() for s in student_out], epoch=epoch)
                    if cfg.koleo_weight > 0:
                        loss = loss + cfg.koleo_weight * sum(koleo(f.float()) for _, f in global_out)
                if not torch.isfinite(loss):
                    raise InfbrushError(f"train-dino: loss is {float(loss)} at step {step}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(pair.student.parameters(), cfg.clip_grad)
                pair.student.head.cancel_last_layer_gradients(epoch)
                optimizer.step()
                momentum = float(cosine_schedule(step, total, cfg.momentum_teacher, 1.0))
                update_momentum(pair.student, pair.teacher, momentum)
                step += 1
                loss_value = float(all_reduce_mean(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", epoch=epoch)
                if info.is_main and (step % cfg.log_every == 0 or step == total):
                    append_jsonl(metrics_path, {"step": step, "epoch": epoch, "loss": loss_value, "lr": lr,
                                                "weight_decay": wd, "momentum": momentum})
                stop = any_rank(flag.requested, dev) or (stop_after is not None and step - start >= stop_after)
                if stop or step % cfg.ckpt_every == 0 or step == total:
                    checkpoint(step)
                if stop and step < total:
                    if info.is_main:
                        why = f"signal {flag.signal_name}" if flag.requested else f"--stop-after {stop_after}"
                        print(f"train-dino: stopped at step {step} of {total} ({why}); rerun to resume")
                    return None
                if step >= total:
                    break
    finally:
        bar.close()
        flag.restore()
    if info.is_main:
        export_dino(out, pair.teacher.backbone, spec, step=step, config=asdict(cfg))
    cleanup_distributed()
    last_loss = loss_value if math.isfinite(loss_value) else None  # None: resumed after the last step
    return {"steps": step, "epochs": cfg.epochs, "last_loss": last_loss, "is_main": info.is_main,
            "steps_this_call": step - start, "train_seconds_this_call": round(time.perf_counter() - started, 1),
            "train_cpu_seconds_this_call": round(time.process_time() - cpu_started, 1)}

