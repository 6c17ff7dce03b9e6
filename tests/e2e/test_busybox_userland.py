"""The zipapp on a BusyBox userland: a Debian container whose find, sh and core tools are
BusyBox's (no GNU find, no bash) runs the pipeline's core against the host's engine.

The image is repro-pytest-bookworm (python3 and git) with every tool BusyBox provides
replaced by a link to the host's static busybox, and bash removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e.e2e_helpers import build_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "repro-test-anyhost-busybox:latest"
# Each applet BusyBox has stands in for the Debian tool of that name (dpkg and apt stay).
DOCKERFILE = """
FROM repro-pytest-bookworm:latest
COPY busybox /usr/local/bin/busybox
RUN ["/usr/local/bin/busybox", "sh", "-c", "for tool in $(busybox --list); do \
  for dir in /usr/bin /usr/sbin; do \
    case $tool in dpkg*|busybox) continue;; esac; \
    [ -e $dir/$tool ] && busybox ln -sf /usr/local/bin/busybox $dir/$tool; \
  done; done; busybox rm -f /usr/bin/bash /usr/bin/rbash; busybox true"]
"""
# The pipeline tests' core, from inside: repro hands the host's engine its own bind mount.
PIPELINE = """
set -eu
export HOME=/tmp GIT_AUTHOR_NAME=t GIT_COMMITTER_NAME=t EMAIL=t@example.invalid
cat >/tmp/repro.pyz
if command -v bash; then echo "bash is here"; exit 9; fi
if find /tmp -maxdepth 0 -printf x 2>/dev/null; then echo "find has -printf"; exit 9; fi
for tool in find sh ls; do readlink /usr/bin/$tool; done
repro() { python3 /tmp/repro.pyz "$@"; }
cd /work/project
git init -q
repro init --image repro-test-busybox:latest
mkdir data && echo 1 >data/a && echo 2 >data/b
repro add data
repro run -d data -o total.txt 'cat data/a data/b > total.txt'
repro status
repro status
rm data/b && echo 3 >data/b  # linked read-only from the cache
repro status || echo "status: changed"
repro add data
repro repro
repro status
repro remote add -d store /work/store
git add -A && git commit -qm pipeline
repro push
rm -rf .repro/cache data total.txt
repro pull
repro checkout
repro status
echo total: $(cat total.txt)
"""


@pytest.fixture(scope="module")
def busybox_image(
    python_image: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    python_image("bookworm")
    busybox = shutil.which("busybox")
    assert busybox is not None, "busybox is missing: scripts/ensure-tools.sh busybox"
    context = tmp_path_factory.mktemp("busybox-image")
    shutil.copy(busybox, context / "busybox")
    return build_image(IMAGE, DOCKERFILE, context)


def test_the_pipeline_runs_on_a_busybox_userland(
    zipapp: Path,
    busybox_image: str,
    docker_client: object,  # builds the busybox stage image
) -> None:
    # Not under pytest's tmp_path: that is private to root, and the container runs as 1000.
    work = Path(tempfile.mkdtemp(prefix="repro-busybox-", dir="/tmp"))
    (work / "project").mkdir()
    for path in (work, work / "project"):
        os.chown(path, 1000, 1000)
    socket = "/var/run/docker.sock"
    try:
        result = subprocess.run(
            [
                "docker", "run", "--rm", "-i", "-u", "1000:1000",
                "--group-add", str(os.stat(socket).st_gid),
                "-v", f"{socket}:{socket}", "-v", f"{work}:/work",
                busybox_image, "sh", "-c", PIPELINE,
            ],
            input=zipapp.read_bytes(),
            capture_output=True,
            timeout=300,
            check=False,
        )  # fmt: skip
        out = result.stdout.decode() + result.stderr.decode()
        assert result.returncode == 0, out
        assert out.count("/usr/local/bin/busybox") == 3, out  # find, sh and ls are BusyBox's
        assert "status: changed" in out and "Dependency 'data' of 'total.txt.repro' changed" in out
        assert "Reproducing 'total.txt.repro'" in out
        assert "total: 1 3" in out
        assert (work / "project" / "total.txt").read_text() == "1\n3\n"
        assert out.rstrip().endswith("total: 1 3")
    finally:
        shutil.rmtree(work, ignore_errors=True)
