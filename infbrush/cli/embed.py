"""``infbrush embed``: embed every image of an image store with an open_clip / timm / DINO encoder."""
from __future__ import annotations

import argparse

HELP = "embed an image store into embeddings.h5 (resumable; open_clip, timm or DINO encoders)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_device_option, add_encoder_options, signature_defaults
    from infbrush.embed.images import embed_store

    d = signature_defaults(embed_store)  # the library owns the defaults
    parser.add_argument("--store", required=True, help="image store (results/<ds>/images.h5)")
    add_encoder_options(parser, kind_required=True)
    parser.add_argument("--out", required=True, help="output HDF5 (results/<ds>/embeddings.h5)")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="default: %(default)s")
    add_device_option(parser)
    parser.add_argument("--input-size", type=int, default=None,
                        help="expected encoder input size (checked against the encoder; params embedding.input_size)")
    parser.add_argument("--limit", type=int, default=d["limit"],
                        help="embed at most this many images in this call (rerun to continue)")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.images import embed_store, partial_path
    from infbrush.errors import InfbrushError

    if args.batch_size < 1:
        raise InfbrushError(f"--batch-size must be >= 1, got {args.batch_size}")
    encoder = load_encoder(args.kind, args.model, args.checkpoint, device=args.device)
    if args.input_size is not None and args.input_size != encoder.input_size:
        raise InfbrushError(f"--input-size {args.input_size} but encoder {encoder.name!r} takes "
                            f"{encoder.input_size}² images; fix embedding.input_size")
    print(f"embed: {encoder.name} ({encoder.kind}, {encoder.dim}-d, {encoder.input_size}² input, "
          f"device {encoder.device}, weights sha256 {encoder.weights_sha256[:12]})")
    done = embed_store(args.store, encoder, args.out, batch_size=args.batch_size, limit=args.limit,
                       progress=not args.no_progress)
    print(f"embed: wrote {args.out}" if done else f"embed: partial result in {partial_path(args.out)}; rerun to continue")
    return 0
