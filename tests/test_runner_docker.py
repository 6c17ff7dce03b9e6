"""The Docker runner against a real engine: what it mounts, quiet(), and engine refusals."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TEST_IMAGE, Project

from repro.errors import ReproError
from repro.runners.docker.client import import_docker
from repro.runners.docker.runner import DockerRunner, mount_target
from repro.runners.spec import Resources, RunSpec

if TYPE_CHECKING:
    import docker


# -- what may be mounted -----------------------------------------------------------------------
def test_a_symlinked_parent_leading_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    os.symlink("/var/run", root / "sockdir")
    with pytest.raises(ReproError) as caught:
        mount_target(root, root / "sockdir" / "docker.sock")
    message = str(caught.value)
    assert "'sockdir/docker.sock'" in message and "'sockdir'" in message
    assert os.path.realpath("/var/run") in message and "\n" not in message


def test_a_symlink_leading_out_is_refused_even_to_a_plain_file(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", root / "data")
    with pytest.raises(ReproError, match="'data'.*it is a symlink leading out"):
        mount_target(root, root / "data")


def test_sockets_fifos_and_devices_are_never_mounted(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "engine.sock"))
    os.mkfifo(root / "pipe")
    os.symlink("/dev/null", root / "null")
    try:
        for name, kind in (("engine.sock", "socket"), ("pipe", "FIFO")):
            with pytest.raises(ReproError, match=f"'{name}'.*a {kind}"):
                mount_target(root, root / name)
        with pytest.raises(ReproError, match="'null'.*symlink"):
            mount_target(root, root / "null")
    finally:
        listener.close()


def test_a_path_climbing_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").write_text("x")
    with pytest.raises(ReproError, match="outside the project"):
        mount_target(root, root / "sub" / ".." / ".." / "outside")
    with pytest.raises(ReproError, match="outside the project"):
        mount_target(root, tmp_path / "outside")


def test_a_symlink_inside_mounts_its_real_target(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_text("x")
    os.symlink("real", root / "alias")
    assert mount_target(root, root / "alias" / "f") == root / "real" / "f"
    assert mount_target(root, root / "alias") == root / "real"
    assert mount_target(root, root / "real" / "f") == root / "real" / "f"
    assert mount_target(root, root / "missing") is None
    assert mount_target(root, root / "alias" / "missing") is None


def test_mounts_check_every_read_only_path(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    os.symlink("/var/run", root / "sockdir")
    spec = _spec(root, "true", read_only=(root / "sockdir" / "docker.sock",))
    with pytest.raises(ReproError, match="sockdir"):
        DockerRunner()._mounts(spec)


@pytest.mark.docker
def test_a_committed_link_to_the_engine_socket_is_never_mounted(
    docker_project: Project,
    docker_client: docker.DockerClient,
) -> None:
    project = docker_project
    os.symlink("/var/run", project.root / "sockdir")
    project.write(
        "b.repro",
        f"cmd: test -S sockdir/docker.sock && touch b.out\nimage:\n"
        f"  name: {TEST_IMAGE}\ndeps:\n- path: sockdir/docker.sock\nouts:\n"
        "- path: b.out\n  cache: true\n",
    )
    project.commit("a hostile stage")
    result = project.repro("repro", "b.repro")
    # Refused at load by the core, or at mount time by the runner: either way one line.
    assert result.code == 1, result.err
    assert "sockdir" in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (project.root / "b.out").exists()


# -- quiet() -------------------------------------------------------------------------------------
def _spec(root: Path, cmd: str, read_only: tuple[Path, ...] = ()) -> RunSpec:
    return RunSpec(
        "t.repro", cmd, TEST_IMAGE, root, root, "none", read_only, Resources(None, None, None)
    )


class _Stage:
    """A runner.run on a thread, as -j N runs stages."""

    def __init__(self, runner: DockerRunner, spec: RunSpec) -> None:
        self.error: BaseException | None = None
        self.code: int | None = None
        self._thread = threading.Thread(target=self._run, args=(runner, spec), daemon=True)
        self._thread.start()

    def _run(self, runner: DockerRunner, spec: RunSpec) -> None:
        try:
            self.code = runner.run(spec, lambda chunk: None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def join(self) -> None:
        self._thread.join(60)
        assert not self._thread.is_alive()


def _wait(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.mark.docker
def test_quiet_freezes_running_stages(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    root = docker_project.root
    runner = DockerRunner()
    ticks = root / "f"
    stage = _Stage(runner, _spec(root, "while true; do date +%s%N >> f; done"))
    _wait(lambda: _size(ticks) > 0, 60, "the stage never wrote")
    try:
        with runner.quiet():
            frozen = _size(ticks)
            for _ in range(5):
                time.sleep(0.1)  # observed, not waited for: the size must not move
                assert _size(ticks) == frozen, "a stage ran inside quiet()"
        _wait(lambda: _size(ticks) > frozen, 10, "the stage did not resume after quiet()")
    finally:
        runner.stop_all()
        stage.join()
    label = {"label": f"repro.project={root}"}
    assert docker_client.containers.list(all=True, filters=label) == []


@pytest.mark.docker
def test_no_stage_starts_inside_quiet(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    root = docker_project.root
    runner = DockerRunner()
    runner.reap(root)
    label = {"label": f"repro.project={root}"}
    with runner.quiet():
        stage = _Stage(runner, _spec(root, "touch started"))
        for _ in range(10):
            time.sleep(0.1)  # observed: nothing may be created meanwhile
            assert docker_client.containers.list(all=True, filters=label) == []
    stage.join()
    assert stage.error is None and stage.code == 0
    assert (root / "started").exists()


@pytest.mark.docker
def test_stop_all_removes_paused_containers(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    root = docker_project.root
    runner = DockerRunner()
    stage = _Stage(runner, _spec(root, "sleep 60"))
    label = {"label": f"repro.project={root}"}
    _wait(lambda: docker_client.containers.list(filters=label), 60, "the stage never started")
    with runner.quiet():
        assert [c.status for c in docker_client.containers.list(filters=label)] == ["paused"]
        runner.stop_all()  # Ctrl-C while the core checks the workspace
        assert docker_client.containers.list(all=True, filters=label) == []
    stage.join()
    # And a stopped runner starts nothing more.
    with pytest.raises(ReproError, match="stopped"):
        runner.run(_spec(root, "true"), lambda chunk: None)
    assert docker_client.containers.list(all=True, filters=label) == []


def test_quiet_with_nothing_running_asks_the_engine_nothing() -> None:
    runner = DockerRunner()
    with runner.quiet(), runner.quiet():
        pass
    assert runner._client is None


class _LaggingContainer:
    """A container as docker-py sees it while the engine's state lags: it still says running
    whatever ``reload`` asks, and its pause is refused with ``refusal``."""

    id = short_id = "c0ffee"
    status = "running"

    def __init__(self, refusal: str) -> None:
        self._refusal = refusal

    def pause(self) -> None:
        raise import_docker().errors.APIError(self._refusal)

    def reload(self) -> None:
        pass


@pytest.mark.parametrize(
    "refusal",
    [
        "Container c0ffee is not running",  # dockerd's words
        "Cannot pause container c0ffee: cannot pause a stopped container: unknown",  # containerd's
    ],
)
def test_a_stage_that_exited_as_quiet_began_is_not_a_failure(refusal: str) -> None:
    """A stage that ends as the workspace check begins: the engine refuses its pause while its
    state still says running (a race under load, not provoked at will: hence the stand-in)."""
    runner = DockerRunner()
    runner._running["c0ffee"] = _LaggingContainer(refusal)
    with runner.quiet():
        pass
    runner._running["c0ffee"] = _LaggingContainer("Cannot pause container c0ffee: out of memory")
    with pytest.raises(ReproError, match="could not pause stage container c0ffee"), runner.quiet():
        pass


# -- engine refusals -----------------------------------------------------------------------------
@pytest.mark.docker
def test_gpus_on_a_host_without_gpus_is_a_one_line_error(
    docker_project: Project,
    docker_client: docker.DockerClient,
) -> None:
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this engine has GPU support")
    project = docker_project
    result = project.repro("run", "--gpus", "1", "-o", "g", "touch g")
    assert result.code == 1, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "no GPU support" in lines[0] and "drop --gpus" in lines[0]
    assert not (project.root / "g.repro").exists()


@pytest.mark.docker
def test_resources_the_engine_refuses_are_a_one_line_error(docker_project: Project) -> None:
    project = docker_project
    too_many = str((os.cpu_count() or 1) + 64)
    result = project.repro("run", "--cpus", too_many, "-o", "r", "touch r")
    assert result.code == 1, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "refused to create" in lines[0] and "--cpus" in lines[0], lines
    assert not (project.root / "r.repro").exists()
    # Below the engine's minimum of 6 MiB, memory is refused before the engine is asked.
    result = project.repro("run", "--memory", "1m", "-o", "r", "touch r")
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "--memory" in lines[0] and "at least 6m" in lines[0], lines
    assert not (project.root / "r.repro").exists()
