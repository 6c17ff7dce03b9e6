"""Linux-only calls have a portable path (repro/host.py): a host without them still works."""

from __future__ import annotations

import subprocess
import sys

from helpers import Project, make_tree

WITHOUT_AFFINITY = (
    "import os, sys; del os.sched_getaffinity; "  # as on macOS
    "from repro.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_status_of_a_tracked_folder_without_sched_getaffinity(project: Project) -> None:
    make_tree(project.root / "data", 60, folders=6)
    project.ok("add", "data")
    for memo in (project.root / ".repro" / "tmp").glob("status-clean"):
        memo.unlink()  # the full status walks the folder: in two halves where there are cores
    for args in (["status"], ["status"], ["add", "data"]):
        done = subprocess.run(
            [sys.executable, "-c", WITHOUT_AFFINITY, *args],
            cwd=project.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
