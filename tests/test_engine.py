"""Asking the Docker engine (issue 17, items 5 and 9): one HTTP request over its socket for
`repro status`, errors that say what to do (permission denied), and `repro doctor`'s exit code.
A real engine throughout; the unprivileged user is real too (a forked child that drops to
nobody, since root's python may be unreadable to nobody)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import Project, build_busybox_image

from repro import host
from repro.errors import ReproError
from repro.runners.docker import engine

if TYPE_CHECKING:
    import docker

DRIFT = "repro-newcomer-drift:latest"
SOCKET = "/var/run/docker.sock"


@pytest.fixture
def drift_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """A tag of this test's own, free to be moved to another image."""
    image_id = build_busybox_image(docker_client, DRIFT)
    yield image_id
    for image in docker_client.images.list(name=DRIFT.split(":")[0]):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True)


def _retag(docker_client: docker.DockerClient, tag: str) -> str:
    """Point ``tag`` at a new image (the old one plus an ENV): a user's rebuild."""
    container = docker_client.containers.create(tag, ["true"])
    try:
        repository, label = tag.split(":")
        container.commit(repository, label, changes=["ENV REBUILT=1"])
    finally:
        container.remove()
    return str(docker_client.images.get(tag).id)


def _pipeline(project: Project, image: str) -> None:
    """load -> train -> evaluate, each in ``image``, like the walkthrough."""
    project.write("config/load.json", '{"num_images": 3}\n')
    project.ok(
        "run",
        "-f",
        "load.repro",
        "--image",
        image,
        "-d",
        "config/load.json",
        "-o",
        "data",
        "mkdir -p data && cat config/load.json > data/images",
    )
    project.ok(
        "run",
        "-f",
        "train.repro",
        "--image",
        image,
        "-d",
        "data",
        "-o",
        "model.bin",
        "cat data/images data/images > model.bin",
    )
    project.ok(
        "run",
        "-f",
        "evaluate.repro",
        "--image",
        image,
        "-d",
        "model.bin",
        "-M",
        "metrics.json",
        'echo "{\\"acc\\": 0.5}" > metrics.json',
    )
    project.commit("pipeline")


def _status_process(project: Project) -> subprocess.CompletedProcess[str]:
    """`python -m repro status` with its imports listed on stderr."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    return subprocess.run(
        [sys.executable, "-m", "repro", "status"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _imported(stderr: str, module: str) -> bool:
    """Whether -X importtime's report lists ``module`` (at any depth)."""
    return re.search(rf"^import time:.*\| +{re.escape(module)}$", stderr, re.MULTILINE) is not None


# -- the socket question --------------------------------------------------------------------


def test_image_id_is_what_docker_py_says(
    docker_client: docker.DockerClient, drift_image: str
) -> None:
    assert engine.image_id(DRIFT) == drift_image == docker_client.images.get(DRIFT).id
    assert engine.image_id("repro-newcomer-absent:none") is None
    new_id = _retag(docker_client, DRIFT)
    assert new_id != drift_image and engine.image_id(DRIFT) == new_id


def test_no_engine_at_a_unix_socket_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(ReproError, match="no Docker engine answers at unix://.*start Docker"):
        engine.image_id("anything:latest")


def test_permission_denied_says_join_the_docker_group(docker_client: docker.DockerClient) -> None:
    """As nobody, for real: the socket answers root and its group only."""
    mode = os.stat(SOCKET).st_mode
    assert not mode & 0o006, "the engine's socket is open to everyone: nothing to test"
    from repro.cli import main
    from repro.runners.docker.client import import_docker
    from repro.runners.docker.runner import DockerRunner

    import_docker()  # the modules the child needs, loaded while they are readable
    import repro.cli.commands.doctor  # noqa: F401

    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - shared with the forked child
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            sys.stdout = sys.stderr = out
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.chdir("/")
            for ask in (lambda: engine.image_id("x:y"), lambda: DockerRunner().client):
                try:
                    ask()
                    print("ANSWERED")
                except ReproError as exc:
                    print(f"ERROR {exc}")
            code = main(["doctor"])
        finally:
            out.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    text = out.read()
    want = (
        f"ERROR permission denied on {SOCKET}: add yourself to the docker group "
        "(sudo usermod -aG docker $USER, then log in again)"
    )
    assert text.count(want) == 2, text  # the socket path and docker-py's alike
    assert "no Docker engine answers" not in text
    assert os.waitstatus_to_exitcode(status) == 1, text  # doctor: the engine is broken
    assert "Docker engine: unreachable (permission denied" in text


# -- status of a pipeline project ------------------------------------------------------------


def test_pipeline_status_asks_the_socket_not_docker_py(
    docker_project: Project,
    docker_client: docker.DockerClient,
    drift_image: str,
) -> None:
    project = docker_project
    _pipeline(project, DRIFT)
    memo = project.root / ".repro" / "tmp" / "status-clean"
    memo.unlink(missing_ok=True)
    full = _status_process(project)  # the full status: no memo yet
    assert full.returncode == 0, full.stderr
    assert "Data and pipelines are up to date." in full.stdout
    assert _imported(full.stderr, "repro.project")  # it did the full work...
    assert not _imported(full.stderr, "docker"), "docker-py was imported by status"
    assert memo.exists()  # ...and remembered the image's answer with the rest
    quick = _status_process(project)
    assert quick.returncode == 0, quick.stderr
    assert not _imported(quick.stderr, "repro.project")  # answered from the memo
    assert not _imported(quick.stderr, "docker")


def test_a_retagged_image_is_noticed_right_after_a_clean_status(
    docker_project: Project,
    docker_client: docker.DockerClient,
    drift_image: str,
) -> None:
    project = docker_project
    _pipeline(project, DRIFT)
    assert project.repro("status").code == 0
    assert project.repro("status").code == 0  # the memo's answer
    new_id = _retag(docker_client, DRIFT)
    done = _status_process(project)
    assert done.returncode == 1, done.stdout + done.stderr
    for stage in ("load.repro", "train.repro", "evaluate.repro"):
        assert f"Image of '{stage}' changed: {drift_image[:19]}… -> {new_id[:19]}…" in done.stdout


def test_without_an_engine_status_warns_and_judges_the_files(
    docker_project: Project, drift_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = docker_project
    _pipeline(project, DRIFT)
    assert project.repro("status").code == 0
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project.root}/no.sock")
    done = _status_process(project)
    assert done.returncode == 0, done.stderr  # files unchanged; the memo is not trusted alone
    assert "image drift not checked: no Docker engine answers" in done.stderr
    project.write("config/load.json", '{"num_images": 4}\n')
    done = _status_process(project)
    assert done.returncode == 1 and "Dependency 'config/load.json'" in done.stdout


# -- doctor ----------------------------------------------------------------------------------


def test_doctor_exits_0_when_everything_works(docker_project: Project, tmp_path: Path) -> None:
    project = docker_project
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    result = project.repro("doctor")
    assert result.code == 0, result.out + result.err
    assert "Docker engine: " in result.out and "unreachable" not in result.out
    assert "Remote store (default)" in result.out
    assert f"Host: {host.platform()}; Docker Engine runs stages natively" in result.out


def test_doctor_exits_1_without_an_engine(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project.root}/no.sock")
    result = project.repro("doctor")
    assert result.code == 1
    assert "Docker engine: unreachable (no Docker engine answers" in result.out
    assert "broken: the Docker engine" in result.err


def test_doctor_exits_1_on_an_unusable_cache(docker_project: Project, tmp_path: Path) -> None:
    project = docker_project
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    project.ok("config", "--local", "cache.dir", str(blocker / "cache"))
    result = project.repro("doctor")
    assert result.code == 1
    assert "Cache: unusable" in result.out and "broken: the cache" in result.err


def test_doctor_exits_1_on_a_misconfigured_remote(docker_project: Project) -> None:
    project = docker_project
    config = project.root / ".repro" / "config"
    section = '[remote "store"]\n\turl = s3://bucket/x\n\tcolour = blue\n'
    config.write_text(config.read_text() + section)
    result = project.repro("doctor")
    assert result.code == 1, result.out
    assert "Remote store: misconfigured (unknown option 'colour'" in result.out
    assert "broken: remote 'store'" in result.err
