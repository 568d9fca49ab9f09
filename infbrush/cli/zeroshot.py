"""``infbrush zeroshot``: zero-shot confusion matrix of text-conditioned generations (zeroshot.json + PNG)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "classify text-conditioned generations with the CLIP model's zero-shot head: confusion matrix, accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_device_option, add_encoder_options, signature_defaults
    from infbrush.embed.encoders import TEXT_ENCODER_KINDS
    from infbrush.evaluate.zeroshot import zero_shot_evaluate

    d = signature_defaults(zero_shot_evaluate)  # the library owns the defaults
    parser.add_argument("--samples", required=True, help="index.json of images sampled with --cond-text")
    add_encoder_options(parser, kinds=TEXT_ENCODER_KINDS)
    parser.add_argument("--prompts", nargs="+", required=True,
                        help="NAME=PROMPT items in class order, or one JSON/YAML file mapping name -> prompt")
    parser.add_argument("--out", required=True, help="zeroshot.json")
    parser.add_argument("--png", default=None, help="confusion-matrix PNG (default: OUT with .png)")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="default: %(default)s")
    add_device_option(parser)


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.text import parse_prompts
    from infbrush.runtime.device import resolve_device
    from infbrush.evaluate.images import read_sample_index
    from infbrush.evaluate.zeroshot import plot_confusion, zero_shot_evaluate
    from infbrush.io import write_json

    prompts = parse_prompts(args.prompts)
    records = read_sample_index(args.samples)
    encoder = load_encoder(args.kind, args.model, args.checkpoint, device=resolve_device(args.device))
    result = zero_shot_evaluate(records, encoder, prompts, batch_size=args.batch_size, source=args.samples)
    png = Path(args.png) if args.png else Path(args.out).with_suffix(".png")
    plot_confusion(result["confusion"], result["class_names"], png,
                   title=f"zero-shot ({encoder.name}), accuracy {result['accuracy']:.2f}")
    result.update({"encoder": {"kind": args.kind, "model": args.model, "checkpoint": args.checkpoint,
                               "weights_sha256": encoder.weights_sha256},
                   "samples": str(args.samples), "png": str(png)})
    write_json(args.out, result)
    print(f"zeroshot: accuracy {result['accuracy']:.3f} over {result['n_images']} images "
          f"(chance {result['chance']:.2f}) -> {args.out}, {png}", file=sys.stderr)
    return 0
