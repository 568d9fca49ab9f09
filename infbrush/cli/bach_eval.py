"""``infbrush bach-eval``: BACH accuracy of a linear probe trained on real vs real + synthetic (bach.json)."""
from __future__ import annotations

import argparse
import sys

HELP = "BACH downstream: linear probe on frozen embeddings, real vs real + synthetic training data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_device_option, add_encoder_options, signature_defaults
    from infbrush.evaluate.bach import bach_downstream

    d = signature_defaults(bach_downstream)  # the library owns the defaults
    parser.add_argument("--bach", required=True, help="BACH image store (results/<ds>/bach.h5, split 0 train / 1 test)")
    parser.add_argument("--synthetic", required=True,
                        help="index.json of images sampled from the BACH training images' embeddings")
    add_encoder_options(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(d["seeds"]),
                        help="validation-split seeds (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=d["val_fraction"],
                        help="share of the real training images used to choose the regularisation C "
                             "(default: %(default)s)")
    parser.add_argument("--out", required=True, help="bach.json")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="default: %(default)s")
    add_device_option(parser)


def main(args: argparse.Namespace) -> int:
    from infbrush.embed.encoders import load_encoder
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.bach import bach_downstream
    from infbrush.runtime.device import resolve_device
    from infbrush.evaluate.images import read_sample_index
    from infbrush.io import write_json

    if not 0 < args.val_fraction < 1:
        raise InfbrushError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    records = read_sample_index(args.synthetic)
    encoder = load_encoder(args.kind, args.model, args.checkpoint, device=resolve_device(args.device))
    result = bach_downstream(args.bach, records, encoder, args.seeds, val_fraction=args.val_fraction,
                             batch_size=args.batch_size, source=args.synthetic)
    result.update({"encoder": {"kind": args.kind, "model": args.model, "checkpoint": args.checkpoint,
                               "weights_sha256": encoder.weights_sha256},
                   "bach": str(args.bach), "synthetic": str(args.synthetic)})
    write_json(args.out, result)
    real, aug = result["real"], result["real_plus_synthetic"]
    print(f"bach-eval: real {real['mean']:.3f} ± {real['sd']:.3f}, real + synthetic {aug['mean']:.3f} ± "
          f"{aug['sd']:.3f} over seeds {args.seeds} (paper: 0.79 → 0.83) -> {args.out}", file=sys.stderr)
    return 0
