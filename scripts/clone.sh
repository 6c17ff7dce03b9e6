#!/usr/bin/env bash
# The tutorial's last part: a team member clones the repository the walkthrough pushed to
# /remote/git-repo and pulls the data of every tag from the remote /remote/repro-cache.
# Runs in a fresh environment container (./start_environment.sh clone) in /home/repro.
set -euo pipefail
# One stream: without a terminal, docker would deliver stdout and stderr out of order.
exec 2>&1

home=${REPRO_CLONE_HOME:-/home/repro}
remote=${REPRO_REMOTE_DIR:-/remote}

section() { printf '\n### %s\n' "$*"; }
# show ARG…: the command as one would type it, quoting the arguments that need it.
show() {
    local arg line='$$'
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $arg"; else line+=" '${arg//\'/\'\\\'\'}'"; fi
    done
    printf '%s\n' "$line"
}
run() { show "$@"; "$@"; }
run_fails() {
    show "$@"
    if "$@"; then
        echo "clone: error: '$*' was expected to fail" >&2
        exit 1
    fi
}
trap 'echo "clone: error: the command above failed (exit $?); stopping" >&2' ERR

[ -d "$remote/git-repo" ] ||
    { echo "clone: error: $remote/git-repo does not exist; run ./start_environment.sh walkthrough first" >&2; exit 1; }

section "Clone and pull"
run cd "$home"
# walkthrough-cloned is a fresh volume (stages must run on a mount): git clones into it when empty.
if [ -n "$(ls -A walkthrough-cloned 2>/dev/null)" ]; then
    find walkthrough-cloned -mindepth 1 -maxdepth 1 -exec rm -rf {} +
fi
run git clone -q "$remote/git-repo" walkthrough-cloned
run cd walkthrough-cloned
branch=$(git symbolic-ref --short HEAD)
run_fails ls data
run repro pull -T
run ls data

section "Every version, from the remote"
for tag in $(git tag --list | sort -V); do
    run git checkout -q "$tag"
    run repro checkout
    if [ -d data ]; then
        printf '%s: %s images in data/, model/metrics.json: %s\n' "$tag" \
            "$(find data -type f | wc -l)" "$(cat model/metrics.json 2>/dev/null || echo none)"
    else
        printf '%s: no data/\n' "$tag"
    fi
done
run git checkout -q "$branch"
run repro checkout
run repro status
run repro metrics show -T --json
