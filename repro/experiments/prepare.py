"""An experiment before it runs: the baseline commit, plus the user's uncommitted changes to
tracked files (as DVC includes them), plus the ``-S`` parameter changes, as one commit whose
parent is the baseline. Made with git plumbing alone: the work tree and index are not touched.

A queued experiment is this commit under a ref; a plain run checks it out in a copy and runs it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from repro import paramfiles
from repro.errors import ReproError, UsageError
from repro.experiments.refs import git
from repro.paths import from_user


class Change(NamedTuple):
    """One ``-S [FILE:]KEY=VALUE``: a parameter file, a dotted key in it, the new value."""

    file: str
    key: str
    value: Any


def parse_change(root: Path, cwd: Path, text: str) -> Change:
    """A ``-S`` argument as a Change; the file relative to ``cwd``, params.yaml by default."""
    where, equals, value = text.partition("=")
    file, _, key = where.rpartition(":")
    if not equals or not key:
        raise UsageError(f"-S '{text}' is not [FILE:]KEY=VALUE; e.g. -S train.lr=0.2")
    path = from_user(root, cwd, file, "params file") if file else paramfiles.DEFAULT_FILE
    return Change(path, key, paramfiles.parse_value(value))


class Prepared(NamedTuple):
    baseline: str  # HEAD when it was made
    commit: str  # what the experiment starts from
    workspace: str  # a commit of the work tree's tracked files then, before the -S changes


TARGETS_LINE = "targets: "


def prepare(
    root: Path, baseline: str, changes: Sequence[Change], targets: Sequence[str], tmp: Path
) -> Prepared:
    """The commit an experiment of ``baseline`` (HEAD) starts from. A key or file that does
    not exist is an error here, before anything runs."""
    # A commit of the work tree's tracked files, made without touching them or the index;
    # nothing when there are no changes.
    source = git(root, "stash", "create").strip() or baseline
    if not git(root, "ls-tree", source, "--", ".repro/"):
        # Its copy would have no .repro/, and repro run there would find the project around it.
        raise ReproError(
            "the project's .repro/ is not in git, so an experiment cannot run from a commit; "
            "run 'git add .repro && git commit' first"
        )
    if changes:
        tree = _changed_tree(root, source, changes, tmp)
    else:
        tree = git(root, "rev-parse", f"{source}^{{tree}}").strip()
    summary = " ".join(f"{c.file}:{c.key}={c.value!r}" for c in changes) or "no changes"
    message = f"repro experiment: {summary}\n"
    if targets:
        message += f"\n{TARGETS_LINE}{' '.join(targets)}\n"
    commit = git(root, "commit-tree", tree, "-p", baseline, stdin=message.encode()).strip()
    return Prepared(baseline, commit, source)


def _changed_tree(root: Path, source: str, changes: Sequence[Change], tmp: Path) -> str:
    by_file: dict[str, list[Change]] = {}
    for change in changes:
        by_file.setdefault(change.file, []).append(change)
    index = tmp / f"exp-index-{secrets.token_hex(4)}"
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git(root, "read-tree", source, env=env)
        for file, file_changes in by_file.items():
            listing = git(root, "ls-tree", source, "--", file).split()
            if len(listing) < 3 or listing[1] != "blob":
                raise ReproError(
                    f"params file '{file}' is not in git; commit it, or name a tracked one "
                    "with -S FILE:KEY=VALUE"
                )
            mode, _, blob = listing[:3]
            text = git(root, "cat-file", "blob", blob).encode(errors="surrogateescape")
            params = paramfiles.parse(text, file)
            for change in file_changes:
                try:
                    paramfiles.assign(params, change.key, change.value)
                except KeyError:
                    raise ReproError(
                        f"'{change.key}' is not a parameter in '{file}'; -S changes existing "
                        "keys only: add it to the file first"
                    ) from None
            new_blob = git(
                root, "hash-object", "-w", "--stdin", stdin=paramfiles.dumps(params, file)
            ).strip()
            git(root, "update-index", "--cacheinfo", f"{mode},{new_blob},{file}", env=env)
        return git(root, "write-tree", env=env).strip()
    finally:
        index.unlink(missing_ok=True)
        index.with_name(index.name + ".lock").unlink(missing_ok=True)


def targets_of(root: Path, commit: str) -> list[str]:
    """The targets a prepared commit was made for (none: every stage)."""
    for line in git(root, "show", "-s", "--format=%B", commit).splitlines():
        if line.startswith(TARGETS_LINE):
            return line[len(TARGETS_LINE) :].split(" ")
    return []
