"""Hostile stages and a hostile machine: each contained or refused with a clear message."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Project

CONTAINED: list[str] = []  # hostile cases that ended contained, for the figures


@pytest.fixture(autouse=True)
def _count_contained(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)  # set by conftest's makereport hook
    if report is not None and report.passed:
        CONTAINED.append(request.node.name)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_during_add_is_a_clean_error(project: Project, tiny_tmpfs: Path) -> None:
    project.ok("config", "cache.dir", str(tiny_tmpfs / "cache"))
    project.write("small.txt", "fits")
    project.ok("add", "small.txt")
    (project.root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    result = project.repro("add", "big.bin")
    assert result.code == 1, result.err
    assert "no space left" in result.err
    assert len(result.err.strip().splitlines()) == 1
    leftovers = [p for p in (tiny_tmpfs / "cache").rglob("*") if p.is_file()]
    assert [p.read_text() for p in leftovers] == ["fits"], "no partial object may remain"
    assert not (project.root / "big.bin.repro").exists()
    assert (project.root / "big.bin").stat().st_size == 3 * 1024 * 1024
    assert project.ok("fsck").code == 0


def test_symlinks_out_of_the_project_are_refused(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    os.symlink(outside, project.root / "link")
    result = project.repro("add", "link")
    assert result.code == 1 and "symlink" in result.err
    result = project.repro("add", "link/secret")
    assert result.code == 1 and "symlink" in result.err
    os.symlink("/etc/hostname", project.root / "host")
    result = project.repro("add", "host")
    assert result.code == 1 and "symlink" in result.err
    (project.root / "data").mkdir()
    os.symlink("/etc", project.root / "data" / "etc")
    result = project.repro("add", "data")
    assert result.code == 1 and "symlink" in result.err
    assert (outside / "secret").stat().st_mode & 0o200 != 0  # untouched, still writable


@pytest.mark.docker
def test_stage_output_that_is_a_symlink_outside_is_refused(docker_project: Project) -> None:
    project = docker_project
    result = project.repro("run", "-o", "out", "ln -s /etc out")
    assert result.code == 1
    assert "symlink" in result.err
    assert not (project.root / "out.repro").exists()
    assert list((project.root / ".repro/cache/files").rglob("*")) == []


@pytest.mark.docker
def test_dep_that_points_outside_is_refused(docker_project: Project) -> None:
    project = docker_project
    os.symlink("/etc/passwd", project.root / "passwd")
    result = project.repro("run", "-d", "passwd", "-o", "copy", "cp passwd copy")
    assert result.code == 1 and "symlink" in result.err


@pytest.mark.docker
def test_fork_bombs_hit_a_pid_limit(docker_project: Project) -> None:
    project = docker_project
    project.ok(
        "run",
        "-o",
        "pids.max",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null > pids.max "
        "|| cat /sys/fs/cgroup/pids.max > pids.max",
    )
    assert (project.root / "pids.max").read_text().strip() == "4096"


@pytest.mark.docker
def test_stage_cannot_reach_the_network_or_gain_privileges(docker_project: Project) -> None:
    project = docker_project
    probe = (
        "(echo > /dev/tcp/127.0.0.1/1) 2>/dev/null; "
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status > report; "
        "(ip link set lo down 2>/dev/null && echo lo-down >> report) || true"
    )
    project.ok("run", "-o", "report", probe)
    report = dict(line.split(":\t") for line in (project.root / "report").read_text().splitlines())
    assert report["CapEff"].strip() == "0000000000000000"
    assert report["NoNewPrivs"].strip() == "1"
    assert "lo-down" not in report


@pytest.mark.docker  # the figure counts the Docker tests above: none without them
def test_report_contained_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the figure the reliability issue asks for."""
    with capsys.disabled():
        print(f"\nhostile stages and inputs contained: {len(CONTAINED)}")
    assert len(CONTAINED) >= 6


def test_a_cloned_repository_cannot_choose_the_scheduler(project: Project) -> None:
    """A Dask client unpickles what its scheduler sends: a scheduler named in the tracked
    config could run code here. It is read from config.local alone, and set there alone."""
    from repro.config import Config

    tracked = project.root / ".repro" / "config"
    tracked.write_text("[core]\n\tscheduler = tcp://198.51.100.7:8786\n")
    assert Config(project.root / ".repro").get("core.scheduler") is None
    refused = project.repro("config", "core.scheduler", "tcp://127.0.0.1:8786")
    assert refused.code == 1
    assert refused.err.strip() == (
        "error: 'core.scheduler' names a machine that runs code for you, which a clone must not "
        "choose; store it with --local (repro config --local core.scheduler tcp://127.0.0.1:8786)"
    )
    project.ok("config", "--local", "core.scheduler", "tcp://127.0.0.1:8786")
    assert Config(project.root / ".repro").get("core.scheduler") == "tcp://127.0.0.1:8786"
