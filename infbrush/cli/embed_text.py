"""``infbrush embed-text``: embed class prompts with an open_clip model (zero-shot, text conditioning)."""
from __future__ import annotations

import argparse

HELP = "embed class prompts with an open_clip model into text_embeddings.h5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_device_option, add_encoder_options
    from infbrush.embed.encoders import TEXT_ENCODER_KINDS

    add_encoder_options(parser, kinds=TEXT_ENCODER_KINDS)
    parser.add_argument("--prompts", required=True, nargs="+",
                        help="NAME=PROMPT items, or one JSON/YAML file mapping class name -> prompt")
    parser.add_argument("--out", required=True, help="output HDF5 (results/<ds>/text_embeddings.h5)")
    add_device_option(parser)


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.text import parse_prompts, write_text_embeddings

    prompts = parse_prompts(args.prompts)
    encoder = load_encoder(args.kind, args.model, args.checkpoint, device=args.device)
    write_text_embeddings(args.out, encoder, prompts)
    print(f"embed-text: {len(prompts)} prompts with {encoder.name} -> {args.out}")
    return 0
