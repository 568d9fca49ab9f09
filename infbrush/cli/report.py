"""``infbrush report``: one self-contained HTML report of a dataset's results."""
from __future__ import annotations

import argparse
import sys

HELP = "write one self-contained HTML report (samples, FID vs paper, zero-shot, BACH, losses, settings)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.evaluate.report import PAPER_EXPERIMENTS, write_report

    d = signature_defaults(write_report)  # the library owns the defaults
    parser.add_argument("--dataset", required=True, help="dataset name (the report's title)")
    parser.add_argument("--results", required=True, help="the dataset's results folder (results/<ds>)")
    parser.add_argument("--out", required=True, help="report.html")
    parser.add_argument("--params", default=None,
                        help="run settings to show: a JSON object, or a path to a JSON/YAML file")
    parser.add_argument("--paper-row", metavar="TEXT", default=d["paper_row"],
                        help="the paper's experiment whose FID rows to show beside this run's: "
                             + " | ".join(PAPER_EXPERIMENTS) + " (default: none; params.yaml report.paper_row)")
    parser.add_argument("--miniature", action="store_true", default=d["miniature"],
                        help="this run is a small stand-in for that experiment (other data, sizes, counts): label "
                             "the paper's rows a reference only")


def _load_params(text: str | None) -> dict | None:
    import json
    from pathlib import Path

    from infbrush.errors import InfbrushError

    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InfbrushError(f"--params: not valid JSON ({err})") from None
    path = Path(text)
    if not path.is_file():
        raise InfbrushError(f"{path}: --params file not found (give a JSON object or a file)")
    from infbrush.config import load_yaml

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InfbrushError(f"{path}: --params must hold a mapping")
    return data


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from infbrush.errors import InfbrushError
    from infbrush.evaluate.report import write_report

    if not Path(args.results).is_dir():
        raise InfbrushError(f"{args.results}: results folder not found")
    out = write_report(args.out, args.dataset, args.results, _load_params(args.params), paper_row=args.paper_row,
                       miniature=args.miniature)
    print(f"report: {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
