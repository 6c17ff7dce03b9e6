"""Make the workspace match the stage files of the current commit.

Every cached output of the chosen stages gets the object its stage file records; one whose
objects are not all in the cache is reported missing and left as it is. With prune, outputs
repro linked that no stage names any more are deleted. What may be overwritten or deleted is
conflicts.py's rule: a refusal stops the checkout with the paths it would have lost.
"""

from __future__ import annotations

import os

from repro.errors import ReproError
from repro.objects.store import ObjectsMissing
from repro.paths import overlaps
from repro.stages.stage import Stage
from repro.workspace import outputs
from repro.workspace.conflicts import may_prune, refusal

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from repro.project import Project


class CheckoutResult:
    def __init__(self) -> None:
        self.added: list[str] = []  # outs that were not there
        self.changed: list[str] = []  # outs (re)linked over other content
        self.removed: list[str] = []  # stale outs repro had made
        self.kept: list[str] = []  # stale outs the user changed: left alone
        self.missing: list[str] = []  # outs whose objects are not cached


def checkout(project: Project, stages: list[Stage], force: bool, prune: bool) -> CheckoutResult:
    """Link every cached out of ``stages`` from the cache; with ``prune``, drop stale outs."""
    result = CheckoutResult()
    conflicts: list[str] = []
    cache = project.cache
    wanted: set[str] = set()
    for stage in stages:
        for out in stage.outs:
            wanted.add(out.path)
            if not out.cache or out.md5 is None:
                continue
            there = os.path.lexists(project.root / out.path)
            # Only what is there is checked up front (a folder must not be left half-updated);
            # a new folder learns of missing objects as it is made (Materialiser.checkout_dir).
            if cache.missing(out.md5) if there else not cache.exists(out.md5):
                result.missing.append(out.path)
                continue
            before = outputs.current_md5(project, out.path) if there else None
            try:
                found = outputs.checkout(project, out.path, out.md5, force)
            except ObjectsMissing:  # a folder some of whose files are not cached
                result.missing.append(out.path)
                continue
            conflicts.extend(c.path for c in found)
            if not found and not there:
                result.added.append(out.path)
            elif not found and before != out.md5:
                result.changed.append(out.path)
    if prune:
        for path, oid in sorted(project.ledger.linked().items()):
            if any(overlaps(path, w) for w in wanted):
                continue
            if not os.path.lexists(project.root / path):
                project.ledger.drop(path)
                continue
            try:
                now = outputs.current_md5(project, path)
            except ReproError:
                now = None
            if may_prune(now, oid, force):
                outputs.remove(project, path)
                result.removed.append(path)
            else:
                result.kept.append(path)
    if conflicts:
        raise refusal(conflicts)
    return result
