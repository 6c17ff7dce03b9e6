"""What changed inside tracked data between two revisions (``repro diff``), file by file.

Each side is the outputs its stage files record (for the workspace: what is there now, through
the hash memo), and a folder's files come from its manifest in the cache: nothing is checked
out and no unchanged file is read. Outputs whose object id is the same on both sides are
skipped whole, so a diff costs in proportion to the folders that changed, each compared as a
set of (relpath, md5) in memory. A folder whose manifest the cache lacks is compared as a
whole and named, so the user knows to fetch it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING, NamedTuple

from repro.errors import ReproError
from repro.objects.ids import is_manifest
from repro.paths import inside, overlaps

if TYPE_CHECKING:
    from repro.history.revisions import History, Revision
    from repro.project import Project

# Folders are listed with this suffix, as DVC lists them, so a script tells them from files.
FOLDER_MARK = "/"


class Entry(NamedTuple):
    """One changed path. For a rename ``old_path`` is where it was; for an addition
    ``old_md5`` is None, for a deletion ``new_md5``; a size is None when unknown."""

    path: str
    old_md5: str | None
    new_md5: str | None
    old_size: int | None = None
    new_size: int | None = None
    old_path: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.path.endswith(FOLDER_MARK)


class Uncached(NamedTuple):
    """A folder compared as a whole: its manifest is not in the cache."""

    path: str
    md5: str
    label: str  # the revision that records it


class DataDiff(NamedTuple):
    added: list[Entry]
    deleted: list[Entry]
    renamed: list[Entry]
    modified: list[Entry]
    not_in_cache: list[Uncached]

    def __bool__(self) -> bool:
        return any((self.added, self.deleted, self.renamed, self.modified, self.not_in_cache))


class _Side:
    """One revision's tracked outputs and how to look inside them."""

    def __init__(self, project: Project, history: History, revision: Revision) -> None:
        self.project = project
        self.revision = revision
        self.workspace = revision.sha is None
        if self.workspace:
            self.outs = self._workspace_outs()
        else:
            stages = history.stages_at(revision)
            self.outs = {out.path: out.md5 for s in stages for out in s.outs if out.md5}

    def _workspace_outs(self) -> dict[str, str]:
        """Each output's object id now; one that is not there is left out."""
        from repro.workspace.hashing import read_path_md5  # a diff of two commits hashes nothing

        found: dict[str, str] = {}
        for stage in self.project.stages():
            for out in stage.outs:
                full = inside(self.project.root, out.path, "output")
                oid = read_path_md5(self.project.hasher, full, out.path)
                if oid is not None:
                    found[out.path] = oid
        return found

    def files(self, path: str, oid: str) -> set[tuple[str, str]] | None:
        """(relpath, md5) of each file of the folder ``path``; None when its manifest is
        unknown (not in the cache, and not in the workspace either)."""
        cache = self.project.cache
        if cache.exists(oid):
            return set(cache.read_manifest(oid))
        if self.workspace:  # never committed: hashed through the memo, not read again
            return set(self.project.hasher.hash_dir(str(self.project.root / path), path).entries)
        return None

    def size(self, path: str, oid: str) -> int | None:
        """Bytes of a file (None for a folder, or an object neither here nor in the cache)."""
        if is_manifest(oid):
            return None
        where = self.project.root / path if self.workspace else self.project.cache.object_path(oid)
        try:
            return os.lstat(where).st_size
        except OSError:
            return None


def diff_data(
    project: Project, history: History, old: Revision, new: Revision, targets: list[str]
) -> DataDiff:
    """The files added, deleted, renamed (same bytes, new path) and modified from ``old`` to
    ``new``, within ``targets`` (project-relative paths; none: everything tracked)."""
    before, after = _Side(project, history, old), _Side(project, history, new)
    outs = sorted(before.outs.keys() | after.outs.keys())
    for target in targets:
        if not any(overlaps(target, out) for out in outs):
            raise ReproError(
                f"'{target}' is not tracked data at {old.label} or {new.label}; name an output "
                "or a path inside one ('repro diff' alone lists every change)"
            )
    # Only what differs is kept: (path, md5) pairs on one side and not on the other.
    old_files: dict[str, str] = {}
    new_files: dict[str, str] = {}
    not_in_cache: list[Uncached] = []
    for out in outs:
        if targets and not any(overlaps(out, target) for target in targets):
            continue
        was, now = before.outs.get(out), after.outs.get(out)
        if was == now:
            continue
        old_inside = before.files(out, was) if was and is_manifest(was) else set()
        new_inside = after.files(out, now) if now and is_manifest(now) else set()
        if old_inside is None or new_inside is None:
            for side, oid, known in ((before, was, old_inside), (after, now, new_inside)):
                if known is None and oid is not None:
                    not_in_cache.append(Uncached(out + FOLDER_MARK, oid, side.revision.label))
            # Its files unknown on one side, the output is compared as a whole on both.
            old_inside = new_inside = set()
        # Sets of pairs compared in C; only the few that differ become paths.
        old_files.update((f"{out}/{rel}", md5) for rel, md5 in old_inside - new_inside)
        new_files.update((f"{out}/{rel}", md5) for rel, md5 in new_inside - old_inside)
        # The output's own line (a folder's, as DVC lists it: its id says the whole changed).
        old_files.update(_whole(out, was))
        new_files.update(_whole(out, now))
    if targets:
        old_files = _within(old_files, targets)
        new_files = _within(new_files, targets)
    return _compare(before, after, old_files, new_files, not_in_cache)


def _whole(out: str, oid: str | None) -> dict[str, str]:
    """The output as one line (a folder's path marked as one); none where it is absent."""
    if oid is None:
        return {}
    return {out + FOLDER_MARK if is_manifest(oid) else out: oid}


def _within(files: dict[str, str], targets: list[str]) -> dict[str, str]:
    """The files at or below a target (a folder's own line: when a target holds all of it)."""
    return {
        path: md5
        for path, md5 in files.items()
        if any(_holds(target, path.removesuffix(FOLDER_MARK)) for target in targets)
    }


def _holds(target: str, path: str) -> bool:
    return path == target or path.startswith(target + "/")


def _compare(
    before: _Side,
    after: _Side,
    old_files: dict[str, str],
    new_files: dict[str, str],
    not_in_cache: list[Uncached],
) -> DataDiff:
    gone = sorted(old_files.keys() - new_files.keys())
    came = sorted(new_files.keys() - old_files.keys())
    both = sorted(old_files.keys() & new_files.keys())  # only differing pairs were kept
    # A path that went and one that came with the same bytes is a rename; among several
    # with the same bytes, they pair in path order.
    came_by_md5: dict[str, list[str]] = defaultdict(list)
    for path in came:
        came_by_md5[new_files[path]].append(path)
    renamed: list[Entry] = []
    deleted: list[Entry] = []
    for path in gone:
        md5 = old_files[path]
        candidates = came_by_md5.get(md5)
        if candidates:
            to = candidates.pop(0)
            size = after.size(to, md5)
            renamed.append(Entry(to, md5, md5, size, size, old_path=path))
        else:
            deleted.append(Entry(path, md5, None, before.size(path, md5)))
    paired = {entry.path for entry in renamed}
    added = [
        Entry(path, None, new_files[path], None, after.size(path, new_files[path]))
        for path in came
        if path not in paired
    ]
    modified = [
        Entry(
            path,
            old_files[path],
            new_files[path],
            before.size(path, old_files[path]),
            after.size(path, new_files[path]),
        )
        for path in both
    ]
    renamed.sort()
    return DataDiff(added, deleted, renamed, modified, not_in_cache)
