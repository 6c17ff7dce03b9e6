"""What the results must name to be read fairly: the machine, the repro commit measured, the
Docker engine; and the stage image that engine runs."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_IMAGE = "repro-bench-busybox:latest"


def machine_info(scratch: Path) -> dict[str, object]:
    mem_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(scratch)], capture_output=True, text=True
    ).stdout.split()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / (1 << 20), 1),
        "kernel": platform.release(),
        "scratch": str(scratch),
        "scratch_fs": fs[0] if fs else "?",
        "in_container": os.path.exists("/.dockerenv"),
    }


def repro_commit() -> str:
    """The commit of the repro work tree measured, with '+dirty' for uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "repro"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return (sha or "?") + ("+dirty" if dirty else "")


def git_version() -> str:
    return subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.split()[-1]


def docker_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_version() -> str | None:
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def build_image() -> None:
    """The busybox image the tests run their stages in (no registry needed), as BENCH_IMAGE."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "busybox-image.py"), BENCH_IMAGE],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip())
