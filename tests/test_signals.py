"""A repro ended by a signal leaves no container behind: SIGTERM and SIGHUP are handled like
Ctrl-C, and after kill -9 the reaper removes the containers within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import Project, start_stage

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker


# repro, made unable to run the interpreter again, so that the reaper is a forked copy of it.
FORKED_REAPER = (
    "import sys; from repro.runners.docker import reaper; "
    "reaper._exec = lambda *args: (_ for _ in ()).throw(PermissionError(13, 'private')); "
    "from repro.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _start_stage(
    project: Project,
    docker_client: docker.DockerClient,
    cmd: str = "sleep 60; touch out",
    forked: bool = False,
) -> subprocess.Popen[str]:
    args = ["-c", FORKED_REAPER] if forked else ["-m", "repro"]
    return start_stage(project, docker_client, cmd, args)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _reaper_of(pid: int) -> int:
    """The reaper repro started: its child running the reaper, or a forked copy of repro in
    a session of its own."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            forked = cmdline == own and os.getsid(int(entry)) == int(entry)
        except OSError:
            continue
        if forked or (b"repro.runners.docker.reaper" in cmdline and int(entry) in _children(pid)):
            return int(entry)
    pytest.fail(f"repro (pid {pid}) started no reaper")


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_until(condition: Callable[[], object], seconds: float, what: str) -> float:
    """Poll ``condition`` until true; how long it took. Fails after ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} after {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_and_remove_the_container(
    docker_project: Project,
    docker_client: docker.DockerClient,
    signum: int,
    code: int,
) -> None:
    project = docker_project
    proc = _start_stage(project, docker_client)
    reaper = _reaper_of(proc.pid)
    started = time.monotonic()
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - started < 15
    assert err.strip().splitlines()[-1] == f"interrupted ({signal.Signals(signum).name})"
    label = {"label": f"repro.project={project.root}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert not (project.root / "out.repro").exists()
    assert not (project.root / "out").exists()
    # The reaper saw repro's clean end and left too; and the project lock is free.
    _wait_until(lambda: not _alive(reaper), 10, "the reaper still runs")
    assert project.repro("run", "-o", "out", "touch out").code == 0


@pytest.mark.parametrize("forked", [False, True], ids=["exec", "fork"])
def test_kill_9_leaves_no_container(
    docker_project: Project, docker_client: docker.DockerClient, forked: bool
) -> None:
    project = docker_project
    proc = _start_stage(project, docker_client, forked=forked)
    reaper = _reaper_of(proc.pid)
    label = {"label": f"repro.project={project.root}"}
    proc.kill()
    proc.communicate(timeout=30)
    took = _wait_until(
        lambda: not docker_client.containers.list(all=True, filters=label),
        10,
        "the container of a killed repro is still there",
    )
    print(f"container gone {took:.2f} s after kill -9")
    _wait_until(lambda: not _alive(reaper), 10, "the reaper still runs after its sweep")
    assert not (project.root / "out.repro").exists()


def test_a_finished_run_leaves_no_reaper(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    proc = _start_stage(project, docker_client, "while [ ! -e go ]; do sleep 0.05; done; touch out")
    reaper = _reaper_of(proc.pid)
    (project.root / "go").touch()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    _wait_until(lambda: not _alive(reaper), 10, "the reaper outlived a finished run")
    assert (project.root / "out").exists()


def test_status_starts_no_reaper(docker_project: Project) -> None:
    project = docker_project
    project.ok("run", "--no-exec", "-o", "out", "touch out")
    probe = (
        "import sys; from repro.cli import main; code = main(['status']); "
        "print(code, 'repro.runners.docker.reaper' in sys.modules, 'docker' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project.root, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split()[-3:] == ["1", "False", "False"], done.stdout + done.stderr
