"""Linux-only calls have a portable path (repro/host.py): a host without them still works.

The whole suite runs that way with ``pytest --portable-host``; these tests run it without.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import Project, make_tree, portable_host

from repro import host, walk

HOST_CHOICES = (
    "import os, repro.host as h; "
    "print(hasattr(os, 'sched_getaffinity'), h.COPY_FILE_RANGE, h.O_PATH, h.SENDFILE_TO_FILE, "
    "h.container_ids(), h.clone(0, 1), h.platform())"
)


def _portable(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    portable_host(env, tmp_path)
    return env


def test_a_portable_host_has_none_of_the_linux_calls(tmp_path: Path) -> None:
    env = _portable(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", HOST_CHOICES], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "None", "None", "False", "[]", "False", "linux"]
    find = subprocess.run(["find", ".", "-printf", "%p"], env=env, capture_output=True)
    assert find.returncode != 0  # BusyBox's


def test_status_of_a_tracked_folder_on_a_portable_host(project: Project, tmp_path: Path) -> None:
    make_tree(project.root / "data", 60, folders=6)
    project.ok("add", "data")
    for memo in (project.root / ".repro" / "tmp").glob("status-clean"):
        memo.unlink()  # the full status walks the folder: in two halves where there are cores
    env = _portable(tmp_path)
    for args in (["status"], ["status"], ["add", "data"]):
        done = subprocess.run(
            [sys.executable, "-m", "repro", *args],
            cwd=project.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


def test_the_python_listing_has_find_s_records(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree", 30, folders=3)
    (tmp_path / "tree" / "link").symlink_to("d000")
    os.mkfifo(tmp_path / "tree" / "d001" / "fifo")
    (tmp_path / "tree" / "empty").mkdir()
    root = str(tmp_path / "tree")
    by_find = walk.find_listing(root)
    assert by_find is not None
    assert sorted(walk.records(walk.python_listing(root))) == sorted(walk.records(by_find))


# F_GETPIPE_SZ is 1032 (linux/fcntl.h); Python's fcntl has it only from 3.10 on Linux.
PIPE_SIZES = (
    "import fcntl; from repro.remotes.openssh import Session; s = Session(['cat'], 5.0); "
    "print(sorted({fcntl.fcntl(p.fileno(), 1032) for p in (s.stdin, s.stdout)})); s.close()"
)


def test_the_ssh_clients_pipes_hold_a_megabyte_on_linux_and_are_left_alone_elsewhere(
    tmp_path: Path,
) -> None:
    """A tar stream runs ahead of its reader by a megabyte, not 64 KiB (20% less time for
    20,000 small objects over loopback); a host without F_SETPIPE_SZ keeps its pipes."""
    sizes = [
        subprocess.run(
            [sys.executable, "-c", PIPE_SIZES], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for env in (dict(os.environ), _portable(tmp_path))
    ]
    # Under ``pytest --portable-host`` this process's environment is the portable one already.
    assert sizes == ["[1048576]" if host.LINUX else "[65536]", "[65536]"]
