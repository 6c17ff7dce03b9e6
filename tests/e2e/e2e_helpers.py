"""Helpers for the end-to-end tests: run the repository's own scripts as a user would."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(
    *args: str | Path, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a script of this repository from its root, without a terminal, capturing output."""
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    """The tail of a failed run, for an assertion message."""
    tail = (result.stdout + result.stderr).splitlines()[-lines:]
    return f"exit {result.returncode}; last lines:\n" + "\n".join(tail)


def build_image(tag: str, dockerfile: str, context: Path | None = None) -> str:
    """``docker build`` of ``dockerfile`` as ``tag`` (with the files of ``context``, if any)."""
    where = ["-f", "-", str(context)] if context is not None else ["-"]
    built = subprocess.run(
        ["docker", "build", "-q", "-t", tag, *where],
        input=dockerfile,
        capture_output=True,
        text=True,
        timeout=20 * 60,
        check=False,
    )
    assert built.returncode == 0, explain(built)
    return tag
