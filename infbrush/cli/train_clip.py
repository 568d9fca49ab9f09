"""``infbrush train-clip``: train the demo's small CLIP (open_clip, ClipLoss) on a labelled store."""
from __future__ import annotations

import argparse

from infbrush.cli.options import add_config_options, config_from_args

HELP = "train the demo's small open_clip CLIP on a labelled image store and its class prompts"
OPTIONS = {"image_size": "", "patch_size": "", "width": "width of both towers",
           "layers": "vision layers (text tower: half)", "embed_dim": "", "epochs": "", "batch_size": "", "lr": "",
           "holdout_fraction": "held-out share per class when the store has no labelled held-out split",
           "seed": "", "device": "auto | cpu | cuda"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.embed.train_clip import ClipTrainConfig

    parser.add_argument("--store", required=True, help="labelled image store (results/demo_brca/images.h5)")
    parser.add_argument("--prompts", required=True, nargs="+",
                        help="NAME=PROMPT items (one per class in the store's label_names) or a JSON/YAML file")
    parser.add_argument("--out", required=True, help="checkpoint (results/demo_brca/democlip.pt); metrics go to .json")
    add_config_options(parser, ClipTrainConfig(), OPTIONS)
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.text import parse_prompts
    from infbrush.embed.train_clip import ClipTrainConfig, train_clip_on_store

    config = config_from_args(ClipTrainConfig, args, progress=not args.no_progress)
    metrics = train_clip_on_store(args.store, parse_prompts(args.prompts), args.out, config)
    low, high = metrics["zero_shot_accuracy_ci95"]
    print(f"train-clip: zero-shot accuracy {metrics['zero_shot_accuracy']:.3f} (95% [{low:.3f}, {high:.3f}]) on "
          f"{metrics['n_test']} held-out images (chance {metrics['chance']:.3f}, majority "
          f"{metrics['majority_baseline']:.3f}); trained in {metrics['train_seconds'] / 60:.1f} min; wrote {args.out}")
    return 0
