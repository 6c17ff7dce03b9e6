"""kill -9 at any instant, two writers at once: nothing committed is lost, the next command works."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Project, cli, make_tree


def _spawn(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("seed", range(6))
def test_kill_9_during_add_then_everything_works(project: Project, seed: int) -> None:
    rng = random.Random(seed)
    make_tree(project.root / "data", 3000, folders=30, size=2048, seed=seed)
    proc = _spawn(project.root, "add", "data")
    time.sleep(rng.uniform(0.05, 1.2))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert cli(project.root, "fsck").code == 0
    result = cli(project.root, "add", "data")
    assert result.code == 0, result.err
    assert cli(project.root, "status").code == 0
    assert cli(project.root, "fsck").code == 0
    # every file still holds its bytes
    expected = project.root.parent / "expected"
    make_tree(expected, 3000, folders=30, size=2048, seed=seed)
    for path in expected.rglob("*"):
        if path.is_file():
            assert (project.root / "data" / path.relative_to(expected)).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_during_checkout_then_everything_works(project: Project, seed: int) -> None:
    rng = random.Random(seed)
    make_tree(project.root / "data", 3000, folders=30, size=1024, seed=seed)
    project.ok("add", "data")
    project.commit("data", tag="v1")
    import shutil

    shutil.rmtree(project.root / "data")
    proc = _spawn(project.root, "checkout")
    time.sleep(rng.uniform(0.05, 0.8))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = cli(project.root, "checkout")
    assert result.code == 0, result.err
    assert cli(project.root, "status").code == 0
    assert cli(project.root, "fsck").code == 0
    assert len([p for p in (project.root / "data").rglob("*") if p.is_file()]) == 3000


def test_second_writer_is_refused_with_the_holder(project: Project) -> None:
    from repro.lock import ProjectLock

    with ProjectLock(project.root / ".repro" / "lock"):
        project.write("x.txt", "x")
        result = cli(project.root, "add", "x.txt")
        assert result.code == 1
        assert f"pid {os.getpid()}" in result.err and "--wait" in result.err
        assert cli(project.root, "status").code == 0  # readers take no lock
    assert cli(project.root, "add", "x.txt").code == 0


def test_wait_waits_for_the_lock(project: Project) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from repro.lock import ProjectLock; "
         "l = ProjectLock(__import__('pathlib').Path(sys.argv[1])); l.__enter__(); "
         "print('held', flush=True); time.sleep(1.5)", str(project.root / ".repro/lock")],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    project.write("y.txt", "y")
    result = cli(project.root, "add", "--wait", "y.txt")
    assert result.code == 0, result.err
    holder.wait()


def test_a_killed_lock_holder_leaves_no_stale_lock(project: Project) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from repro.lock import ProjectLock; "
         "l = ProjectLock(__import__('pathlib').Path(sys.argv[1])); l.__enter__(); "
         "print('held', flush=True); time.sleep(60)", str(project.root / ".repro/lock")],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    project.write("z.txt", "z")
    assert cli(project.root, "add", "z.txt").code == 0


def test_internal_error_is_one_line_with_a_log(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import repro.commands.data as data

    def boom(*_args: object) -> int:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(data, "cmd_status", boom)
    result = project.repro("status")
    assert result.code == 3
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "simulated bug" in lines[0] and "details in" in lines[0]
    log = Path(lines[0].split("details in ")[1].split(";")[0])
    assert "Traceback" in log.read_text()
