"""metrics show -T/-a is answered from .repro/tmp/metrics-shown while nothing it reads moved.

Each test checks both sides: the same output, byte for byte, from the memo when nothing moved,
and the full command (with the new answer) whenever a ref, a stage file, the config or the
cache changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Project

from repro.memo.metrics import MEMO, eligible

# Whether git ran tells the memo's answer from the full command's.
PROBE = (
    "import subprocess, sys\n"
    "from repro.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('\\0', code, 'repro.history.revisions' in sys.modules)\n"
)


def _show(project: Project, *args: str) -> tuple[str, bool]:
    """(output, whether the memo answered) of ``metrics show ARGS`` in a new process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "metrics", "show", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    output, tail = done.stdout.rsplit("\0", 1)
    code, full = tail.split()
    assert code == "0", done.stdout + done.stderr
    return output, full == "False"


def _tag(project: Project, tag: str, acc: float) -> None:
    project.write("metrics.json", json.dumps({"acc": acc, "loss": round(1 - acc, 2)}))
    project.commit(f"acc {acc}", tag=tag)


@pytest.fixture
def tagged(project: Project) -> Project:
    project.write(
        "evaluate.repro", "outs:\n- path: metrics.json\n  cache: false\n  metric:\n    type: json\n"
    )
    for n in range(1, 4):
        _tag(project, f"v{n}", n / 10)
    return project


def test_what_was_shown_is_shown_again_without_git(tagged: Project) -> None:
    for args in (["-T"], ["-T", "--json"], ["-a"], ["-a", "-T"]):
        full, quick = _show(tagged, *args)
        assert not quick
        assert _show(tagged, *args) == (full, True)
    assert "v3" in _show(tagged, "-T")[0]
    # Other ways of asking always run in full.
    assert _show(tagged, "-T", "metrics.json")[1] is False
    assert _show(tagged, "-T", "--xpath", "acc")[1] is False
    assert _show(tagged)[1] is False  # the workspace


def _new_tag(project: Project) -> None:
    _tag(project, "v4", 0.4)


def _tag_deleted(project: Project) -> None:
    project.git("tag", "-d", "v2")


def _tag_moved(project: Project) -> None:
    project.write("metrics.json", json.dumps({"acc": 0.99}))
    project.commit("better")
    project.git("tag", "-f", "-a", "v3", "-m", "moved")


def _refs_packed(project: Project) -> None:
    project.git("pack-refs", "--all")


def _stage_file_modified(project: Project) -> None:
    project.ok("metrics", "modify", "metrics.json", "--xpath", "acc")


def _branch_renamed(project: Project) -> None:
    project.git("branch", "-m", "renamed")


@pytest.mark.parametrize(
    "change",
    [_new_tag, _tag_deleted, _tag_moved, _refs_packed, _stage_file_modified, _branch_renamed],
)
def test_any_move_runs_the_full_command(tagged: Project, change: Callable[[Project], None]) -> None:
    before, _ = _show(tagged, "-a", "-T")
    assert _show(tagged, "-a", "-T") == (before, True)
    change(tagged)
    after, quick = _show(tagged, "-a", "-T")
    assert not quick
    # The full command's own answer, which the next quick one repeats.
    assert after == tagged.ok("metrics", "show", "-a", "-T").out
    assert _show(tagged, "-a", "-T") == (after, True)
    if change is not _refs_packed:
        assert after != before


def test_a_ref_being_written_runs_the_full_command(tagged: Project) -> None:
    _show(tagged, "-T")
    lock = tagged.root / ".git" / "refs" / "tags" / "v9.lock"
    lock.write_text("")
    assert _show(tagged, "-T")[1] is False
    lock.unlink()
    assert _show(tagged, "-T")[1] is True


def test_a_cached_metric_removed_from_the_cache_runs_the_full_command(project: Project) -> None:
    project.write("scores.json", '{"acc": 0.7}')
    project.ok("add", "scores.json")
    stage = (project.root / "scores.json.repro").read_text()
    project.write(
        "scores.json.repro",
        stage.replace("cache: true", "cache: true\n  metric:\n    type: json"),
    )
    project.commit("cached metric", tag="m1")
    shown, _ = _show(project, "-T")
    assert "0.7" in shown
    assert _show(project, "-T") == (shown, True)
    shutil.rmtree(project.root / ".repro" / "cache")
    gone, quick = _show(project, "-T")
    assert not quick
    assert "repro pull" in gone


def test_a_torn_memo_is_ignored(tagged: Project) -> None:
    full, _ = _show(tagged, "-T")
    memo = tagged.root / MEMO.file
    memo.write_bytes(memo.read_bytes()[:20])
    assert _show(tagged, "-T") == (full, False)
    assert _show(tagged, "-T") == (full, True)


def test_only_scope_flags_are_answered() -> None:
    assert eligible(["metrics", "show", "-T"]) == (True, False, False)
    assert eligible(["-q", "metrics", "show", "--all-branches", "--json"]) == (False, True, True)
    assert eligible(["metrics", "show"]) is None
    assert eligible(["metrics", "show", "-Ta"]) is None
    assert eligible(["metrics", "show", "-T", "--all-commits"]) is None
    assert eligible(["metrics", "diff", "-T"]) is None
    assert eligible(["metrics", "show", "-T", "m.json"]) is None


def test_commits_read_once_are_not_read_again(tagged: Project, tmp_path: Path) -> None:
    """Even when the memo cannot answer (a new tag), old commits come from the readings memo:
    git is asked for the new commit's objects only."""
    _show(tagged, "-T")
    _new_tag(tagged)
    calls, objects = tmp_path / "calls.log", tmp_path / "objects.log"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        f'if [ "$1" = cat-file ]; then tee -a {objects} | {shutil.which("git")} "$@"; exit $?; fi\n'
        f'exec {shutil.which("git")} "$@"\n'
    )
    wrapper.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "repro", "metrics", "show", "-T", "--json"],
        cwd=tagged.root,
        env={**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert json.loads(done.stdout)["v4"] == {"metrics.json": {"acc": 0.4, "loss": 0.6}}
    assert calls.read_text().splitlines()[0].startswith("for-each-ref")
    # v4: its root tree, its .repro/ folder, its stage file and its metric file (v1-v3 would
    # add a root tree and a metric file each).
    assert len(objects.read_text().splitlines()) == 4
