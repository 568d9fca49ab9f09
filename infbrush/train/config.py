"""The configuration of a training run: every setting and its default, written once (torch-free, so the CLI
reads its defaults from here without importing torch)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved, resolved, in every checkpoint and the export)."""

    store: str                                  # images.h5 (image store); rows with split == 0 are used
    out: str                                    # run folder: checkpoints, metrics.jsonl, samples/
    export: str | None = None                   # EMA weights written here at the end
    cond_embeddings: str | None = None          # embeddings.h5 aligned by ids, or
    cond_labels: int | None = None              # number of classes (one-hot of the store's labels), or neither
    cond_standardize: bool = False              # embeddings: standardise each dimension over the training set
                                                # (the model's cond_standardize; labels are left as they are)
    cond_neighbors: int = 0                     # embeddings: each condition → the mean of its k nearest training
                                                # ones (the model's cond_neighbors; 0 = off; labels left as they are)
    model_preset: str = "demo"
    model_args: dict = field(default_factory=dict)  # overrides of the preset's model arguments
    cano: bool = True
    steps: int = 600
    batch_size: int = 4                         # global batch, split over ranks
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.99)
    ema_rate: float = 0.995                     # reached after the warm-up min(rate, (1+n)/(10+n))
    ema_warmup: bool = True                     # False: the constant rate from step 0 (the old recipe; A/B only)
    ema_kind: str = "rate"                      # "rate" (ema_rate, the paper's) or "power" (EDM2's power function)
    ema_std: float = 0.1                        # power EMA: relative width σ_rel of the average (EDM2)
    lr_warmup: int = 0                          # linear lr warm-up steps (paper: none)
    lr_decay: str = "constant"                  # "constant" (paper) or "cosine" to lr_final_fraction·lr
    lr_final_fraction: float = 0.0
    balance_labels: bool = False                # draw training images class-balanced (needs store labels)
    stratify_t: bool = False                    # timesteps stratified over the global batch
    t_dist: str = "uniform"                     # timestep law: uniform (paper) | lognormal (EDM) | laplace
    t_dist_loc: float | None = None             # location of log-SNR under t_dist (None: the law's published one)
    t_dist_scale: float | None = None           # scale of log-SNR under t_dist (None: the law's published one)
    loss_weighting: str = "none"                # "none" (paper: plain mean) or "min_snr" (Min-SNR-γ)
    min_snr_gamma: float = 5.0                  # γ of Min-SNR-γ (Hang et al. 2023: 5)
    grad_clip: float = 1.0                      # <= 0: no clipping (the norm is still logged)
    n_points: int = 4096                        # pixels drawn per training image and step (the sparse function)
    mollify_sigma: float = 0.0039               # noise mollifier width in [0, 1] image coordinates (1/256 here)
    cond_drop_prob: float = 0.1                 # condition dropped to the null one (classifier-free guidance)
    timesteps: int = 1000                       # diffusion steps T of the training schedule
    seed: int = 0                               # initial weights; points and timesteps per (seed, step, batch slot)
    log_every: int = 10                         # steps between metrics.jsonl lines
    ckpt_every: int = 100                       # steps between checkpoints (and on SIGTERM)
    keep: int = 3                               # newest checkpoints kept in the run folder
    sample_every: int = 0                       # 0: no sample grids
    sample_steps: int = 10
    sample_images: int = 4
    sample_size: int = 256                      # side of the preview grid images (capped at the training size)
    amp: str = "auto"
    compile: bool = False
    workers: int = 0
    device: str = "auto"
    progress: bool = True
    on_data_change: str = "error"               # checkpoints of other data or model args: "error" or "restart"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = [float(b) for b in self.betas]
        return d
