#!/usr/bin/env bash
# Stop the sshd that .ci/sshd/start.sh started, by its recorded PID. Safe to run twice.
set -uo pipefail
STATE="${INFBRUSH_SSHD_STATE:-/tmp/infbrush-sshd}"
f="$STATE/sshd.pid"
[ -s "$f" ] || { echo "[sshd/stop] nothing to stop" >&2; exit 0; }
pid=$(cat "$f")
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "[sshd/stop] stopped sshd ($pid)" >&2
fi
rm -f "$f"
