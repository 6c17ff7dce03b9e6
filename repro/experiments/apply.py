"""Bringing an experiment into the workspace: its tracked files (parameters, code, stage
files, metrics) written over the work tree, its outputs checked out from the cache. The
branch, HEAD and index stay where they are, so ``git diff`` shows what the experiment changed
and ``git commit -a`` keeps it."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

from repro.errors import ReproError
from repro.experiments.refs import git
from repro.workspace.checkout import checkout

if TYPE_CHECKING:
    from repro.project import Project


def _paths(output: str) -> list[str]:
    return [path for path in output.split("\0") if path]


def apply(project: Project, commit: str, since: str, force: bool) -> list[str]:
    """Make the work tree's tracked files those of ``commit`` and check out its outputs;
    the paths written or deleted. Refuses, unless ``force``, to overwrite a change made to
    the work tree since commit ``since`` (HEAD; for a run, what the experiment started from)
    or an output that is not in the cache."""
    root = project.root
    # Paths whose work-tree content is not the experiment's, and the experiment's files that
    # git does not track here (git diff against a commit leaves those out when untracked).
    differ = set(_paths(git(root, "diff", "--name-only", "--no-renames", "-z", commit)))
    added = set(_paths(git(root, "diff", "--name-only", "-z", "--diff-filter=A", "HEAD", commit)))
    untracked = set(_paths(git(root, "ls-files", "-z", "--others", "--", *sorted(added))))
    if added:
        differ |= {path for path in added if not os.path.lexists(root / path)} | untracked
    if not force:
        changed = set(_paths(git(root, "diff", "--name-only", "--no-renames", "-z", since)))
        lost = sorted((changed | untracked) & differ)
        if lost:
            shown = ", ".join(lost[:5]) + (", …" if len(lost) > 5 else "")
            raise ReproError(
                f"the workspace has changes the experiment would overwrite ({shown}); commit "
                "or stash them, or overwrite them with 'repro exp apply -f'"
            )
    if differ:
        _write(project, commit, differ)
    stages = project.stages()
    result = checkout(project, stages, force=force, prune=True)
    if result.missing:
        raise ReproError(
            f"not in the cache: {', '.join(result.missing)}; run 'repro pull' to fetch them"
        )
    return sorted(differ)


def _write(project: Project, commit: str, paths: set[str]) -> None:
    """Each of ``paths`` as ``commit`` has it, or deleted when it has none."""
    root = project.root
    listed = git(root, "ls-tree", "-r", "-z", "--name-only", commit, "--", *sorted(paths))
    in_commit = set(_paths(listed))
    index = project.tmp_dir / f"apply-index-{secrets.token_hex(4)}"
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git(root, "read-tree", commit, env=env)
        if in_commit:
            names = "".join(f"{path}\0" for path in sorted(in_commit))
            git(root, "checkout-index", "-f", "-z", "--stdin", env=env, stdin=names.encode())
    finally:
        index.unlink(missing_ok=True)
    for path in sorted(paths - in_commit):
        (root / path).unlink(missing_ok=True)
