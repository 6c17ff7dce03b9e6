#!/usr/bin/env bash
# Make sure a Docker engine answers. Sourced or executed:
#   scripts/ensure-docker.sh            -> prints "started <pid>" when it started one, "running" otherwise
# When no engine answers it installs Debian's docker.io if absent (as root, ensure-tools.sh)
# and starts a private dockerd in the background; the caller stops it with scripts/stop-docker.sh if it wants.
set -euo pipefail

log=${REPRO_DOCKERD_LOG:-/tmp/repro-dockerd.log}
pidfile=${REPRO_DOCKERD_PIDFILE:-/tmp/repro-dockerd.pid}

if docker info >/dev/null 2>&1; then
    echo running
    exit 0
fi

# The docker CLI and dockerd: Debian's docker.io, installed as root (else one line saying how).
"$(dirname "${BASH_SOURCE[0]}")/ensure-tools.sh" docker

socket=/var/run/docker.sock
case ${DOCKER_HOST:-} in unix://*) socket=${DOCKER_HOST#unix://} ;; esac
if [ -S "$socket" ] && [ ! -r "$socket" -o ! -w "$socket" ]; then
    echo "error: permission denied on $socket: add yourself to the docker group (sudo usermod -aG docker \$USER, then log in again)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "error: no Docker engine answers at ${DOCKER_HOST:-/var/run/docker.sock} and only root can start one; start Docker and retry" >&2
    exit 1
fi

# Reuse the default socket so that every client (docker CLI, docker-py) finds it without
# DOCKER_HOST. The iptables=false/bridge setup keeps it working in sandboxes without netfilter.
nohup dockerd --host=unix:///var/run/docker.sock >"$log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 150); do
    if docker info >/dev/null 2>&1; then
        echo "started $(cat "$pidfile")"
        exit 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "error: dockerd exited at start; see $log" >&2
        tail -5 "$log" >&2 || true
        exit 1
    fi
    sleep 0.2
done
echo "error: dockerd did not answer within 30 s; see $log" >&2
exit 1
