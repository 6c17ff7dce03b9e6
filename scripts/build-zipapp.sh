#!/usr/bin/env bash
# Build dist/repro.pyz: repro and its runtime dependencies in one shiv zipapp that runs as
# `python3 repro.pyz …` on any host with Python >= 3.10 and git.
#
#   scripts/build-zipapp.sh            (PYTHON=python3.12 to build with another interpreter)
#
# Reproducible: the same checkout gives the same bytes. Every dependency file is pinned by
# sha256 (scripts/zipapp-requirements.txt, and scripts/zipapp-build-requirements.txt for the
# build tools), wheels are unpacked rather than pip-installed (no host paths, no pip version in
# the output), file modes are normalised, and shiv stamps every entry with SOURCE_DATE_EPOCH.
# Downloads are kept in build/zipapp/ and reused, so a rebuild needs no network.
set -euo pipefail

die() { echo "build-zipapp: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
requirements=$root/scripts/zipapp-requirements.txt
build_requirements=$root/scripts/zipapp-build-requirements.txt
work=$root/build/zipapp
tools=$work/tools
wheelhouse=$work/wheelhouse
output=$root/dist/repro.pyz

# 1980-01-01, the earliest time a zip entry can carry; override to stamp a release date.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
# Keep Python from writing .pyc files next to the sources we are about to pack.
export PYTHONDONTWRITEBYTECODE=1

command -v "$python" >/dev/null 2>&1 || die "$python not found; set PYTHON to a Python >= 3.10"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$python is older than 3.10; set PYTHON to a Python >= 3.10"
"$python" -m pip --version >/dev/null 2>&1 ||
    die "pip is not available for $python (Debian/Ubuntu: apt-get install python3-pip)"

mkdir -p "$work" "$wheelhouse" "$root/dist"
stage=$(mktemp -d "${TMPDIR:-/tmp}/repro-zipapp.XXXXXX")
trap 'rm -rf "$stage"' EXIT
log=$work/build.log
: >"$log"

# Run a noisy build step with its output in the log; show the log's tail when it fails.
quietly() {
    if ! "$@" >>"$log" 2>&1; then
        tail -15 "$log" >&2
        return 1
    fi
}

# 1. Build tools, pinned, in their own folder (never inside the zipapp).
stamp=$(sha256sum "$build_requirements" | cut -c1-16)
if [ "$(cat "$tools/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$tools"
    quietly "$python" -m pip install --quiet --root-user-action=ignore --target "$tools" --no-compile --no-deps --require-hashes \
        --only-binary :all: -r "$build_requirements" ||
        die "cannot install the build tools from $build_requirements (is PyPI reachable?)"
    echo "$stamp" >"$tools/.stamp"
fi
pip_tools() { PYTHONPATH=$tools "$python" -m pip "$@"; }

# 2. Runtime dependencies: from the local wheelhouse when it has them all, else from the index.
# --no-build-isolation: PyYAML's sdist metadata is prepared with the pinned setuptools.
download=(download --quiet --no-deps --require-hashes --no-build-isolation
          --only-binary :all: --no-binary pyyaml -r "$requirements" -d "$stage/downloads")
if ! pip_tools "${download[@]}" --no-index --find-links "$wheelhouse" >/dev/null 2>&1; then
    echo "build-zipapp: downloading pinned dependencies"
    quietly pip_tools "${download[@]}" --find-links "$wheelhouse" ||
        die "cannot download the pinned dependencies in $requirements (is PyPI reachable?)"
fi
cp -n "$stage/downloads"/* "$wheelhouse/"

# 3. PyYAML without its C extension, retagged py3-none-any: pure Python runs on any host.
mkdir -p "$stage/wheels"
PYYAML_FORCE_LIBYAML=0 quietly pip_tools wheel --no-deps --no-build-isolation --no-cache-dir \
    --no-index -w "$stage/pyyaml" "$stage"/downloads/pyyaml-*.tar.gz ||
    die "building a pure-Python PyYAML wheel failed"
PYTHONPATH=$tools quietly "$python" -m wheel tags --remove --python-tag py3 --abi-tag none \
    --platform-tag any "$stage"/pyyaml/*.whl
mv "$stage"/pyyaml/*-py3-none-any.whl "$stage/wheels/"
if "$python" -m zipfile -l "$stage"/wheels/pyyaml-*.whl | grep -q '\.so '; then
    die "the PyYAML wheel contains a compiled extension"
fi
mv "$stage"/downloads/*.whl "$stage/wheels/"

# 4. repro itself, built from a copy of the sources so the checkout gets no build/ or egg-info.
mkdir -p "$stage/src"
cp "$root/pyproject.toml" "$stage/src/"
if [ -f "$root/README.md" ]; then cp "$root/README.md" "$stage/src/"; else : >"$stage/src/README.md"; fi
for extra in LICENSE LICENSE.txt; do
    if [ -f "$root/$extra" ]; then cp "$root/$extra" "$stage/src/"; fi
done
tar -C "$root" --exclude=__pycache__ --exclude='*.pyc' -cf - repro | tar -C "$stage/src" -xf -
quietly pip_tools wheel --no-deps --no-build-isolation --no-cache-dir --no-index \
    -w "$stage/wheels" "$stage/src" || die "building the repro wheel failed"

# 5. Unpack every wheel into one site-packages. A wheel's .data/purelib belongs there too;
# its scripts (console entry points with this host's interpreter path) do not.
"$python" - "$stage/site" "$stage"/wheels/*.whl <<'EOF'
import shutil, sys, zipfile
from pathlib import Path

site = Path(sys.argv[1])
for wheel in sorted(sys.argv[2:]):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
for data in sorted(site.glob("*.data")):
    for scheme in ("purelib", "platlib"):
        if (data / scheme).is_dir():
            shutil.copytree(data / scheme, site, dirs_exist_ok=True)
    shutil.rmtree(data)
EOF
# shiv records each file's mode: make them independent of this shell's umask.
find "$stage/site" "$tools/shiv/bootstrap" -type d -exec chmod 0755 {} +
find "$stage/site" "$tools/shiv/bootstrap" -type f -exec chmod 0644 {} +

# 6. The zipapp. shiv lists its bootstrap package in directory order, which differs between
# filesystems; sorting it here is the one thing shiv's --reproducible leaves out.
PYTHONPATH=$tools quietly "$python" -c '
import shiv.builder as builder
unsorted = builder.iter_package_files
builder.iter_package_files = lambda package: sorted(unsorted(package), key=lambda item: item[1])
from shiv.cli import main
main()' \
    --site-packages "$stage/site" --reproducible --compressed \
    --entry-point repro.cli:main --python '/usr/bin/env python3' \
    --output-file "$output.tmp" || die "shiv failed"
mv "$output.tmp" "$output"

size=$(stat -c %s "$output")
echo "build-zipapp: $output ($((size / 1024)) KiB, sha256 $(sha256sum "$output" | cut -c1-16)…)"
