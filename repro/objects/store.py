"""The object store (the cache): read-only objects under the names ids.py gives them.

Every object appears under its final name atomically (a link, or a temp name and a rename), so
a name never holds partial bytes. The store finds, adds, checks and deletes objects; linking
them into the workspace, and workspace files into it, is workspace/materialise.py's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from repro.errors import CorruptObjectError, ReproError
from repro.fsutil import copy_atomic, copy_fd, tmp_name, write_atomic
from repro.objects.digest import file_md5
from repro.objects.ids import (
    FANOUT_DIGITS,
    OBJECTS,
    ObjectId,
    fanout,
    is_manifest,
    joined,
    object_key,
    object_path,
)
from repro.objects.manifest import parse_manifest

READ_ONLY = 0o444
# From this many object ids on, the store's fan-out folders are listed rather than each stat'ed.
LIST_ABOVE = 256
QUARANTINE = "quarantine"  # damaged objects, moved aside by Cache.quarantine


class ObjectsMissing(ReproError):
    """A folder's objects that the cache lacks; its checkout left no part of it behind."""

    def __init__(self, path: Path, oids: Iterable[str]) -> None:
        self.oids = sorted(set(oids))
        super().__init__(
            f"{len(self.oids)} objects of '{path}' are not in the cache; "
            "run 'repro pull' to fetch them"
        )


class Garbage(NamedTuple):
    """What gc would delete: the objects nothing kept needs, and their size."""

    kept: int  # objects kept, the files of kept folders included
    objects: list[ObjectId]
    size: int  # bytes


class Cache:
    """The objects under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._manifests: dict[ObjectId, list[tuple[str, str]]] = {}
        self._complete: set[ObjectId] = set()  # folders (manifest ids) found with every object

    def object_path(self, oid: ObjectId) -> Path:
        return object_path(self.root, oid)

    def exists(self, oid: ObjectId) -> bool:
        return os.path.exists(self.object_path(oid))

    def held(self, oids: Iterable[ObjectId]) -> set[ObjectId]:
        """Which of ``oids`` the store holds (see held_objects)."""
        return held_objects(self.root, oids)

    def temp_path(self, name: str) -> Path:
        """A unique temp name on the objects' filesystem (for a link probe)."""
        folder = self.root / "files"
        folder.mkdir(parents=True, exist_ok=True)
        return tmp_name(folder / name)

    # -- adding --------------------------------------------------------------------------------
    def save_bytes(self, oid: ObjectId, data: bytes) -> None:
        """Store bytes (a manifest, a run-cache blob) under ``oid`` unless present."""
        dest = self.object_path(oid)
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, data, READ_ONLY)

    def save_copy(
        self, path: Path, oid: ObjectId, copy: Callable[[int, int], object] = copy_fd
    ) -> None:
        """Store a copy of the file at ``path`` (made by ``copy``) under ``oid`` unless present."""
        dest = self.object_path(oid)
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(path, dest, READ_ONLY, copy)

    # -- reading -------------------------------------------------------------------------------
    def read_manifest(self, oid: ObjectId) -> list[tuple[str, str]]:
        """(relpath, md5) entries of a stored manifest; parsed once per Cache."""
        if oid not in self._manifests:
            try:
                data = self.object_path(oid).read_bytes()
            except FileNotFoundError:
                raise ReproError(
                    f"directory manifest {oid} is not in the cache; run 'repro pull'"
                ) from None
            self._manifests[oid] = parse_manifest(data, oid, str(self.root))
        return self._manifests[oid]

    def all_objects(self) -> Iterator[ObjectId]:
        base = self.root / OBJECTS
        if not base.is_dir():
            return
        for fan in sorted(os.listdir(base)):
            folder = base / fan
            if len(fan) != FANOUT_DIGITS or not folder.is_dir():
                continue
            for name in sorted(os.listdir(folder)):
                if not name.startswith("."):
                    yield joined(fan, name)

    def missing(self, oid: ObjectId) -> list[ObjectId]:
        """Objects needed for ``oid`` (itself, or a manifest and its entries) not in the cache.

        A folder found complete is not listed again by this Cache (objects leave the cache
        only by gc, which holds the project lock)."""
        if not self.exists(oid):
            return [oid]
        if is_manifest(oid) and oid not in self._complete:
            entries = self.read_manifest(oid)
            held = self.held(md5 for _rel, md5 in entries)
            if missing := [md5 for _rel, md5 in entries if md5 not in held]:
                return missing
            self._complete.add(oid)
        return []

    # -- removing ------------------------------------------------------------------------------
    def quarantine(self, oid: ObjectId) -> Path:
        """Move a damaged object aside, out of the store's names; where it went."""
        folder = self.root / QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{oid}.{time.time_ns()}"
        os.rename(self.object_path(oid), dest)
        return dest

    def garbage(self, keep: Iterable[ObjectId]) -> Garbage:
        """The objects gc would delete to keep ``keep``: a kept folder keeps its files too."""
        kept = set(keep)
        for oid in [o for o in kept if is_manifest(o)]:
            if self.exists(oid):
                kept.update(md5 for _rel, md5 in self.read_manifest(oid))
        doomed = [oid for oid in self.all_objects() if oid not in kept]
        size = sum(os.lstat(self.object_path(oid)).st_size for oid in doomed)
        return Garbage(len(kept), doomed, size)

    def delete(self, oids: Iterable[ObjectId]) -> None:
        """Delete objects for good. Manifests go first: a kill mid-way must not leave one
        whose files are gone."""
        for oid in sorted(oids, key=lambda o: not is_manifest(o)):
            self.object_path(oid).unlink(missing_ok=True)
            self._manifests.pop(oid, None)
            self._complete.discard(oid)

    # -- integrity -----------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Re-hash every object; return a line per damaged object or manifest."""
        problems: list[str] = []
        oids = list(self.all_objects())
        present = set(oids)
        for oid in oids:
            path = self.object_path(oid)
            if is_manifest(oid):
                try:
                    entries = parse_manifest(path.read_bytes(), oid, str(self.root))
                except CorruptObjectError:
                    problems.append(f"corrupt manifest {oid}")
                    continue
                except ReproError as exc:
                    problems.append(str(exc))
                    continue
                for rel, md5 in entries:
                    if md5 not in present:
                        problems.append(f"manifest {oid} names missing object {md5} ({rel})")
            elif file_md5(str(path)) != oid:
                problems.append(f"corrupt object {oid}")
        return problems


def held_objects(root: Path, oids: Iterable[ObjectId]) -> set[ObjectId]:
    """Which of ``oids`` the store at ``root`` holds.

    Many are found by listing their fan-out folders: a fresh clone pulling 20,000 objects
    costs 256 listdirs, not 20,000 stats. A few are stat'ed one by one.
    """
    wanted = set(oids)
    if len(wanted) < LIST_ABOVE:
        return {oid for oid in wanted if os.path.exists(f"{root}/{object_key(oid)}")}
    found: set[ObjectId] = set()
    base = os.path.join(root, OBJECTS)
    if not os.path.isdir(base):
        return found  # a fresh store: no listdir of 256 folders that are not there
    for fan in set(map(fanout, wanted)):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            found.update(joined(fan, name) for name in os.listdir(os.path.join(base, fan)))
    return found & wanted  # temp files are listed too: they never equal an object id
