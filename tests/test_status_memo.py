"""A clean status is remembered (.repro/tmp/status-clean): the next one answers before argparse.

Every test here checks both sides: that the quick answer is given when nothing changed, and that
any change, however small, still reaches the full status and its message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import OLD_NS, Project, make_tree

from repro.memo.status import MEMO
from repro.runners.spec import Image
from repro.stages import stage as stage_mod
from repro.stages.stage import Out, Stage

# Which modules the status loaded tells whether the memo answered (the full status needs
# argparse for its command line).
PROBE = (
    "import sys\n"
    "from repro.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(code, 'argparse' in sys.modules)\n"
)


def _status(cwd: Path, *args: str) -> tuple[int, bool, str]:
    """(exit code, whether the memo answered, the rest of stdout) of a status in a new process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "status", *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    *shown, last = done.stdout.strip().splitlines()
    code, full = last.split()
    return int(code), full == "False", "\n".join(shown)


@pytest.fixture
def tracked(project: Project) -> Project:
    """A project with a folder and a file added, all settled, and a clean status behind it.

    Hardlinks: a replaced file then gets a new inode (with copies the freed inode may come
    back, with the same size and mtime a file is then the same to any stat-based memo)."""
    project.ok("config", "cache.type", "hardlink")
    make_tree(project.root / "data", 40, folders=4)
    project.write("model.bin", "weights")
    os.utime(project.root / "model.bin", ns=(OLD_NS, OLD_NS))
    project.ok("add", "data", "model.bin")
    project.commit("data")
    assert _status(project.root)[:2] == (0, False)  # the full status, which leaves the memo
    assert (project.root / MEMO.file).is_file()
    return project


def test_nothing_changed_is_answered_from_the_memo(tracked: Project) -> None:
    assert _status(tracked.root) == (0, True, "Data and pipelines are up to date.")
    assert _status(tracked.root, "-q") == (0, True, "")
    assert _status(tracked.root / "data" / "d001") == (
        0,
        True,
        "Data and pipelines are up to date.",
    )
    # Anything but a plain status goes the long way.
    assert _status(tracked.root, "--json")[:2] == (0, False)
    assert _status(tracked.root, "data")[:2] == (0, False)


def _bytes_changed(root: Path) -> None:
    path = root / "data" / "d002" / "f00002"
    size = len(path.read_bytes())
    path.write_bytes(b"x" * size)  # same size, new bytes...
    os.utime(path, ns=(OLD_NS + 10**9, OLD_NS + 10**9))  # ...and a settled mtime


def _grown(root: Path) -> None:
    with open(root / "data" / "d000" / "f00000", "ab") as file:
        file.write(b"more")


def _file_removed(root: Path) -> None:
    (root / "data" / "d003" / "f00003").unlink()


def _file_added(root: Path) -> None:
    (root / "data" / "d003" / "new").write_text("new")


def _file_output_changed(root: Path) -> None:
    (root / "model.bin").unlink()
    (root / "model.bin").write_text("weightz")
    os.utime(root / "model.bin", ns=(OLD_NS, OLD_NS))


def _file_output_gone(root: Path) -> None:
    (root / "model.bin").unlink()


def _folder_gone(root: Path) -> None:
    shutil.rmtree(root / "data")


def _stage_file_edited(root: Path) -> None:
    stage = root / "data.repro"
    stage.write_text(stage.read_text().replace("cache: true", "cache: false"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_bytes_changed, "Output 'data' of 'data.repro' changed."),
        (_grown, "Output 'data' of 'data.repro' changed."),
        (_file_removed, "Output 'data' of 'data.repro' changed."),
        (_file_added, "Output 'data' of 'data.repro' changed."),
        (_file_output_changed, "Output 'model.bin' of 'model.bin.repro' changed."),
        (_file_output_gone, "Output 'model.bin' of 'model.bin.repro' is missing."),
        (_folder_gone, "Output 'data' of 'data.repro' is missing."),
        (_stage_file_edited, "Stage 'data.repro' changed."),
    ],
)
def test_every_change_reaches_the_full_status(
    tracked: Project, change: Callable[[Path], None], message: str
) -> None:
    change(tracked.root)
    code, quick, shown = _status(tracked.root)
    assert (code, quick) == (1, False)
    assert message in shown


def test_a_new_stage_file_reaches_the_full_status(tracked: Project) -> None:
    stage_mod.write(tracked.root, Stage(path="other.repro", outs=(Out("other.txt"),)))
    code, quick, shown = _status(tracked.root)
    assert (code, quick) == (1, False)
    assert "Output 'other.txt' of 'other.repro' is missing." in shown


def test_touched_files_with_the_same_bytes_stay_quick(tracked: Project) -> None:
    touched = [tracked.root / "data" / "d000" / "f00000", tracked.root / "data" / "d001" / "f00005"]
    for seconds in (1_600_000_000, 1_650_000_000, 1_660_000_000):
        for path in touched:
            os.utime(path, ns=(seconds * 10**9, seconds * 10**9))
        # Each round compares with the walk the round before remembered, and finds the old
        # keys' hashes in the state db: the memo and the db move together.
        assert _status(tracked.root) == (0, True, "Data and pipelines are up to date.")
    touched[0].write_bytes(b"changed")
    os.utime(touched[0], ns=(OLD_NS, OLD_NS))
    assert _status(tracked.root)[:2] == (1, False)


def test_a_file_changed_this_instant_is_not_remembered(project: Project) -> None:
    make_tree(project.root / "data", 10)
    project.ok("add", "data")
    # Stamped a little ahead, as a file written this instant would look to any status that
    # reads it within RACY_NS (a test process takes longer than that to start).
    soon = time.time_ns() + 10 * 10**9
    os.utime(project.root / "data" / "d000" / "f00001", ns=(soon, soon))
    assert _status(project.root)[:2] == (0, False)
    assert not (project.root / MEMO.file).exists()


def test_stages_pinned_to_an_image_are_not_remembered(project: Project) -> None:
    make_tree(project.root / "data", 10)
    project.ok("add", "data")
    stage = Stage(
        path="train.repro",
        cmd="true",
        image=Image("repro-test-busybox:latest", "sha256:" + "1" * 64),
    )
    stage_mod.write(project.root, stage.with_md5())
    project.repro("status")  # whatever the engine says of that image...
    assert not (project.root / MEMO.file).exists()  # ...the next status must ask it again


def test_a_symlink_on_the_way_reaches_the_full_status(tracked: Project, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (tracked.root / "nested").mkdir()
    make_tree(tracked.root / "nested" / "set", 5)
    tracked.ok("add", "nested/set")
    # Its stage file at the top, so that the walk for stage files still finds it.
    added = stage_mod.load(tracked.root, "nested/set.repro")
    stage_mod.write(tracked.root, added._replace(path="set.repro").with_md5())
    (tracked.root / "nested" / "set.repro").unlink()
    assert _status(tracked.root)[:2] == (0, False)
    assert _status(tracked.root)[:2] == (0, True)
    # The same inodes, now reached through a symlink out of the project.
    (tracked.root / "nested").rename(outside)
    (tracked.root / "nested").symlink_to(outside)
    done = subprocess.run(
        [sys.executable, "-m", "repro", "status"], cwd=tracked.root, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "leads out of the project through the symlink 'nested'" in done.stderr


def test_a_torn_memo_is_ignored_and_rewritten(tracked: Project) -> None:
    memo = tracked.root / MEMO.file
    whole = memo.read_bytes()
    for junk in (b"", b"\x00garbage", whole[: len(whole) // 2]):
        memo.write_bytes(junk)
        assert _status(tracked.root)[:2] == (0, False)
        assert _status(tracked.root)[:2] == (0, True)


def test_statuses_at_once_leave_one_whole_memo(tracked: Project) -> None:
    os.utime(tracked.root / "data" / "d000" / "f00000", ns=(OLD_NS + 5 * 10**9, OLD_NS + 5 * 10**9))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, "status"],
            cwd=tracked.root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    assert [run.communicate()[0].split()[-2] for run in runs] == ["0"] * 6
    assert _status(tracked.root)[:2] == (0, True)
    assert [p.name for p in (tracked.root / MEMO.file).parent.iterdir() if p.suffix == ".tmp"] == []
