"""``infbrush check-params``: validate params.yaml against the schema."""
from __future__ import annotations

import argparse

HELP = "Validate params.yaml against workflow/schemas/params.schema.yaml (one-line error naming the key)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("params", nargs="?", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--dataset", help="also check that this dataset block exists")


def main(args: argparse.Namespace) -> int:
    from infbrush.config import dataset_params, load_params

    params = load_params(args.params)
    if args.dataset:
        dataset_params(params, args.dataset)
    print(f"{args.params}: ok ({len(params['datasets'])} datasets: {', '.join(params['datasets'])})")
    return 0
