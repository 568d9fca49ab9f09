"""``infbrush train-dino``: self-supervised DINO training of a timm ViT on an image store (resumable, DDP)."""
from __future__ import annotations

import argparse

HELP = "train a timm ViT with DINO on an image store (resumable, DDP); prints k-NN accuracy on labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.ssl.train import DinoConfig

    d = DinoConfig()
    parser.add_argument("--store", required=True, help="image store (results/<ds>/images.h5)")
    parser.add_argument("--out", required=True, help="exported teacher backbone (results/<ds>/dino.pt); k-NN to .json")
    parser.add_argument("--ckpt-dir", default=None, help="training checkpoints (default: <out without .pt>_ckpt/)")
    parser.add_argument("--model", default=d.model, help="timm model name")
    parser.add_argument("--img-size", type=int, default=d.img_size, help="global crop size = backbone input size")
    parser.add_argument("--patch-size", type=int, default=d.patch_size, help="default: the timm model's own")
    parser.add_argument("--depth", type=int, default=d.depth, help="transformer blocks (default: the timm model's own)")
    parser.add_argument("--global-pool", choices=["token", "avg"], default=d.global_pool,
                        help="feature = class token (DINO) or mean patch token (default: the timm model's own)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    parser.add_argument("--out-dim", type=int, default=d.out_dim)
    parser.add_argument("--hidden-dim", type=int, default=d.hidden_dim)
    parser.add_argument("--bottleneck-dim", type=int, default=d.bottleneck_dim)
    parser.add_argument("--local-crops", type=int, default=d.local_crops)
    parser.add_argument("--local-crop-size", type=int, default=d.local_crop_size)
    parser.add_argument("--global-crop-scale", type=float, nargs=2, default=list(d.global_crop_scale),
                        metavar=("MIN", "MAX"), help="area fraction of the image a global crop covers")
    parser.add_argument("--local-crop-scale", type=float, nargs=2, default=list(d.local_crop_scale),
                        metavar=("MIN", "MAX"))
    parser.add_argument("--vf-prob", type=float, default=d.vf_prob, help="vertical flip probability")
    parser.add_argument("--rr-prob", type=float, default=d.rr_prob, help="random 90° rotation probability")
    parser.add_argument("--cj-prob", type=float, default=d.cj_prob, help="colour jitter probability")
    parser.add_argument("--cj-strength", type=float, default=d.cj_strength,
                        help="colour jitter strength (× brightness 0.8, contrast 0.8, saturation 0.4, hue 0.2)")
    parser.add_argument("--gray-prob", type=float, default=d.gray_prob, help="random greyscale probability")
    parser.add_argument("--blur-prob", type=float, nargs=3, default=list(d.blur_prob),
                        metavar=("GLOBAL1", "GLOBAL2", "LOCAL"), help="Gaussian blur probability per view kind")
    parser.add_argument("--solarize-prob", type=float, default=d.solarize_prob)
    parser.add_argument("--lr", type=float, default=d.lr, help="at batch 256 (scaled by global batch / 256)")
    parser.add_argument("--min-lr", type=float, default=d.min_lr)
    parser.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    parser.add_argument("--weight-decay", type=float, nargs=2, default=list(d.weight_decay), metavar=("START", "END"))
    parser.add_argument("--warmup-teacher-temp", type=float, default=d.warmup_teacher_temp)
    parser.add_argument("--teacher-temp", type=float, default=d.teacher_temp)
    parser.add_argument("--warmup-teacher-temp-epochs", type=int, default=d.warmup_teacher_temp_epochs)
    parser.add_argument("--momentum-teacher", type=float, default=d.momentum_teacher)
    parser.add_argument("--drop-path", type=float, default=d.drop_path)
    parser.add_argument("--clip-grad", type=float, default=d.clip_grad)
    parser.add_argument("--koleo-weight", type=float, default=d.koleo_weight,
                        help="weight of DINOv2's KoLeo spreading term on the backbone features (0 = DINO v1)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="steps")
    parser.add_argument("--keep", type=int, default=d.keep, help="checkpoints kept")
    parser.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after N steps")
    parser.add_argument("--on-data-change", default="error", choices=["error", "restart"],
                        help="existing checkpoints made with other data or settings: stop (default) or delete them "
                             "and start over (the same flag as `infbrush train`)")
    parser.add_argument("--restart-stale", dest="on_data_change", action="store_const", const="restart",
                        help="deprecated: --on-data-change restart")
    parser.add_argument("--knn-k", type=int, default=20)
    parser.add_argument("--device", default="auto")
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
    config = DinoConfig(model=args.model, img_size=args.img_size, patch_size=args.patch_size, depth=args.depth,
                        global_pool=args.global_pool,
                        epochs=args.epochs, batch_size=args.batch_size, out_dim=args.out_dim, hidden_dim=args.hidden_dim,
                        bottleneck_dim=args.bottleneck_dim, local_crops=args.local_crops,
                        local_crop_size=args.local_crop_size, global_crop_scale=tuple(args.global_crop_scale),
                        local_crop_scale=tuple(args.local_crop_scale), vf_prob=args.vf_prob, rr_prob=args.rr_prob,
                        cj_prob=args.cj_prob, cj_strength=args.cj_strength, gray_prob=args.gray_prob,
                        blur_prob=tuple(args.blur_prob), solarize_prob=args.solarize_prob, lr=args.lr, min_lr=args.min_lr,
                        warmup_epochs=args.warmup_epochs, weight_decay=tuple(args.weight_decay),
                        warmup_teacher_temp=args.warmup_teacher_temp, teacher_temp=args.teacher_temp,
                        warmup_teacher_temp_epochs=args.warmup_teacher_temp_epochs,
                        momentum_teacher=args.momentum_teacher, drop_path=args.drop_path, clip_grad=args.clip_grad,
                        koleo_weight=args.koleo_weight,
                        seed=args.seed, workers=args.workers, ckpt_every=args.ckpt_every, keep=args.keep)
    report = train_and_evaluate(args.store, args.out, args.ckpt_dir, config, device=args.device,
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
