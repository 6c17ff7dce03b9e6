#!/usr/bin/env bash
# Start the walkthrough environment: a fresh container of repro-env:latest, as the non-root
# user `repro` in /home/repro/walkthrough, driving this host's Docker engine through its socket.
#
#   ./start_environment.sh [walkthrough] [clone] [bash]
#
#   walkthrough  run /home/repro/scripts/walkthrough.sh (the tutorial: init, three stages,
#                tags 0.0-0.3, metrics, push to the fake remote /remote)
#   clone        then, in another fresh container, /home/repro/scripts/clone.sh (clone the
#                pushed repository and pull every tag's data)
#   bash         leave an interactive shell in the (last) container; the default when no
#                argument is given
#
# Installs the Debian packages it needs when they are missing (scripts/ensure-tools.sh: as root;
# otherwise it names the apt-get command), brings up a Docker engine when none answers
# (scripts/ensure-docker.sh) and builds what is missing (scripts/build-images.sh). /remote is the named volume `repro-remote`, which outlives
# containers like the tutorial's remote storage; the project folders are fresh anonymous
# volumes, because repro hands stage containers the project through a mount of this container.
# The exit code is that of the last script or shell.
set -euo pipefail

die() { echo "start_environment: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=repro-env:latest
volume=repro-remote

walkthrough=0 clone=0 shell=0
for arg in "$@"; do
    case $arg in
        walkthrough) walkthrough=1 ;;
        clone) clone=1 ;;
        bash) shell=1 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (usage: ./start_environment.sh [walkthrough] [clone] [bash])" ;;
    esac
done
if [ "$walkthrough$clone$shell" = 000 ]; then
    shell=1
fi

# What a fresh Debian host lacks (docker.io; pip, which builds the zipapp), installed as root
# or named in one line otherwise; build-base.sh asks for debootstrap when it needs it.
"$root/scripts/ensure-tools.sh" docker pip
"$root/scripts/ensure-docker.sh" >/dev/null
"$root/scripts/build-images.sh"

# The engine's socket, as this host sees it, and the group that may use it.
socket=/var/run/docker.sock
case ${DOCKER_HOST:-} in
    "") ;;
    unix://*) socket=${DOCKER_HOST#unix://} ;;
    *) die "DOCKER_HOST=$DOCKER_HOST is not a unix socket; the environment needs the engine's socket to mount" ;;
esac
[ -S "$socket" ] || die "$socket is not a socket; is the Docker engine running?"
socket_gid=$(stat -c %g "$socket")

# A volume created by something else may be owned by root: hand it to repro (uid 1000).
docker volume create "$volume" >/dev/null
docker run --rm --user 0 --network none -v "$volume:/remote" --entrypoint chown "$image" \
    repro:repro /remote

tty=()
if [ -t 0 ] && [ -t 1 ]; then
    tty=(-it)
elif [ "$shell" = 1 ]; then
    tty=(-i)  # a shell without a terminal reads its commands from stdin
fi

# start CONTAINER-COMMAND…: one fresh container; the project folders are anonymous volumes
# that --rm deletes with it.
start() {
    docker run --rm "${tty[@]}" \
        --user repro \
        --group-add "$socket_gid" \
        -v "$socket:/var/run/docker.sock" \
        -v "$volume:/remote" \
        -v /home/repro/walkthrough \
        -v /home/repro/walkthrough-cloned \
        -w /home/repro/walkthrough \
        "$image" "$@"
}

# command_for SCRIPT DIR: the script, then (with `bash`) a shell in DIR of the same container.
command_for() {
    if [ "$shell" = 1 ]; then
        echo "$1; status=\$?; echo \"($1 exited with \$status)\"; cd $2 && exec bash -l"
    else
        echo "$1"
    fi
}

status=0
if [ "$walkthrough" = 1 ]; then
    walk_shell=$shell
    [ "$clone" = 1 ] && shell=0  # the shell goes to the clone's container, which comes last
    start bash -c "$(command_for /home/repro/scripts/walkthrough.sh /home/repro/walkthrough)" || status=$?
    shell=$walk_shell
    [ "$status" = 0 ] || exit "$status"
fi
if [ "$clone" = 1 ]; then
    start bash -c "$(command_for /home/repro/scripts/clone.sh /home/repro/walkthrough-cloned)" || status=$?
    exit "$status"
fi
if [ "$walkthrough" = 0 ]; then
    start bash -l || status=$?
fi
exit "$status"
