"""Objects in the workspace: committed into the store and linked, reflinked or copied back out.

Committing never copies a byte on one filesystem: the workspace file is hardlinked under its
object name and made read-only, so the workspace and the cache share one inode. Whether links
work is probed once per Materialiser; when they do not (another filesystem, cache.type = copy)
files are copied instead. Every file appears under its final name atomically (link, or temp +
rename). What checkout may replace is conflicts.py's to say.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as stat_mod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from repro import host, workers
from repro.errors import ReproError
from repro.fsutil import (
    build_aside,
    copy_atomic,
    copy_fd,
    copy_new,
    remove_dead_stagings,
    staging_name,
    tmp_name,
)
from repro.objects.ids import ObjectId, object_key
from repro.objects.store import READ_ONLY, Cache, ObjectsMissing
from repro.workspace.conflicts import Conflict, may_replace, unsaved
from repro.workspace.hashing import DirInfo, Hasher

Item = TypeVar("Item", tuple[str, str], tuple[str, str, bool])  # (target, md5, …) to place
WRITABLE = None  # a workspace copy: the mode the user's umask gives a new file
LINK_TYPES = ("hardlink", "copy", "reflink")
STAGING = "checkout-"  # a folder being copied out under .repro/tmp (fsutil.staging_name)


class Materialiser:
    """Moves objects between the ``store`` and the workspace at ``workspace``, by
    ``link_type`` (cache.type)."""

    def __init__(self, store: Cache, workspace: Path, link_type: str = "hardlink") -> None:
        if link_type not in LINK_TYPES:
            raise ReproError(
                f"cache.type {link_type!r} is unknown; use hardlink or copy "
                "(repro config cache.type hardlink)"
            )
        self.store = store
        self.workspace = workspace
        self.link_type = link_type
        self._can_link: bool | None = None
        self._can_clone = link_type == "reflink"

    # -- linking -----------------------------------------------------------------------------
    def can_link(self) -> bool:
        """Probe once whether hardlinks from the cache into the workspace work."""
        if self._can_link is None:
            self._can_link = self.link_type == "hardlink" and self._probe_link()
        return self._can_link

    def _probe_link(self) -> bool:
        source = self.store.temp_path("probe")
        target = tmp_name(self.workspace / ".repro" / "tmp" / "probe")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(b"")
            os.link(source, target)
            return True
        except OSError:
            return False
        finally:
            source.unlink(missing_ok=True)
            target.unlink(missing_ok=True)

    def _copy(self, src: int, dst: int) -> None:
        """Copy file contents: a reflink (shared extents, copy-on-write) where cache.type is
        reflink and the filesystem can, else a copy in the kernel."""
        if self._can_clone:
            if host.clone(src, dst):
                return
            self._can_clone = False  # ext4 and friends: asked once per command
        copy_fd(src, dst)

    def quarantine_if_linked(self, oid: ObjectId, inode: int) -> Path | None:
        """Move object ``oid`` aside when it is the inode ``inode`` (a workspace file edited in
        place while linked to it); where it went, or None when it is another inode."""
        if not self._same_inode(oid, inode):
            return None
        return self.store.quarantine(oid)

    def _place(self, oid: ObjectId, dest: Path, writable: bool) -> None:
        """Make ``dest`` hold object ``oid``: a hardlink when allowed, else a copy."""
        source = self.store.object_path(oid)
        if not writable and self.can_link():
            tmp = tmp_name(dest)
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EMLINK, errno.EXDEV):
                    raise
                copy_atomic(source, dest, WRITABLE, self._copy)
                return
            try:
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return
        copy_atomic(source, dest, WRITABLE, self._copy)

    # -- commit ------------------------------------------------------------------------------
    def commit_file(
        self, path: Path, md5: ObjectId, inode: int | None = None, nlink: int | None = None
    ) -> None:
        """Put the file at ``path`` (whose hash is ``md5``) into the cache and link it back.

        A file with other hardlinks (a stage's ``ln out .scratch``) is copied in, never
        linked: the cache must share no inode with anything a stage or a user can write.
        """
        if inode is None or nlink is None:
            st = os.lstat(path)
            inode, nlink = st.st_ino, st.st_nlink
        obj = self.store.object_path(md5)
        try:
            obj_st = os.stat(obj)
        except FileNotFoundError:
            obj.parent.mkdir(parents=True, exist_ok=True)
            if self.can_link() and nlink == 1:
                os.chmod(path, READ_ONLY)  # the inode becomes the object: protect it first
                try:
                    os.link(path, obj)
                    return
                except FileExistsError:
                    obj_st = os.stat(obj)  # another writer got there first; fall through
                except OSError as exc:
                    if exc.errno not in (errno.EMLINK, errno.EXDEV):
                        raise
                    copy_atomic(path, obj, READ_ONLY, self._copy)
                    os.chmod(path, 0o644)
                    return
            else:
                copy_atomic(path, obj, READ_ONLY, self._copy)
                if self.can_link():  # the workspace file becomes the object's own link
                    self._place(md5, path, writable=False)
                return
        if obj_st.st_ino == inode:
            return
        if self.can_link():
            self._place(md5, path, writable=False)

    def commit_dir(
        self, path: Path, info: DirInfo, link_counts: Mapping[str, int] | None = None
    ) -> None:
        """Commit every file of a hashed directory; the manifest goes in last.

        ``link_counts`` says, for files whose hashing saw it, whether a file had other
        hardlinks (Hasher.link_counts); the others are asked with an lstat."""
        present = self.store.held(md5 for _rel, md5 in info.entries)
        self.can_link()  # probe here, once, before the workers ask
        # Each worker owns a range of first hex digits: equal contents land in one worker, so
        # no two workers race to create the same object, nor lock the same fan-out folder.
        count = len(workers.split(info.entries, host.cores()))
        parts: list[list[tuple[str, int, str]]] = [[] for _ in range(count)]
        for entry, (_rel, md5) in zip(info.files, info.entries, strict=True):
            parts[int(md5[0], 16) * count // 16].append((entry.path, entry.key[0], md5))
        known = link_counts or {}
        workers.run_parts(lambda batch: self._commit_batch(batch, present, known), parts)
        self.store.save_bytes(info.oid, info.manifest)

    def _commit_batch(
        self,
        batch: Sequence[tuple[str, int, str]],
        present: set[str],
        link_counts: Mapping[str, int],
    ) -> list[None]:
        root = self.store.root
        can_link = self.can_link()
        for path, inode, md5 in batch:
            nlink = 1
            if can_link and md5 not in present:
                nlink = link_counts.get(path) or os.lstat(path).st_nlink
            if can_link and md5 not in present and nlink == 1:
                os.chmod(path, READ_ONLY)  # the inode becomes the object: protect it first
                try:
                    _link_making_parent(path, f"{root}/{object_key(md5)}")
                    present.add(md5)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.EMLINK, errno.EXDEV):
                        raise
            self.commit_file(Path(path), md5, inode, nlink)
            present.add(md5)
        return []

    def save_copy(self, path: Path, oid: ObjectId) -> None:
        """Store a copy of a file without linking it (uncached outs kept for the run-cache)."""
        self.store.save_copy(path, oid, self._copy)

    # -- checkout ----------------------------------------------------------------------------
    def checkout_file(self, oid: ObjectId, dest: Path, writable: bool = False) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        self._place(oid, dest, writable)

    def checkout_dir(
        self, oid: ObjectId, dest: Path, hasher: Hasher, label: str, force: bool
    ) -> list[Conflict]:
        """Make the folder ``dest`` match manifest ``oid``; return what it refused to destroy.

        ObjectsMissing where the cache lacks some of its objects. A folder to update is
        checked first, as it must not be left half-done. One that is not there yet is made
        by this call, and its links or copies failing tell, with no listing of the cache
        first: then (or on any other failure) the folder is removed again.
        """
        store = self.store
        entries = store.read_manifest(oid)
        fresh = not os.path.lexists(dest)
        if not fresh and (missing := store.missing(oid)):
            raise ObjectsMissing(dest, missing)
        if os.path.lexists(dest) and not os.path.isdir(dest):
            if not may_replace(store, dest, hasher, label, force):
                return [Conflict(label)]
            os.unlink(dest)
        current: dict[str, tuple[str, int]] = {}  # relpath -> (md5, inode)
        if os.path.isdir(dest):
            info = hasher.hash_dir(str(dest), label)
            md5s = dict(info.entries)
            current = {f.relpath: (md5s[f.relpath], f.key[0]) for f in info.files}
        wanted = dict(entries)
        mine = ((rel, md5) for rel, (md5, _inode) in current.items())
        if conflicts := unsaved(store, mine, wanted, label, force):
            return conflicts
        for rel in current.keys() - wanted.keys():
            os.unlink(dest / rel)
        can_link = self.can_link()
        if not can_link and not os.path.lexists(dest) and self._copy_tree(entries, dest):
            return []
        if fresh:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                dest.mkdir()
            except FileExistsError:  # made meanwhile: not ours to remove, so check first
                fresh = False
                if missing := store.missing(oid):
                    raise ObjectsMissing(dest, missing) from None
        prefix = str(dest) + "/"  # relpaths are checked POSIX paths: plain concatenation will do
        todo: list[tuple[str, str, bool]] = []  # (target, md5, target is new)
        made_dirs: set[str] = set()
        for rel, md5 in entries:
            have = current.get(rel)
            if (
                have is not None
                and have[0] == md5
                and (not can_link or self._same_inode(md5, have[1]))
            ):
                continue
            parent = rel.rpartition("/")[0]
            if parent not in made_dirs:
                os.makedirs(prefix + parent, exist_ok=True)
                made_dirs.add(parent)
            todo.append((prefix + rel, md5, have is None))
        try:
            parts = workers.run_parts(self._link_batch, workers.split(todo, host.cores()))
            if missing := [md5 for part in parts for md5 in part]:
                raise ObjectsMissing(dest, missing)
        except BaseException:  # Ctrl-C included: a folder this call made goes again
            if fresh:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        if current:
            _remove_empty_dirs(dest)
        return []

    def _copy_tree(self, entries: Sequence[tuple[str, str]], dest: Path) -> bool:
        """Copy a whole folder that does not exist yet: built under .repro/tmp, then renamed
        into place, so no file needs a temp name and rename of its own, and a kill leaves
        no half-copied file in the workspace. False where that cannot be done (.repro/tmp
        on another filesystem than ``dest``), with nothing done."""
        tmp_dir = os.path.join(self.workspace, ".repro", "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        remove_dead_stagings(tmp_dir, STAGING)

        def fill(staging: str) -> None:
            prefix = staging + "/"
            made_dirs = {""}
            todo: list[tuple[str, str]] = []  # (target, md5)
            for rel, md5 in entries:
                parent = rel.rpartition("/")[0]
                if parent not in made_dirs:
                    os.makedirs(prefix + parent, exist_ok=True)
                    made_dirs.add(parent)
                todo.append((prefix + rel, md5))
            parts = workers.run_parts(self._copy_batch, workers.split(todo, host.cores()))
            if missing := [md5 for part in parts for md5 in part]:
                raise ObjectsMissing(dest, missing)  # build_aside removes the staging folder

        dest.parent.mkdir(parents=True, exist_ok=True)
        return build_aside(os.path.join(tmp_dir, staging_name(STAGING)), str(dest), fill)

    def _copy_batch(self, batch: Sequence[tuple[str, str]]) -> list[str]:
        """Copy each object to its target; return the objects the cache lacks."""
        return self._each_object(batch, lambda source, item: copy_new(source, item[0], self._copy))

    def _link_batch(self, batch: Sequence[tuple[str, str, bool]]) -> list[str]:
        """Link (or copy) each object to its target; return the objects the cache lacks."""
        can_link = self.can_link()

        def place(source: str, item: tuple[str, str, bool]) -> None:
            target, md5, new = item
            if new and can_link:
                try:
                    os.link(source, target)
                    return
                except OSError as exc:
                    if exc.errno != errno.EMLINK:
                        raise
                copy_atomic(source, Path(target), WRITABLE, self._copy)
            else:
                self._place(md5, Path(target), writable=False)

        return self._each_object(batch, place)

    def _each_object(self, batch: Sequence[Item], place: Callable[[str, Item], None]) -> list[str]:
        """``place(object path, item)`` for each (target, md5, …) item; the md5s whose object
        the cache lacks (any other missing file is an error, raised)."""
        root = self.store.root
        missing: list[str] = []
        for item in batch:
            md5 = item[1]
            source = f"{root}/{object_key(md5)}"
            try:
                place(source, item)
            except FileNotFoundError:
                if os.path.exists(source):
                    raise
                missing.append(md5)
        return missing

    def _same_inode(self, oid: ObjectId, inode: int) -> bool:
        try:
            return os.stat(self.store.object_path(oid)).st_ino == inode
        except FileNotFoundError:
            return False


def _link_making_parent(source: str, dest: str) -> None:
    """``os.link``, creating the fan-out folder on first use (a fresh cache has none)."""
    try:
        os.link(source, dest)
    except FileNotFoundError:
        if not os.path.exists(source):
            raise
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.link(source, dest)


def _remove_empty_dirs(root: Path) -> None:
    for folder, dirs, files in os.walk(root, topdown=False):
        if not dirs and not files and folder != str(root):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def unprotect(path: Path) -> None:
    """Replace linked files below ``path`` with private writable copies; the cache is untouched.

    ``path`` has passed the path-safety check; below it only regular files are copied (a
    symlink would make the copy read whatever it points to)."""
    st = os.lstat(path)
    if stat_mod.S_ISDIR(st.st_mode):
        for folder, _dirs, files in os.walk(path):  # never descends through a symlink
            for name in files:
                _unprotect_file(Path(folder) / name)
    else:
        _unprotect_file(path)


def _unprotect_file(path: Path) -> None:
    st = os.lstat(path)
    if not stat_mod.S_ISREG(st.st_mode):
        raise ReproError(f"'{path}' is not a regular file (a symlink, fifo or device); left alone")
    if st.st_nlink == 1 and st.st_mode & 0o200:
        return  # a private writable copy already (cache.type copy or reflink)
    copy_atomic(path, path, WRITABLE)
