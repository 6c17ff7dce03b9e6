"""The code stays as clean as it was made: strict mypy and ruff over repro/, tests/ and
benchmarks/ (the paths and settings are pyproject.toml's). Both come with the test extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["mypy"],
        ["ruff", "check", "repro", "tests", "benchmarks", "scripts"],
        ["ruff", "format", "--check", "repro", "tests", "benchmarks", "scripts"],
    ],
    ids=["mypy", "ruff-check", "ruff-format"],
)
def test_lint(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
