"""End-to-end fixtures: a Docker engine the scripts' docker CLI can reach."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e.e2e_helpers import ROOT, build_image, explain, run_script

PYZ = ROOT / "dist" / "repro.pyz"


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


@pytest.fixture(scope="session")
def zipapp() -> Path:
    result = run_script(ROOT / "scripts" / "build-zipapp.sh", timeout=15 * 60)
    assert result.returncode == 0, explain(result)
    return PYZ


@pytest.fixture(scope="session")
def python_image(engine: None) -> Callable[[str], str]:
    """repro-pytest-SUITE: repro-base:SUITE plus python3 and git, built once per suite."""

    def build(suite: str) -> str:
        base = run_script(ROOT / "docker" / "base" / "build-base.sh", suite, timeout=20 * 60)
        if base.returncode != 0 and "needs root" in base.stderr:
            pytest.skip(f"cannot make repro-base:{suite} here: {base.stderr.strip()}")
        assert base.returncode == 0, explain(base)
        tag = f"repro-pytest-{suite}:latest"
        dockerfile = (
            f"FROM repro-base:{suite}\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends python3 git "
            "&& rm -rf /var/lib/apt/lists/*\n"
        )
        return build_image(tag, dockerfile)

    return build
