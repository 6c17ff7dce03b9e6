"""dist/repro.pyz: built reproducibly by scripts/build-zipapp.sh, runs with any Python >= 3.10.

On the host, and in containers with Debian bookworm's Python 3.11 and trixie's 3.13 (base
images made by docker/base/build-base.sh: pulled where a registry answers, else debootstrap).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e.e2e_helpers import explain, run_script

import repro

pytestmark = pytest.mark.slow

# A non-root user with no home of its own, no network: a plain CI container.
DOCKER_RUN = ["docker", "run", "--rm", "-i", "--network", "none", "-u", "1000:1000"]
# A user's first session: a git repository, repro init, some data, add, status.
SESSION = """
set -eu
export HOME=/tmp GIT_AUTHOR_NAME=t GIT_COMMITTER_NAME=t EMAIL=t@example.invalid
cat >/tmp/repro.pyz
python3 --version
python3 /tmp/repro.pyz --version
mkdir /tmp/project && cd /tmp/project
git init -q
python3 /tmp/repro.pyz init
echo hello >greeting.txt
python3 /tmp/repro.pyz add greeting.txt
cat greeting.txt.repro
python3 /tmp/repro.pyz status
"""


def test_same_sources_give_the_same_bytes(zipapp: Path, tmp_path: Path) -> None:
    first = hashlib.sha256(zipapp.read_bytes()).hexdigest()
    # Another temporary folder and a stricter umask must not show in the output.
    result = run_script(
        "bash",
        "-c",
        "umask 077 && exec scripts/build-zipapp.sh",
        timeout=15 * 60,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, explain(result)
    assert hashlib.sha256(zipapp.read_bytes()).hexdigest() == first


def test_runs_on_the_host(zipapp: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}
    result = run_script("python3", zipapp, "--version", timeout=120, env=env)
    assert result.returncode == 0, explain(result)
    assert result.stdout.strip() == f"repro {repro.__version__}"


@pytest.mark.docker
@pytest.mark.parametrize(("suite", "python"), [("bookworm", "3.11"), ("trixie", "3.13")])
def test_runs_in_debian(
    zipapp: Path, python_image: Callable[[str], str], suite: str, python: str
) -> None:
    image = python_image(suite)
    # The zipapp travels on stdin: no bind mount, so this also works when the tests run in a
    # container that talks to the host's engine.
    result = subprocess.run(
        [*DOCKER_RUN, image, "sh", "-c", SESSION],
        input=zipapp.read_bytes(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    assert f"Python {python}." in out
    assert f"repro {repro.__version__}" in out
    assert "path: greeting.txt" in out
    assert "md5: b1946ac92492d2347c6235b4d2611184" in out  # md5sum of "hello\n"


# A pipeline driven from inside the container: repro talks to the host's engine through the
# socket and finds its own bind mount to hand stage containers the host path of the project.
PIPELINE = """
set -eu
export HOME=/tmp GIT_AUTHOR_NAME=t GIT_COMMITTER_NAME=t EMAIL=t@example.invalid
cat >/tmp/repro.pyz
cd /work
git init -q
python3 /tmp/repro.pyz init --image repro-test-busybox:latest
echo 3 >n.txt
python3 /tmp/repro.pyz run -d n.txt -o out.txt 'seq 1 $(cat n.txt) > out.txt'
python3 /tmp/repro.pyz repro
echo 4 >n.txt
python3 /tmp/repro.pyz repro
python3 /tmp/repro.pyz status
printf '[train]\nlr = 0.1\n' >p.toml
python3 /tmp/repro.pyz run -n scaled -p p.toml:train.lr -o lr.txt 'grep lr p.toml > lr.txt'
git add -A && git commit -qm pipeline
python3 /tmp/repro.pyz exp run -S p.toml:train.lr=0.2 -n faster
python3 /tmp/repro.pyz exp show --csv
"""


@pytest.mark.docker
@pytest.mark.parametrize(("suite", "python"), [("bookworm", "3.11"), ("trixie", "3.13")])
def test_runs_a_pipeline_in_debian(
    zipapp: Path,
    python_image: Callable[[str], str],
    suite: str,
    python: str,
    docker_client: object,  # builds the busybox stage image
) -> None:
    image = python_image(suite)
    # Not under pytest's tmp_path: that is private to root, and the container runs as 1000.
    work = Path(tempfile.mkdtemp(prefix="repro-pyz-", dir="/tmp"))
    os.chown(work, 1000, 1000)
    socket = "/var/run/docker.sock"
    try:
        result = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "-u",
                "1000:1000",
                "--group-add",
                str(os.stat(socket).st_gid),
                "-v",
                f"{socket}:{socket}",
                "-v",
                f"{work}:/work",
                image,
                "sh",
                "-c",
                PIPELINE,
            ],
            input=zipapp.read_bytes(),
            capture_output=True,
            timeout=300,
            check=False,
        )
        out = result.stdout.decode() + result.stderr.decode()
        assert result.returncode == 0, out
        assert "Pipeline is up to date. Nothing to reproduce." in out
        assert "Reproducing 'out.txt.repro'" in out
        assert (work / "out.txt").read_text() == "1\n2\n3\n4\n"
        assert "Data and pipelines are up to date." in out
        # A TOML param (tomli, tomli-w bundled), a repro.yaml stage, an experiment's child.
        assert (work / "lr.txt").read_text() == "lr = 0.2\n"
        assert "faster," in out and "0.2" in out
    finally:
        shutil.rmtree(work, ignore_errors=True)
