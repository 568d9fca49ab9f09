"""``infbrush embed-text``: embed class prompts with an open_clip model (zero-shot, text conditioning)."""
from __future__ import annotations

import argparse

HELP = "embed class prompts with an open_clip model into text_embeddings.h5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", default="open_clip", choices=["open_clip"], help="only open_clip has a text tower")
    parser.add_argument("--model", required=True, help="open_clip model (hf-hub:..., local-dir:..., democlip, ...)")
    parser.add_argument("--checkpoint", default=None, help="local weights file/folder")
    parser.add_argument("--prompts", required=True, nargs="+",
                        help="NAME=PROMPT items, or one JSON/YAML file mapping class name -> prompt")
    parser.add_argument("--out", required=True, help="output HDF5 (results/<ds>/text_embeddings.h5)")
    parser.add_argument("--device", default="auto")


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.text import parse_prompts, write_text_embeddings

    prompts = parse_prompts(args.prompts)
    encoder = load_encoder(args.kind, args.model, args.checkpoint, device=args.device)
    write_text_embeddings(args.out, encoder, prompts)
    print(f"embed-text: {len(prompts)} prompts with {encoder.name} -> {args.out}")
    return 0
