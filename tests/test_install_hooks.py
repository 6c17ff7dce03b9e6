"""The git hooks of `repro install` warn and never fail git (issue 17, item 6).

A `set -e` script that runs `git checkout` must not stop because the cache lacks the data;
the hook names `repro pull` instead. Everything runs through the real git CLI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from helpers import Project


def _two_versions_without_the_first_in_the_cache(project: Project) -> None:
    for tag, text in (("v1", "first\n"), ("v2", "second\n")):
        project.write("data/train.txt", text)
        project.ok("add", "data")
        project.commit(tag, tag=tag)
        project.ok("unprotect", "data")
    project.ok("gc", "-w", "-f")  # v1's object leaves the cache: a clone that never pulled


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_checkout_of_data_missing_from_the_cache_warns_and_exits_0(project: Project) -> None:
    _two_versions_without_the_first_in_the_cache(project)
    project.ok("install")
    done = _git(project.root, "checkout", "-q", "v1")
    assert done.returncode == 0, done.stderr
    assert "repro pull" in done.stderr
    assert "warning" in done.stderr
    # git did move: HEAD is v1, whatever the data
    assert _git(project.root, "describe", "--tags").stdout.strip() == "v1"
    # the same in a `set -e` script, as users write them
    script = "set -e\ngit checkout -q v2\ngit checkout -q v1\necho reached-the-end\n"
    done = subprocess.run(["sh", "-c", script], cwd=project.root, capture_output=True, text=True)
    assert done.returncode == 0 and "reached-the-end" in done.stdout, done.stderr


def test_checkout_with_the_data_in_the_cache_brings_it_quietly(project: Project) -> None:
    project.write("data/train.txt", "one\n")
    project.ok("add", "data")
    project.commit("one", tag="one")
    project.ok("unprotect", "data")
    project.write("data/train.txt", "two\n")
    project.ok("add", "data")
    project.commit("two", tag="two")
    project.ok("install")
    done = _git(project.root, "checkout", "-q", "one")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert (project.root / "data/train.txt").read_text() == "one\n"


def test_a_failing_push_of_data_warns_and_lets_git_push(project: Project, tmp_path: Path) -> None:
    """pre-push follows the same rule: warn with the command to run, exit 0."""
    project.write("data/train.txt", "payload\n")
    project.ok("add", "data")
    project.commit("data")
    store = tmp_path / "store"
    store.mkdir()
    project.ok("remote", "add", "-d", "store", str(store))
    shutil.rmtree(store)  # root ignores modes: a file where the folder was stops any push
    store.write_text("a file where the remote folder should be\n")
    bare = tmp_path / "origin.git"
    assert _git(tmp_path, "init", "-q", "--bare", str(bare)).returncode == 0
    project.git("remote", "add", "origin", str(bare))
    project.ok("install")
    done = _git(project.root, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert done.returncode == 0, done.stderr
    assert "repro push" in done.stderr and "warning" in done.stderr
    assert _git(bare, "rev-parse", "main").returncode == 0  # the commits did arrive


def test_install_again_rewrites_an_older_install(project: Project) -> None:
    hooks = project.root / ".git" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    old = '#!/bin/sh\n# installed by repro install\n[ "$3" = "1" ] || exit 0\nexec repro checkout\n'
    (hooks / "post-checkout").write_text(old)
    (hooks / "post-checkout").chmod(0o755)
    project.ok("install")
    text = (hooks / "post-checkout").read_text()
    assert "exec repro checkout" not in text
    assert text.rstrip().endswith("exit 0")
    assert not (hooks / "post-checkout.pre-repro").exists()  # ours: rewritten, not chained
