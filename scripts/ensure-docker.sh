#!/usr/bin/env bash
# Make sure a Docker engine answers. Sourced or executed:
#   scripts/ensure-docker.sh            -> prints "started <pid>" when it started one, "running" otherwise
# When no engine answers it installs Debian's docker.io if absent (as root) and starts a private
# dockerd in the background; the caller stops it with scripts/stop-docker.sh if it wants.
set -euo pipefail

log=${REPRO_DOCKERD_LOG:-/tmp/repro-dockerd.log}
pidfile=${REPRO_DOCKERD_PIDFILE:-/tmp/repro-dockerd.pid}

if docker info >/dev/null 2>&1; then
    echo running
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: no Docker engine answers and dockerd is not installed; install Docker (or run as root so this script can apt-get install docker.io)" >&2
        exit 1
    fi
    echo "installing docker.io from Debian..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q docker.io >/dev/null
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
