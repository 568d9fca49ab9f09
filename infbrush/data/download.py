"""Manifest-driven, resumable, md5-verified downloads (TCGA slides from the GDC, NAIP tiles, BACH, …).

A manifest is a tab-separated table with a header, GDC style: ``id  filename  md5  size  state``; only
``filename`` is required, other columns (e.g. ``path``) may be used by the URL template
(``https://api.gdc.cancer.gov/data/{id}``). Each file is fetched into ``<filename>.part``, resumed with an
HTTP Range request after an interrupted transfer, checked against ``size`` and ``md5``, and renamed to
its final name only when it verifies: a file under its final name is always complete.
"""
from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from infbrush.errors import InfbrushError

CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    filename: str
    md5: str | None
    size: int | None
    fields: dict[str, str]


class DownloadError(Exception):
    """A transfer or verification problem with one file (retried, then recorded)."""


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """Entries of a GDC-style TSV manifest (header required; ``filename`` column required)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as err:
        raise InfbrushError(f"{path}: cannot read manifest ({err})") from None
    if not rows:
        raise InfbrushError(f"{path}: manifest has no rows")
    if "filename" not in rows[0]:
        raise InfbrushError(f"{path}: manifest has no 'filename' column (columns: {', '.join(rows[0])})")
    entries = []
    for number, row in enumerate(rows, start=2):
        name = (row.get("filename") or "").strip()
        if not name or Path(name).name != name or name in (".", ".."):
            raise InfbrushError(f"{path}: line {number}: bad filename {name!r}")
        size = (row.get("size") or "").strip()
        if size and not size.isdigit():
            raise InfbrushError(f"{path}: line {number}: size {size!r} is not an integer")
        entries.append(ManifestEntry(filename=name, md5=(row.get("md5") or "").strip().lower() or None,
                                     size=int(size) if size else None,
                                     fields={k: (v or "").strip() for k, v in row.items() if k}))
    return entries


def md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch_once(url: str, part: Path, expected_size: int | None, timeout: float, headers: dict[str, str]) -> None:
    """Fetch ``url`` into ``part``, continuing from its current length with a Range request if possible."""
    import http.client
    import urllib.error
    import urllib.request

    start = part.stat().st_size if part.exists() else 0
    if expected_size is not None and start >= expected_size:
        if start == expected_size:
            return
        part.unlink()  # longer than the file: start over
        start = 0
    request = urllib.request.Request(url, headers={**headers, **({"Range": f"bytes={start}-"} if start else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = start > 0 and response.status == 206
            length = response.headers.get("Content-Length")
            expected_now = int(length) if length and length.isdigit() else None
            received = 0
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except http.client.IncompleteRead as err:
                        f.write(err.partial)
                        received += len(err.partial)
                        raise DownloadError(f"truncated transfer ({received} of {expected_now} bytes)") from None
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
            if expected_now is not None and received < expected_now:
                raise DownloadError(f"truncated transfer ({received} of {expected_now} bytes)")
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # range not satisfiable: the part is bad, start over next time
            part.unlink()
        raise DownloadError(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise DownloadError(f"transfer failed ({getattr(err, 'reason', err)})") from None


def download_entry(entry: ManifestEntry, url_template: str, out_dir: Path, *, retries: int = 3,
                   retry_wait: float = 2.0, timeout: float = 60.0, headers: dict[str, str] | None = None) -> str:
    """Download one manifest entry into ``out_dir``; return 'done' or 'present'; raise DownloadError."""
    final = out_dir / entry.filename
    if final.exists():
        return "present"  # only verified files are ever renamed to their final name
    try:
        url = url_template.format(**entry.fields)
    except KeyError as err:
        raise DownloadError(f"URL template needs manifest column {err}") from None
    part = out_dir / f"{entry.filename}.part"
    last = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * 2 ** (attempt - 1))
        try:
            fetch_once(url, part, entry.size, timeout, headers or {})
        except DownloadError as err:
            last = str(err)
            continue
        size = part.stat().st_size
        if entry.size is not None and size != entry.size:
            last = f"size {size} differs from the manifest's {entry.size}"
            if size > entry.size:
                part.unlink()
            continue
        if entry.md5 is not None:
            digest = md5_file(part)
            if digest != entry.md5:
                part.unlink()  # corrupt content cannot be resumed
                last = f"md5 {digest} differs from the manifest's {entry.md5}"
                continue
        os.replace(part, final)
        return "done"
    raise DownloadError(f"{last} (after {retries + 1} attempts)")


def download_all(entries: Sequence[ManifestEntry], url_template: str, out_dir: str | os.PathLike, *,
                 workers: int = 4, retries: int = 3, retry_wait: float = 2.0, timeout: float = 60.0,
                 headers: dict[str, str] | None = None, progress: bool = True, log=None) -> dict[str, Any]:
    """Download every entry with ``workers`` threads; failures are written to ``<out_dir>/failures.tsv``."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    from infbrush.runtime.jobs import write_failures

    log = log or (lambda line: print(line, file=sys.stderr))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"done": 0, "present": 0}
    failures: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(download_entry, e, url_template, out_dir, retries=retries, retry_wait=retry_wait,
                               timeout=timeout, headers=headers): e for e in entries}
        for future in tqdm(as_completed(futures), total=len(futures), desc="download", unit="file",
                           disable=not progress):
            entry = futures[future]
            try:
                counts[future.result()] += 1
            except DownloadError as err:
                failures.append((str(out_dir / entry.filename), str(err)))
                log(f"{out_dir / entry.filename}: failed: {err}")
    write_failures(out_dir / "failures.tsv", sorted(failures))
    return {**counts, "failures": sorted(failures)}
