#!/usr/bin/env bash
# Start a throwaway OpenSSH server on 127.0.0.1 for the DVC SSH-remote test (CI / dev box only).
#
#   bash .ci/sshd/start.sh       # installs openssh-server once, starts sshd, prints the settings
#   bash .ci/sshd/stop.sh        # stops that sshd by its PID
#
# Everything lives in $INFBRUSH_SSHD_STATE (default /tmp/infbrush-sshd): a fresh host key, a
# user key (id_ed25519) authorised for root, sshd_config (key-only root login, sftp), the PID
# and `env`, a file of shell assignments the tests read:
#   INFBRUSH_SSHD_HOST=127.0.0.1 INFBRUSH_SSHD_PORT=<port> INFBRUSH_SSHD_USER=root
#   INFBRUSH_SSHD_KEY=<state>/id_ed25519
# Port: $INFBRUSH_SSHD_PORT, else a free one chosen now. Nothing listens beyond loopback.
set -euo pipefail
STATE="${INFBRUSH_SSHD_STATE:-/tmp/infbrush-sshd}"
log() { echo "[sshd/start] $*" >&2; }
die() { log "error: $*"; exit 1; }
t0=$(date +%s)

[ "$(id -u)" = 0 ] || die "must run as root (installs openssh-server, logs in as root)"
if [ -f "$STATE/sshd.pid" ] && kill -0 "$(cat "$STATE/sshd.pid")" 2>/dev/null; then
    log "already running; settings in $STATE/env"; cat "$STATE/env"; exit 0
fi

if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q "install ok installed"; then
    log "installing openssh-server"
    apt-get update -qq
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server \
        > "${TMPDIR:-/tmp}/infbrush-sshd-apt.log" 2>&1 \
        || { rm -f /usr/sbin/policy-rc.d; tail -20 "${TMPDIR:-/tmp}/infbrush-sshd-apt.log"; die "apt-get install failed"; }
    rm -f /usr/sbin/policy-rc.d
fi

PORT="${INFBRUSH_SSHD_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
rm -rf "$STATE"
mkdir -p "$STATE" /run/sshd
chmod 700 "$STATE"
ssh-keygen -q -t ed25519 -N '' -C infbrush-ci-host -f "$STATE/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C infbrush-ci-user -f "$STATE/id_ed25519"
cp "$STATE/id_ed25519.pub" "$STATE/authorized_keys"
chmod 600 "$STATE/authorized_keys"

cat > "$STATE/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $STATE/ssh_host_ed25519_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
Subsystem sftp internal-sftp
CONF
/usr/sbin/sshd -t -f "$STATE/sshd_config" || die "sshd_config rejected"

# -D: do not daemonise (we keep its PID), -e: log to stderr (our log file).
nohup /usr/sbin/sshd -D -e -f "$STATE/sshd_config" > "$STATE/sshd.log" 2>&1 < /dev/null &
echo $! > "$STATE/sshd.pid"

cat > "$STATE/env" <<ENV
INFBRUSH_SSHD_HOST=127.0.0.1
INFBRUSH_SSHD_PORT=$PORT
INFBRUSH_SSHD_USER=root
INFBRUSH_SSHD_KEY=$STATE/id_ed25519
ENV

for ((i = 0; i < 100; i++)); do
    kill -0 "$(cat "$STATE/sshd.pid")" 2>/dev/null || { cat "$STATE/sshd.log" >&2; die "sshd exited"; }
    if ssh -q -p "$PORT" -i "$STATE/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 root@127.0.0.1 true 2>/dev/null; then
        log "sshd up on 127.0.0.1:$PORT (pid $(cat "$STATE/sshd.pid"), $(( $(date +%s) - t0 ))s); settings in $STATE/env"
        cat "$STATE/env"
        exit 0
    fi
    sleep 0.2
done
cat "$STATE/sshd.log" >&2
die "could not log in to 127.0.0.1:$PORT with the generated key"
