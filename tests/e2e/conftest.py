"""End-to-end fixtures: a Docker engine the scripts' docker CLI can reach."""

from __future__ import annotations

import os
import subprocess

import pytest


def _engine_answers() -> bool:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.fixture(scope="session")
def engine() -> None:
    """Skip unless a Docker engine answers to the docker CLI (the scripts use the CLI)."""
    if not _engine_answers():
        if os.environ.get("CI"):
            pytest.fail("no Docker engine answers in CI")
        pytest.skip("no Docker engine answers (scripts/ensure-docker.sh starts one)")
