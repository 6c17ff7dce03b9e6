"""The params stages use, compared between two revisions (``repro params diff``): which keys of
which files the stage files of each list, and the values those files hold there, read from git
without a checkout, as metrics are."""

from __future__ import annotations

from typing import Any, NamedTuple

from repro import paramfiles
from repro.history.revisions import History, Revision
from repro.stages.deps.params import ParamDep, canonical

ABSENT: Any = object()  # the value of a key (or file) a revision does not have


class ParamChange(NamedTuple):
    path: str  # the params file, relative to the project root
    key: str
    old: Any  # ABSENT when the old revision has no such key
    new: Any
    changed: bool


def used_params(history: History, revisions: list[Revision]) -> list[tuple[str, str]]:
    """Every (file, key) a stage of any of ``revisions`` depends on, sorted."""
    used = {
        (dep.path, dep.key)
        for revision in revisions
        for stage in history.stages_at(revision)
        for dep in stage.deps
        if isinstance(dep, ParamDep)
    }
    return sorted(used)


def values_at(
    history: History, revision: Revision, used: list[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """The value of each used (file, key) at ``revision``; those it lacks are left out."""
    files = sorted({path for path, _key in used})
    contents = history.read_many([(revision, path) for path in files])
    parsed = {
        path: paramfiles.parse(data, path)
        for path, data in zip(files, contents, strict=True)
        if data is not None
    }
    found: dict[tuple[str, str], Any] = {}
    for path, key in used:
        if path in parsed and paramfiles.has(parsed[path], key):
            found[(path, key)] = paramfiles.lookup(parsed[path], key)
    return found


def diff_params(history: History, old: Revision, new: Revision) -> list[ParamChange]:
    """Each param a stage of either revision uses, with its values at both."""
    used = used_params(history, [old, new])
    before, after = values_at(history, old, used), values_at(history, new, used)
    changes = []
    for path, key in used:
        a, b = before.get((path, key), ABSENT), after.get((path, key), ABSENT)
        # A key a revision lacks is unlike any value, null included.
        changed = a is not b if ABSENT in (a, b) else canonical(a) != canonical(b)
        changes.append(ParamChange(path, key, a, b, changed))
    return changes
