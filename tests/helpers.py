"""Helpers shared by the test modules: real git repos, the CLI in- and out-of-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from repro.cli import main

if TYPE_CHECKING:
    import docker

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Repro Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Repro Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}
TEST_IMAGE = "repro-test-busybox:latest"
BUSYBOX_IMAGE = Path(__file__).resolve().parent.parent / "scripts" / "busybox-image.py"
OLD_NS = 1_700_000_000 * 10**9


@dataclass
class Result:
    code: int
    out: str
    err: str


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


class Project:
    """A git repo with repro initialised, and ways to drive the CLI in it."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self._capsys = capsys

    def repro(self, *args: str) -> Result:
        """Run the CLI in-process (fast; lets tests watch internals)."""
        self._capsys.readouterr()
        old = os.getcwd()
        os.chdir(self.root)
        try:
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse usage errors and --version
                code = int(exc.code or 0)
        finally:
            os.chdir(old)
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *args: str) -> Result:
        result = self.repro(*args)
        assert result.code == 0, f"repro {' '.join(args)} failed: {result.err}{result.out}"
        return result

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not os.access(path, os.W_OK):
            path.unlink()
        path.write_text(text)
        return path

    def commit(self, message: str, tag: str | None = None) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        if tag:
            self.git("tag", "-a", tag, "-m", message)


def cli(cwd: Path, *args: str, timeout: float = 120) -> Result:
    """Run repro as a separate process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "repro", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def on_terminal(cwd: Path, *args: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``python -m repro ARGS`` on a real pseudo-terminal, 100 columns wide; its exit
    code and everything it drew (killed, and the test failed, after ``timeout`` seconds)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    leader, follower = pty.openpty()
    # A fresh pty is 0 columns wide; a real terminal is not (tqdm draws to the width).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro", *args],
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        if not select.select([leader], [], [], max(0.0, deadline - time.monotonic()))[0]:
            proc.kill()
            proc.wait()
            os.close(leader)
            pytest.fail(f"repro {' '.join(args)} drew nothing more for {timeout} s")
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait()
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def make_tree(root: Path, files: int, folders: int = 1, size: int = 64, seed: int = 0) -> None:
    """A folder of ``files`` files with fixed pseudo-random bytes."""
    import random

    rng = random.Random(seed)
    for index in range(files):
        folder = root / f"d{index % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index:05d}"
        path.write_bytes(rng.randbytes(size))
        os.utime(path, ns=(OLD_NS, OLD_NS))  # data made before the command, as in real life


PORTABLE_HOST = Path(__file__).resolve().parent / "portable_host"


def portable_host(env: MutableMapping[str, str], tools: Path) -> None:
    """Make ``env`` start Pythons as on a host without Linux-only calls (portable_host/), with
    BusyBox's find, linked into the folder ``tools``, first on PATH. LookupError without
    busybox."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise LookupError("a portable host needs busybox's find: scripts/ensure-tools.sh busybox")
    (tools / "find").symlink_to(busybox)
    env["PATH"] = f"{tools}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PORTABLE_HOST), *filter(None, [env.get("PYTHONPATH")])]
    )


def _docker_client() -> docker.DockerClient:
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            pytest.fail(f"no Docker engine answers in CI: {exc}")
        pytest.skip(f"no Docker engine: {exc} (scripts/test.sh starts one)")


def build_busybox_image(client: docker.DockerClient, tag: str = TEST_IMAGE) -> str:
    """The stage image of the tests (and of the benchmarks), imported as ``tag``: its ID."""
    done = subprocess.run(
        [sys.executable, str(BUSYBOX_IMAGE), tag], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(done.stderr.strip())
    return str(client.images.get(tag).id)


def run_as(uid: int, cwd: Path, home: Path, *args: str, deadline: int | None = None) -> Result:
    """Run the CLI as ``uid`` in a forked child, output captured; with ``deadline``, SIGALRM
    kills a child that outlives it (the result then says it hung).

    A fork, not a new interpreter: the Python install lives under /root, which other users
    cannot enter. So every module the command imports is imported here first.
    """
    import signal
    import traceback

    import repro.cli.commands.data
    import repro.cli.commands.share
    import repro.cli.error_handler
    import repro.memo.state
    import repro.objects.transfer  # noqa: F401

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 3
            try:
                if deadline is not None:
                    signal.alarm(deadline)  # its default action ends the process
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.environ.update(HOME=str(home), REPRO_LOG_DIR=str(home))
                os.chdir(cwd)
                code = main(list(args))
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert not os.WIFSIGNALED(status), "repro hung: killed after the deadline"
        out.seek(0)
        err.seek(0)
        return Result(os.waitstatus_to_exitcode(status), out.read(), err.read())


def start_stage(
    project: Project,
    docker_client: docker.DockerClient,
    cmd: str = "sleep 60; touch out",
    python_args: Sequence[str] = ("-m", "repro"),
) -> subprocess.Popen[str]:
    """``repro run -o out CMD`` in its own process, returned once its stage container runs."""
    import time

    proc = subprocess.Popen(
        [sys.executable, *python_args, "run", "-o", "out", cmd],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    label = {"label": f"repro.project={project.root}"}
    deadline = time.monotonic() + 60
    while not docker_client.containers.list(filters=label):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage container never started"
        time.sleep(0.05)
    return proc
