"""``infbrush <command>``: one subcommand per pipeline step.

Each command is a module exposing ``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``;
heavy libraries are imported inside ``main`` so that ``infbrush --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from infbrush.errors import InfbrushError

# command name -> module; the order is the pipeline's order and is how --help lists them.
COMMANDS: dict[str, str] = {
    "check-params": "infbrush.cli.check_params",
    "demo-world": "infbrush.cli.demo_world",
    "download": "infbrush.cli.download",
    "tile": "infbrush.cli.tile",
    "extract-patches": "infbrush.cli.extract_patches",
    "patch-geotiff": "infbrush.cli.patch_geotiff",
    "adapt": "infbrush.cli.adapt",
    "train-clip": "infbrush.cli.train_clip",
    "train-dino": "infbrush.cli.train_dino",
    "embed": "infbrush.cli.embed",
    "embed-text": "infbrush.cli.embed_text",
    "train": "infbrush.cli.train",
    "sample": "infbrush.cli.sample",
    "brush": "infbrush.cli.brush",
    "brush-eval": "infbrush.cli.brush_eval",
    "fid-ref": "infbrush.cli.fid_ref",
    "fid": "infbrush.cli.fid",
    "zeroshot": "infbrush.cli.zeroshot",
    "bach-eval": "infbrush.cli.bach_eval",
    "control": "infbrush.cli.control",
    "large-field": "infbrush.cli.large_field",
    "spectrum": "infbrush.cli.spectrum",
    "report": "infbrush.cli.report",
    "viewer": "infbrush.cli.viewer",
}


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as err:
        if err.name == COMMANDS[name]:  # the command's own module is absent from this install
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per available command."""
    from infbrush import __version__

    parser = argparse.ArgumentParser(
        prog="infbrush",
        description="∞-Brush pipeline: conditional diffusion in function space for very large images.",
        epilog="Run `infbrush <command> --help` for a command's options. Snakemake rules and DVC stages call these.",
    )
    parser.add_argument("--version", action="version", version=f"infbrush {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_main=module.main)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings of the command line as ``infbrush: warning: <message>`` (one line, no source excerpt); those of
    other libraries keep their category and origin."""
    if category is UserWarning and "infbrush" in filename:
        return f"infbrush: warning: {message}\n"
    return f"{filename}:{lineno}: {category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``infbrush`` console script."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    warnings.formatwarning = _one_line_warning
    try:
        return int(args._main(args) or 0)
    except InfbrushError as err:
        print(f"infbrush {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"infbrush {args.command}: interrupted", file=sys.stderr)
        return 130
