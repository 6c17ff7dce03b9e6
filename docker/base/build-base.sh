#!/usr/bin/env bash
# Produce the local image repro-base:SUITE (default bookworm), equivalent to debian:SUITE-slim.
#
#   docker/base/build-base.sh [--force] [SUITE]
#
# On a host that reaches a registry this is `docker pull debian:SUITE-slim` + tag. Where no
# registry answers (the sandboxed hosts this project is built on) it bootstraps a minimal Debian
# with debootstrap from an apt mirror (plain http is fine: apt verifies the Release signatures
# with the host's debian-archive-keyring) and `docker import`s it. Needs root for debootstrap.
#
# Environment:
#   REPRO_DEBIAN_MIRROR           Debian mirror (default http://deb.debian.org/debian)
#   REPRO_DEBIAN_SECURITY_MIRROR  security mirror (default http://deb.debian.org/debian-security)
#   REPRO_BASE_NO_PULL=1          skip the registry attempt and always debootstrap
set -euo pipefail

die() { echo "build-base: error: $*" >&2; exit 1; }

force=0
suite=bookworm
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $arg (usage: build-base.sh [--force] [SUITE])" ;;
        *) suite=$arg ;;
    esac
done

image="repro-base:$suite"
mirror=${REPRO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${REPRO_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/ensure-docker.sh first"

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "build-base: $image exists, skipping (use --force to rebuild)"
    exit 0
fi

if [ "${REPRO_BASE_NO_PULL:-0}" != 1 ]; then
    # A registry that does not answer fails fast; a slow one is bounded by the timeout.
    if timeout 300 docker pull -q "debian:$suite-slim" >/dev/null 2>&1; then
        docker tag "debian:$suite-slim" "$image"
        echo "build-base: $image <- debian:$suite-slim (pulled)"
        exit 0
    fi
    echo "build-base: cannot pull debian:$suite-slim; bootstrapping $suite from $mirror"
fi

[ "$(id -u)" = 0 ] || die "debootstrap needs root; run as root, or on a host that can pull debian:$suite-slim"
# A fresh host has no debootstrap: install it (we are root here), as scripts/test.sh does.
"$(dirname "${BASH_SOURCE[0]}")/../../scripts/ensure-tools.sh" debootstrap

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/repro-base-$suite.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT

if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    tail -5 "$rootfs.log" >&2
    die "debootstrap $suite from $mirror failed (full log: $rootfs.log); set REPRO_DEBIAN_MIRROR to a reachable mirror"
fi
rm -f "$rootfs.log"

# What debian:SUITE-slim does on top of a minbase bootstrap (debuerreotype's slimify and
# docker tweaks): the same sources as the official image, no docs/man/locales, apt caches off.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
# Drop what the excludes above would have kept out, keeping copyright files.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* 2>/dev/null || true
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history 2>/dev/null || true
# The host's name and resolver leak in through debootstrap; the engine provides its own.
: >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/resolv.conf"

tar --numeric-owner --xattrs -C "$rootfs" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase $suite $mirror" \
        - "$image" >/dev/null
echo "build-base: $image <- debootstrap $suite ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
