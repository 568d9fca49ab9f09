#!/usr/bin/env bash
# System dependencies the pip install cannot bring: Chromium (viewer previews and the browser test), libvips-tools
# (pyramidal TIFF checks) and npm (OpenSeadragon for the zoomable viewer, pinned by package-lock.json).
# Installs with apt-get only what is missing (Debian; run as root or with sudo), then `npm ci`. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=()
command -v chromium > /dev/null || tools+=(chromium)
command -v vips > /dev/null || tools+=(libvips-tools)
command -v npm > /dev/null || tools+=(npm)
if [ ${#tools[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log="${TMPDIR:-/tmp}/infbrush-tools-apt.log"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${tools[@]}"; } \
    > "$log" 2>&1 || { tail -20 "$log"; echo "error: apt-get install ${tools[*]} failed (see $log)" >&2; exit 1; }
fi
npm ci --no-audit --no-fund --loglevel=error  # OpenSeadragon into node_modules/
