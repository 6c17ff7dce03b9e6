"""repro inside a container that drives the host's engine (the walkthrough, CI runners).

The stage containers are started by the host's engine, so repro must hand it host paths: it
finds the mount of its own container (bind or volume) that holds the project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TEST_IMAGE

if TYPE_CHECKING:
    import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ENV_IMAGE = "repro-env:latest"
SOCKET = "/var/run/docker.sock"
SCRIPT = (
    "set -e; cd {path}; git init -q; git config user.email t@t; git config user.name t; "
    f"repro init --image {TEST_IMAGE}; echo hello > in.txt; "
    "repro run -d in.txt -o out.txt 'cat in.txt in.txt > out.txt'; repro status"
)


@pytest.fixture(scope="module")
def env_image(docker_client: docker.DockerClient) -> str:
    """The walkthrough environment (python, git, the zipapp as `repro`), built from this tree."""
    result = subprocess.run(
        [ROOT / "scripts" / "build-images.sh"],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return ENV_IMAGE


@pytest.fixture
def host_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="repro-incontainer-", dir="/tmp"))
    os.chown(path, 1000, 1000)  # the environment's user
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(image: str, mounts: list[str], script: str) -> subprocess.CompletedProcess[str]:
    gid = os.stat(SOCKET).st_gid
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--group-add",
            str(gid),
            "-v",
            f"{SOCKET}:{SOCKET}",
            *[arg for mount in mounts for arg in ("-v", mount)],
            image,
            "bash",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_project_on_a_bind_mount_at_another_path(env_image: str, host_dir: Path) -> None:
    result = _run(env_image, [f"{host_dir}:/work/proj"], SCRIPT.format(path="/work/proj"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (host_dir / "out.txt").read_text() == "hello\nhello\n"
    assert "Data and pipelines are up to date." in result.stdout


def test_project_on_a_named_volume(env_image: str, docker_client: docker.DockerClient) -> None:
    volume = docker_client.volumes.create()
    try:
        # hand the fresh volume to the environment's user first
        subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--user",
                "0",
                "-v",
                f"{volume.name}:/v",
                "--entrypoint",
                "chown",
                env_image,
                "repro:repro",
                "/v",
            ],
            check=True,
        )
        result = _run(
            env_image,
            [f"{volume.name}:/data/proj"],
            SCRIPT.format(path="/data/proj") + "; cat out.txt",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.endswith("hello\nhello\n")
    finally:
        volume.remove(force=True)


def test_project_on_no_mount_is_a_clear_error(env_image: str) -> None:
    result = _run(env_image, [], SCRIPT.format(path="$(mktemp -d)"))
    assert result.returncode == 1
    assert "lies on no mount" in result.stderr
    assert "Traceback" not in result.stderr
