#!/usr/bin/env bash
# Stop the dockerd that ensure-docker.sh started (no-op when it started none).
pidfile=${REPRO_DOCKERD_PIDFILE:-/tmp/repro-dockerd.pid}
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$pidfile"
