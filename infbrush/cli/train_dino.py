"""``infbrush train-dino``: self-supervised DINO training of a timm ViT on an image store (resumable, DDP)."""
from __future__ import annotations

import argparse

from infbrush.cli.options import add_config_options, config_from_args

HELP = "train a timm ViT with DINO on an image store (resumable, DDP); prints k-NN accuracy on labels"


OPTIONS = {
    "model": "timm model name", "img_size": "global crop size = backbone input size",
    "patch_size": "default None: the timm model's own", "depth": "transformer blocks (None: the timm model's own)",
    "epochs": "", "batch_size": "per process", "out_dim": "", "hidden_dim": "", "bottleneck_dim": "",
    "local_crops": "", "local_crop_size": "", "global_crop_scale": "area fraction of the image a global crop covers",
    "local_crop_scale": "", "vf_prob": "vertical flip probability", "rr_prob": "random 90° rotation probability",
    "cj_prob": "colour jitter probability",
    "cj_strength": "colour jitter strength (× brightness 0.8, contrast 0.8, saturation 0.4, hue 0.2)",
    "gray_prob": "random greyscale probability", "blur_prob": "Gaussian blur probability: global 1, global 2, local",
    "solarize_prob": "", "lr": "at batch 256 (scaled by global batch / 256)", "min_lr": "", "warmup_epochs": "",
    "weight_decay": "start and end of the cosine schedule", "warmup_teacher_temp": "", "teacher_temp": "",
    "warmup_teacher_temp_epochs": "", "momentum_teacher": "", "drop_path": "", "clip_grad": "",
    "koleo_weight": "weight of DINOv2's KoLeo spreading term on the backbone features (0 = DINO v1)",
    "seed": "", "workers": "", "ckpt_every": "steps", "keep": "checkpoints kept",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_device_option, signature_defaults
    from infbrush.ssl.evaluate import train_and_evaluate
    from infbrush.ssl.train import DinoConfig

    d = DinoConfig()  # one owner of every default: the library's config (and train_and_evaluate's keywords)
    run = signature_defaults(train_and_evaluate)
    # the vocabulary of `infbrush train`: --out run folder, --export weights, --on-data-change
    parser.add_argument("--store", required=True, help="image store (results/<ds>/images.h5)")
    parser.add_argument("--out", required=True,
                        help="run folder: ckpt_*.pt, metrics.jsonl (results/<ds>/dino_ckpt); rerunning resumes from it")
    parser.add_argument("--export", required=True,
                        help="write the teacher backbone here (results/<ds>/dino.pt); the k-NN report beside it "
                             "(.json)")
    add_config_options(parser, d, OPTIONS)
    parser.add_argument("--global-pool", choices=["token", "avg"], default=d.global_pool,
                        help="feature = class token (DINO) or mean patch token (default: the timm model's own)")
    parser.add_argument("--stop-after", type=int, default=run["stop_after"],
                        help="stop (with a checkpoint) after N steps")
    parser.add_argument("--on-data-change", default=run["on_data_change"], choices=["error", "restart"],
                        help="existing checkpoints made with other data or settings: stop (default) or delete them "
                             "and start over")
    parser.add_argument("--knn-k", type=int, default=run["knn_k"],
                        help="neighbours of the k-NN report on the held-out split (default: %(default)s)")
    add_device_option(parser)
    parser.add_argument("--no-progress", action="store_true")


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for settings DINO cannot train with."""
    from infbrush.errors import InfbrushError

    if args.local_crops < 0 or args.epochs < 1:
        raise InfbrushError("--epochs must be >= 1 and --local-crops >= 0")
    if args.koleo_weight < 0 or not 0.0 <= args.drop_path < 1.0:
        raise InfbrushError(f"--koleo-weight must be >= 0 and --drop-path in [0, 1), got {args.koleo_weight} and "
                            f"{args.drop_path}")
    probs = {"--vf-prob": [args.vf_prob], "--rr-prob": [args.rr_prob], "--cj-prob": [args.cj_prob],
             "--gray-prob": [args.gray_prob], "--blur-prob": args.blur_prob, "--solarize-prob": [args.solarize_prob]}
    for flag, values in probs.items():
        if any(not 0.0 <= v <= 1.0 for v in values):
            shown = " ".join(str(v) for v in values)
            raise InfbrushError(f"{flag} must be a probability in [0, 1], got {shown}")
    for flag, (low, high) in {"--global-crop-scale": args.global_crop_scale,
                              "--local-crop-scale": args.local_crop_scale}.items():
        if not 0.0 < low <= high <= 1.0:
            raise InfbrushError(f"{flag} must be 0 < MIN <= MAX <= 1, got {low} {high}")


def main(args: argparse.Namespace) -> int:
    from infbrush.runtime.preemption import REQUEUE_EXIT_CODE
    from infbrush.ssl.evaluate import train_and_evaluate
    from infbrush.ssl.train import DinoConfig

    check_args(args)
    config = config_from_args(DinoConfig, args)
    report = train_and_evaluate(args.store, args.out, args.export, config, device=args.device,
                                stop_after=args.stop_after, progress=not args.no_progress,
                                on_data_change=args.on_data_change, knn_k=args.knn_k)
    if report is None:
        return REQUEUE_EXIT_CODE
    if "knn_accuracy" in report and report["knn_accuracy"] is None:
        print("train-dino: the store has no labels; k-NN accuracy not measured")
    elif report:
        low, high = report["knn_gain_ci95"]
        print(f"train-dino: k-NN accuracy {report['knn_accuracy']:.3f} on {report['n_test']} held-out images, same "
              f"network untrained {report['knn_accuracy_random_init']:.3f} (gain {report['knn_gain']:+.3f}, 95% "
              f"[{low:+.3f}, {high:+.3f}]; chance {report['chance']:.3f}, majority "
              f"{report['majority_baseline']:.3f})")
    return 0
