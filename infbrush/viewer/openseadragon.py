"""Where the viewer's zoomable-image library comes from: OpenSeadragon, installed from npm by the project's
package.json (``npm ci``), found beside the working directory or the repository."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from infbrush.errors import InfbrushError

OSD_SUBDIR = Path("node_modules") / "openseadragon" / "build" / "openseadragon"
REPO_ROOT = Path(__file__).resolve().parents[2]


def find_openseadragon(path: str | os.PathLike | None = None, install: bool = False, log=None) -> Path:
    """The folder with OpenSeadragon's ``openseadragon.min.js`` and ``images/``, installed from npm by the
    project's package.json (``npm ci``). With ``install``, run ``npm ci`` where package.json is when missing."""
    import subprocess

    candidates = [Path(path)] if path else [Path.cwd() / OSD_SUBDIR, REPO_ROOT / OSD_SUBDIR]

    def found() -> Path | None:
        return next((f for f in candidates if (f / "openseadragon.min.js").is_file() and (f / "images").is_dir()),
                    None)

    if found() is None and install and not path:
        root = next((r for r in (Path.cwd(), REPO_ROOT) if (r / "package-lock.json").is_file()), None)
        npm = shutil.which("npm")
        if root is not None and npm is not None:
            if log:
                log(f"OpenSeadragon not installed: npm ci in {root}")
            proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=root,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()
                raise InfbrushError(f"npm ci in {root} failed ({tail[-1] if tail else proc.returncode})")
    folder = found()
    if folder is None:
        raise InfbrushError(f"{candidates[0]}: OpenSeadragon not found; run `npm ci` in the repository root "
                            "(package.json installs it from npm)")
    return folder


def openseadragon_version(folder: Path) -> str:
    import json

    try:
        return str(json.loads((folder.parents[1] / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError, IndexError):
        return "unknown"
