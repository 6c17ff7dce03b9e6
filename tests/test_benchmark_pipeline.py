"""`status` of a pipeline project (three stages pinned to an image) against its floor: a stat
walk of what status looks at plus one question to the engine (issue 17, item 9).

As in tests/test_benchmarks_quick.py, the floor is credited with one bare interpreter start
measured in the same run. Importing docker-py on this path (~65 ms) breaks the bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BOUND = 3.0


def test_pipeline_status_is_within_3x_of_its_floor(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    out = tmp_path / "pipeline.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--no-dvc",
         "--sets", "pipeline", "--ops", "version,status", "--repeat", "5",
         "--scratch", str(tmp_path / "scratch"), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = {(c["set"], c["op"]): c for c in json.loads(out.read_text())["cases"]}
    start = cases["-", "version"]["floor"]["median_s"]
    case = cases["pipeline", "status"]
    repro, floor = case["repro"]["median_s"], case["floor"]["median_s"]
    ratio = repro / (floor + start)
    assert ratio <= BOUND, (
        f"status of the pipeline project: repro {repro:.3f}s vs floor {floor:.3f}s "
        f"({case['note']}) + interpreter start {start:.3f}s: {ratio:.1f}x; "
        f"runs {case['repro']['runs_s']}"
    )
