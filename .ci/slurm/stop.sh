#!/usr/bin/env bash
# Stop the daemons that .ci/slurm/start.sh started, by the PIDs it recorded.
# Safe to run twice or when nothing is running. Never kills by name.
set -uo pipefail
STATE="${INFBRUSH_SLURM_STATE:-/tmp/infbrush-slurm}"
log() { echo "[slurm/stop] $*" >&2; }

[ -d "$STATE" ] || { log "nothing to stop (no $STATE)"; exit 0; }

# Cancel leftover jobs first so slurmd does not leave job processes behind.
if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    timeout 10 scancel --quiet --user="$(id -un)" 2>/dev/null || true
fi

stop_pid() {  # stop_pid NAME PIDFILE
    local name=$1 f=$2 pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        log "stopped $name ($pid)"
    fi
    rm -f "$f"
}

stop_pid slurmd "$STATE/slurmd.pid"
stop_pid slurmctld "$STATE/slurmctld.pid"
stop_pid munged "$STATE/munged.pid"   # only present when start.sh started munged itself
exit 0
