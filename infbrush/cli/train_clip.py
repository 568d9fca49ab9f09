"""``infbrush train-clip``: train the demo's small CLIP (open_clip, ClipLoss) on a labelled store."""
from __future__ import annotations

import argparse

HELP = "train the demo's small open_clip CLIP on a labelled image store and its class prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="labelled image store (results/demo_brca/images.h5)")
    parser.add_argument("--prompts", required=True, nargs="+",
                        help="NAME=PROMPT items (one per class in the store's label_names) or a JSON/YAML file")
    parser.add_argument("--out", required=True, help="checkpoint (results/demo_brca/democlip.pt); metrics go to .json")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--width", type=int, default=128, help="width of both towers")
    parser.add_argument("--layers", type=int, default=4, help="vision layers (text tower: half)")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--holdout-fraction", type=float, default=0.25,
                        help="held-out share per class when the store has no labelled held-out split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.democlip import democlip_config
    from infbrush.embed.train_clip import train_clip_on_store
    from infbrush.embed.text import parse_prompts
    from infbrush.errors import InfbrushError

    if args.epochs < 1 or args.batch_size < 2:
        raise InfbrushError("--epochs must be >= 1 and --batch-size >= 2")
    config = democlip_config(args.image_size, args.patch_size, args.width, args.layers, args.embed_dim)
    metrics = train_clip_on_store(args.store, parse_prompts(args.prompts), args.out, model_cfg=config,
                                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  device=args.device, holdout_fraction=args.holdout_fraction,
                                  progress=not args.no_progress)
    low, high = metrics["zero_shot_accuracy_ci95"]
    print(f"train-clip: zero-shot accuracy {metrics['zero_shot_accuracy']:.3f} (95% [{low:.3f}, {high:.3f}]) on "
          f"{metrics['n_test']} held-out images (chance {metrics['chance']:.3f}, majority "
          f"{metrics['majority_baseline']:.3f}); trained in {metrics['train_seconds'] / 60:.1f} min; wrote {args.out}")
    return 0
