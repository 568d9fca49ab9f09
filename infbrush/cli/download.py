"""``infbrush download``: fetch the files of a GDC-style manifest (resumable, md5-verified)."""
from __future__ import annotations

import argparse
import sys

HELP = "Download the files of a GDC-style manifest (id, filename, md5, size): resumable and md5-verified."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.data.download import download_all

    d = signature_defaults(download_all)  # the library owns the defaults
    parser.add_argument("--manifest", required=True, help="tab-separated manifest with a 'filename' column")
    parser.add_argument("--url-template", required=True,
                        help="URL with manifest columns in braces, e.g. https://api.gdc.cancer.gov/data/{id}")
    parser.add_argument("--out", required=True, help="directory to download into")
    parser.add_argument("--workers", type=int, default=d["workers"], help="parallel transfers (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=d["retries"], help="retries per file after the first attempt (default: %(default)s)")
    parser.add_argument("--retry-wait", type=float, default=d["retry_wait"],
                        help="seconds before the first retry (doubles) (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=d["timeout"], help="socket timeout in seconds (default: %(default)s)")
    parser.add_argument("--token-file", help="file holding a GDC token (sent as X-Auth-Token; controlled data)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from infbrush.data.download import download_all, read_manifest
    from infbrush.errors import InfbrushError

    headers = {}
    if args.token_file:
        try:
            headers["X-Auth-Token"] = Path(args.token_file).read_text().strip()
        except OSError as err:
            raise InfbrushError(f"{args.token_file}: cannot read token ({err})") from None
    entries = read_manifest(args.manifest)
    summary = download_all(entries, args.url_template, args.out, workers=args.workers, retries=args.retries,
                           retry_wait=args.retry_wait, timeout=args.timeout, headers=headers,
                           progress=not args.no_progress,
                           log=lambda line: print(f"infbrush download: {line}", file=sys.stderr))
    print(f"infbrush download: {summary['done']} downloaded, {summary['present']} already present, "
          f"{len(summary['failures'])} failed (see {args.out}/failures.tsv; rerun to resume)", file=sys.stderr)
    return 1 if summary["failures"] else 0
