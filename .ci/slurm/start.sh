#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on this machine (CI / dev box only).
#
#   bash .ci/slurm/start.sh          # installs (once), configures, starts, waits until idle
#   bash .ci/slurm/stop.sh           # stops every daemon this script started, by PID
#
# What it does:
#   * apt-get installs Debian's slurmctld, slurmd, slurm-client and munge (skipped when present);
#   * writes /etc/slurm/slurm.conf + gres.conf for one node named after `hostname`
#     (CPUs=$(nproc), RealMemory from /proc/meminfo, two fake GPUs backed by /dev/null),
#     a default partition `debug`, no accounting (no slurmdbd: the Snakemake profile polls
#     job status with squeue, see workflow/profiles/slurm/config.yaml);
#   * starts munged (as user munge), slurmctld -i and slurmd directly (no systemd here),
#     records their PIDs in $INFBRUSH_SLURM_STATE (default /tmp/infbrush-slurm);
#   * waits until `sinfo` reports the node idle.
#
# Environment knobs: INFBRUSH_SLURM_STATE (state dir), INFBRUSH_SLURM_CPUS (CPUs to
# advertise, default nproc), INFBRUSH_SLURM_GPUS (fake GPUs, default 2),
# INFBRUSH_SLURM_TIMEOUT (seconds to wait for the node, default 60).
#
# It refuses to overwrite an /etc/slurm/slurm.conf that it did not write itself.
set -euo pipefail

STATE="${INFBRUSH_SLURM_STATE:-/tmp/infbrush-slurm}"
CPUS="${INFBRUSH_SLURM_CPUS:-$(nproc)}"
GPUS="${INFBRUSH_SLURM_GPUS:-2}"
TIMEOUT="${INFBRUSH_SLURM_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
MARKER="# written by infbrush .ci/slurm/start.sh"
NODE="$(hostname -s)"
t0=$(date +%s)

log() { echo "[slurm/start] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs packages and starts daemons)"

if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    log "already running (state dir $STATE); run .ci/slurm/stop.sh first to restart"
    sinfo
    exit 0
fi

# ---------------------------------------------------------------- install (idempotent)
need=()
for pkg in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    # policy-rc.d 101: the packages' maintainer scripts must not try to start services.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        > "${TMPDIR:-/tmp}/infbrush-slurm-apt.log" 2>&1 \
        || { rm -f /usr/sbin/policy-rc.d; tail -20 "${TMPDIR:-/tmp}/infbrush-slurm-apt.log"; die "apt-get install failed"; }
    rm -f /usr/sbin/policy-rc.d
fi
t_install=$(( $(date +%s) - t0 ))

# ---------------------------------------------------------------- configuration
# Jobs find their node (and DDP its rendezvous host) by this name: make it resolvable.
if ! getent hosts "$NODE" >/dev/null; then
    log "adding '127.0.0.1 $NODE' to /etc/hosts (hostname did not resolve)"
    echo "127.0.0.1 $NODE" >> /etc/hosts
fi
if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and was not written by this script; not touching a real cluster config"
fi
rm -rf "$STATE"
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log" "$CONF_DIR"

mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
real_mem=$(( mem_kb / 1024 * 9 / 10 ))          # MiB, leave 10 % for the OS
def_mem=$(( real_mem / CPUS < 2048 ? real_mem / CPUS : 2048 ))

gres_node=""
gres_lines=""
if [ "$GPUS" -gt 0 ]; then
    gres_node="Gres=gpu:$GPUS"
    # Fake GPUs: each line is one device; character devices that always exist.
    devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/ptmx /dev/console)
    [ "$GPUS" -le ${#devs[@]} ] || die "INFBRUSH_SLURM_GPUS=$GPUS: at most ${#devs[@]} fake GPUs"
    for ((i = 0; i < GPUS; i++)); do
        gres_lines+="NodeName=$NODE Name=gpu File=${devs[$i]}"$'\n'
    done
fi

cat > "$CONF_DIR/slurm.conf" <<EOF
$MARKER -- single-node test cluster, do not use in production
ClusterName=infbrush-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
MailProg=/bin/true
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$real_mem $gres_node State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
printf '%s\nAutoDetect=off\n%s' "$MARKER" "$gres_lines" > "$CONF_DIR/gres.conf"
: > "$CONF_DIR/cgroup.conf"   # unused (no cgroup plugins) but silences a warning

# ---------------------------------------------------------------- daemons
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi

wait_pidfile() {  # wait_pidfile FILE NAME -> prints pid
    local f=$1 name=$2 i
    for ((i = 0; i < 100; i++)); do
        if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then cat "$f"; return 0; fi
        sleep 0.1
    done
    die "$name did not start (no live pid in $f); see $STATE/log"
}

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running (not started by us, will not be stopped)"
else
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid 2>>"$STATE/log/munged.stderr" \
        || die "munged failed: $(tail -3 "$STATE/log/munged.stderr" /var/log/munge/munged.log 2>/dev/null)"
    wait_pidfile /run/munge/munged.pid munged > "$STATE/munged.pid"
fi

slurmctld -i 2>>"$STATE/log/slurmctld.stderr"
wait_pidfile "$STATE/slurmctld.pid" slurmctld >/dev/null
slurmd 2>>"$STATE/log/slurmd.stderr"
wait_pidfile "$STATE/slurmd.pid" slurmd >/dev/null

# ---------------------------------------------------------------- wait until idle
for ((i = 0; i < TIMEOUT * 2; i++)); do
    state=$(sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -1 || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
if [ "$state" != idle ]; then
    sinfo -N -l || true
    tail -20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    die "node $NODE not idle after ${TIMEOUT}s (state '${state:-none}')"
fi
log "cluster up: node $NODE CPUs=$CPUS RealMemory=${real_mem}M gpus=$GPUS partition=debug;" \
 "install ${t_install}s, total $(( $(date +%s) - t0 ))s; state $STATE"
sinfo
