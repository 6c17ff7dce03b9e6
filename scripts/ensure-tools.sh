#!/usr/bin/env bash
# Install the Debian packages behind the tools a command needs, when they are missing.
# Shared by scripts/test.sh, start_environment.sh and docker/base/build-base.sh, so that each
# meets a fresh host the same way.
#
#   scripts/ensure-tools.sh [--dry-run] TOOL…
#
# TOOL is one of: docker busybox chromium debootstrap git netns pip sshd. As root, the missing ones are
# installed with apt-get; otherwise the script stops with one line naming the apt-get command.
# --dry-run only prints "missing: PACKAGE…" (or nothing) and installs nothing.
# A tool is looked up in $REPRO_TOOLS_PATH (default: $PATH plus /usr/sbin and /sbin, where
# sshd and debootstrap live but a non-root PATH often does not look).
set -euo pipefail

die() { echo "ensure-tools: error: $*" >&2; exit 1; }

dry_run=0
tools=()
for arg in "$@"; do
    case $arg in
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $arg (usage: ensure-tools.sh [--dry-run] TOOL…)" ;;
        *) tools+=("$arg") ;;
    esac
done

search=${REPRO_TOOLS_PATH:-$PATH:/usr/sbin:/sbin}
found() { PATH=$search command -v "$1" >/dev/null 2>&1; }

missing=()
for tool in "${tools[@]}"; do
    case $tool in
        docker) found docker && found dockerd || missing+=(docker.io) ;;
        busybox) found busybox || missing+=(busybox-static) ;;
        debootstrap) found debootstrap || missing+=(debootstrap) ;;
        git) found git || missing+=(git) ;;
        sshd) found sshd || missing+=(openssh-server) ;;
        # tests/test_cluster.py starts each worker's dockerd in a network namespace of its own.
        netns) found ip && found nsenter || missing+=(iproute2 util-linux) ;;
        # tests/test_plots.py opens the plots page in it, headless and offline.
        chromium) found chromium || missing+=(chromium) ;;
        # build-images.sh downloads a pinned wheel with the host's pip (and its CA bundle).
        pip) found python3 && PATH=$search python3 -m pip --version >/dev/null 2>&1 ||
            missing+=(python3-pip) ;;
        *) die "unknown tool '$tool' (known: docker busybox chromium debootstrap git netns pip sshd)" ;;
    esac
done

[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$dry_run" = 1 ]; then
    echo "missing: ${missing[*]}"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    die "${missing[*]} missing; install with: sudo apt-get install -y ${missing[*]}"
fi
command -v apt-get >/dev/null 2>&1 ||
    die "${missing[*]} missing and apt-get is not available; install them with your package manager"
echo "ensure-tools: installing ${missing[*]} from Debian..." >&2
export DEBIAN_FRONTEND=noninteractive
log=${TMPDIR:-/tmp}/repro-ensure-tools.log
# apt's chatter (debconf, needrestart) goes to the log; its last lines show when it fails.
if ! apt-get update -q >"$log" 2>&1; then
    tail -5 "$log" >&2
    die "apt-get update failed (log: $log); is the Debian mirror reachable?"
fi
if ! apt-get install -y -q "${missing[@]}" >>"$log" 2>&1; then
    tail -5 "$log" >&2
    die "apt-get install ${missing[*]} failed (log: $log)"
fi
