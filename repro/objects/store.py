"""The content-addressed cache: read-only objects under files/md5/ab/cdef…, linked into place.

Committing never copies a byte on one filesystem: the workspace file is hardlinked under its
object name and made read-only, so the workspace and the cache share one inode. Whether links
work is probed once per Cache; when they do not (another filesystem, cache.type = copy) files are
copied instead. Every object appears under its final name atomically (link, or temp + rename).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as stat_mod
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from repro import workers
from repro.errors import CorruptObjectError, ReproError
from repro.fsutil import (
    NO_KERNEL_COPY,
    build_aside,
    copy_fd,
    copy_new,
    remove_dead_stagings,
    staging_name,
    write_atomic,
)
from repro.fsutil import tmp_name as _tmp_name
from repro.objects.digest import file_md5
from repro.objects.ids import object_key
from repro.objects.manifest import parse_manifest
from repro.workspace.hashing import DirInfo, Hasher, Scan

Item = TypeVar("Item", tuple[str, str], tuple[str, str, bool])  # (target, md5, …) to place
READ_ONLY = 0o444
# From this many object ids on, the cache's fan-out folders are listed rather than each stat'ed.
LIST_ABOVE = 256


WRITABLE = None  # a workspace copy: the mode the user's umask gives a new file


def _copy_atomic(
    source: str | Path, dest: Path, mode: int | None, copy: Callable[[int, int], object] = copy_fd
) -> None:
    tmp = _tmp_name(dest)
    try:
        copy_new(str(source), str(tmp), copy)  # a new file: its mode comes from the umask
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ObjectsMissing(ReproError):
    """A folder's objects that the cache lacks; its checkout left no part of it behind."""

    def __init__(self, path: Path, oids: Iterable[str]) -> None:
        self.oids = sorted(set(oids))
        super().__init__(
            f"{len(self.oids)} objects of '{path}' are not in the cache; "
            "run 'repro pull' to fetch them"
        )


class Conflict(NamedTuple):
    """A workspace path whose content is not in the cache: replacing it would lose data."""

    path: str


class Cache:
    """Objects in ``root``; links into the workspace at ``workspace``."""

    def __init__(self, root: Path, workspace: Path, link_type: str = "hardlink") -> None:
        if link_type not in ("hardlink", "copy", "reflink"):
            raise ReproError(
                f"cache.type {link_type!r} is unknown; use hardlink or copy "
                "(repro config cache.type hardlink)"
            )
        self.root = root
        self.workspace = workspace
        self.link_type = link_type
        self._can_link: bool | None = None
        self._can_clone = link_type == "reflink"
        self._manifests: dict[str, list[tuple[str, str]]] = {}
        self._complete: set[str] = set()  # folders (manifest ids) found with every object

    # -- objects -----------------------------------------------------------------------------
    def object_path(self, oid: str) -> Path:
        return self.root / object_key(oid)

    def exists(self, oid: str) -> bool:
        return os.path.exists(self.object_path(oid))

    def save_bytes(self, oid: str, data: bytes) -> None:
        """Store bytes (a manifest, a run-cache blob) under ``oid`` unless present."""
        dest = self.object_path(oid)
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, data, READ_ONLY)

    def read_manifest(self, oid: str) -> list[tuple[str, str]]:
        """(relpath, md5) entries of a cached manifest; parsed once per Cache."""
        if oid not in self._manifests:
            self._manifests[oid] = self._read_manifest(oid)
        return self._manifests[oid]

    def _read_manifest(self, oid: str) -> list[tuple[str, str]]:
        path = self.object_path(oid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ReproError(
                f"directory manifest {oid} is not in the cache; run 'repro pull'"
            ) from None
        return parse_manifest(data, oid, str(self.root))

    def all_objects(self) -> Iterable[str]:
        base = self.root / "files" / "md5"
        if not base.is_dir():
            return
        for fan in sorted(os.listdir(base)):
            folder = base / fan
            if len(fan) != 2 or not folder.is_dir():
                continue
            for name in sorted(os.listdir(folder)):
                if not name.startswith("."):
                    yield fan + name

    def missing(self, oid: str) -> list[str]:
        """Objects needed for ``oid`` (itself, or a manifest and its entries) not in the cache.

        A folder found complete is not listed again by this Cache (objects leave the cache
        only by gc, which holds the project lock)."""
        if not self.exists(oid):
            return [oid]
        if oid.endswith(".dir") and oid not in self._complete:
            entries = self.read_manifest(oid)
            held = held_objects(self.root, (md5 for _rel, md5 in entries))
            if missing := [md5 for _rel, md5 in entries if md5 not in held]:
                return missing
            self._complete.add(oid)
        return []

    # -- linking -----------------------------------------------------------------------------
    def can_link(self) -> bool:
        """Probe once whether hardlinks from the cache into the workspace work."""
        if self._can_link is None:
            self._can_link = self.link_type == "hardlink" and self._probe_link()
        return self._can_link

    def _probe_link(self) -> bool:
        tmp_dir = self.root / "files"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        source = _tmp_name(tmp_dir / "probe")
        target = _tmp_name(self.workspace / ".repro" / "tmp" / "probe")
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
            import fcntl

            try:
                fcntl.ioctl(dst, _FICLONE, src)
                return
            except OSError as exc:
                if exc.errno not in (*NO_KERNEL_COPY, errno.ENOTTY):
                    raise
                self._can_clone = False  # ext4 and friends: asked once per command
        copy_fd(src, dst)

    def quarantine_if_linked(self, oid: str, inode: int) -> Path | None:
        """Move object ``oid`` aside when it is the inode ``inode`` (a workspace file edited in
        place while linked to it); where it went, or None when it is another inode."""
        source = self.object_path(oid)
        try:
            if os.stat(source).st_ino != inode:
                return None
        except FileNotFoundError:
            return None
        folder = self.root / QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{oid}.{time.time_ns()}"
        os.rename(source, dest)
        return dest

    def _place(self, oid: str, dest: Path, writable: bool) -> None:
        """Make ``dest`` hold object ``oid``: a hardlink when allowed, else a copy."""
        source = self.object_path(oid)
        if not writable and self.can_link():
            tmp = _tmp_name(dest)
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EMLINK, errno.EXDEV):
                    raise
                _copy_atomic(source, dest, WRITABLE, self._copy)
                return
            try:
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return
        _copy_atomic(source, dest, WRITABLE, self._copy)

    # -- commit ------------------------------------------------------------------------------
    def commit_file(
        self, path: Path, md5: str, inode: int | None = None, nlink: int | None = None
    ) -> None:
        """Put the file at ``path`` (whose hash is ``md5``) into the cache and link it back.

        A file with other hardlinks (a stage's ``ln out .scratch``) is copied in, never
        linked: the cache must share no inode with anything a stage or a user can write.
        """
        if inode is None or nlink is None:
            st = os.lstat(path)
            inode, nlink = st.st_ino, st.st_nlink
        obj = self.object_path(md5)
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
                    _copy_atomic(path, obj, READ_ONLY, self._copy)
                    os.chmod(path, 0o644)
                    return
            else:
                _copy_atomic(path, obj, READ_ONLY, self._copy)
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
        present = held_objects(self.root, (md5 for _rel, md5 in info.entries))
        self.can_link()  # probe here, once, before the workers ask
        # Each worker owns a range of first hex digits: equal contents land in one worker, so
        # no two workers race to create the same object, nor lock the same fan-out folder.
        count = len(workers.split(info.entries, workers.cores()))
        parts: list[list[tuple[str, int, str]]] = [[] for _ in range(count)]
        for entry, (_rel, md5) in zip(info.files, info.entries, strict=True):
            parts[int(md5[0], 16) * count // 16].append((entry.path, entry.key[0], md5))
        known = link_counts or {}
        workers.run_parts(lambda batch: self._commit_batch(batch, present, known), parts)
        self.save_bytes(info.oid, info.manifest)

    def _commit_batch(
        self,
        batch: Sequence[tuple[str, int, str]],
        present: set[str],
        link_counts: Mapping[str, int],
    ) -> list[None]:
        base = os.path.join(self.root, "files", "md5")
        can_link = self.can_link()
        for path, inode, md5 in batch:
            nlink = 1
            if can_link and md5 not in present:
                nlink = link_counts.get(path) or os.lstat(path).st_nlink
            if can_link and md5 not in present and nlink == 1:
                os.chmod(path, READ_ONLY)  # the inode becomes the object: protect it first
                try:
                    _link_making_parent(path, os.path.join(base, md5[:2], md5[2:]))
                    present.add(md5)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.EMLINK, errno.EXDEV):
                        raise
            self.commit_file(Path(path), md5, inode, nlink)
            present.add(md5)
        return []

    def save_copy(self, path: Path, oid: str) -> None:
        """Store a copy of a file without linking it (uncached outs kept for the run-cache)."""
        dest = self.object_path(oid)
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomic(path, dest, READ_ONLY, self._copy)

    # -- checkout ----------------------------------------------------------------------------
    def is_safe_to_replace(self, path: Path, hasher: Hasher, label: str) -> bool:
        """True when nothing at ``path`` would be lost: it is absent or its content is cached."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        if stat_mod.S_ISDIR(st.st_mode):
            info = hasher.hash_dir(str(path), label)
            return all(self.exists(md5) for _rel, md5 in info.entries)
        if stat_mod.S_ISLNK(st.st_mode):
            return False
        return self.exists(hasher.hash_file(str(path), st))

    def checkout_file(self, oid: str, dest: Path, writable: bool = False) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        self._place(oid, dest, writable)

    def checkout_dir(
        self, oid: str, dest: Path, hasher: Hasher, label: str, force: bool
    ) -> list[Conflict]:
        """Make the folder ``dest`` match manifest ``oid``; return what it refused to destroy.

        ObjectsMissing where the cache lacks some of its objects. A folder to update is
        checked first, as it must not be left half-done. One that is not there yet is made
        by this call, and its links or copies failing tell, with no listing of the cache
        first: then (or on any other failure) the folder is removed again.
        """
        entries = self.read_manifest(oid)
        fresh = not os.path.lexists(dest)
        if not fresh and (missing := self.missing(oid)):
            raise ObjectsMissing(dest, missing)
        if os.path.lexists(dest) and not os.path.isdir(dest):
            if not force and not self.is_safe_to_replace(dest, hasher, label):
                return [Conflict(label)]
            os.unlink(dest)
        current: dict[str, tuple[str, int]] = {}  # relpath -> (md5, inode)
        if os.path.isdir(dest):
            info = hasher.hash_dir(str(dest), label)
            md5s = dict(info.entries)
            current = {f.relpath: (md5s[f.relpath], f.key[0]) for f in info.files}
        wanted = dict(entries)
        conflicts: list[Conflict] = []
        for rel, (md5, _st) in current.items():
            if wanted.get(rel) == md5:
                continue
            if not force and not self.exists(md5):
                conflicts.append(Conflict(f"{label}/{rel}"))
        if conflicts:
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
                if missing := self.missing(oid):
                    raise ObjectsMissing(dest, missing) from None
        dest_str = str(dest)
        prefix = dest_str + "/"  # relpaths are checked POSIX paths: plain concatenation will do
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
            parts = workers.run_parts(self._link_batch, workers.split(todo, workers.cores()))
            if missing := [md5 for part in parts for md5 in part]:
                raise ObjectsMissing(dest, missing)
        except BaseException:  # Ctrl-C included: a folder this call made goes again
            if fresh:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        if current:
            _remove_empty_dirs(dest)
        if can_link:
            # The tree now holds exactly the manifest's objects (hardlinks, whose bytes cannot
            # change without the cache noticing in fsck): remember it, not a row per file.
            tree = Scan(dest_str)
            hasher.state.put_dir(label, tree.fingerprint, oid, tree.listing)
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
            parts = workers.run_parts(self._copy_batch, workers.split(todo, workers.cores()))
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
                _copy_atomic(source, Path(target), WRITABLE, self._copy)
            else:
                self._place(md5, Path(target), writable=False)

        return self._each_object(batch, place)

    def _each_object(self, batch: Sequence[Item], place: Callable[[str, Item], None]) -> list[str]:
        """``place(object path, item)`` for each (target, md5, …) item; the md5s whose object
        the cache lacks (any other missing file is an error, raised)."""
        base = os.path.join(self.root, "files", "md5", "")
        missing: list[str] = []
        for item in batch:
            md5 = item[1]
            source = f"{base}{md5[:2]}/{md5[2:]}"
            try:
                place(source, item)
            except FileNotFoundError:
                if os.path.exists(source):
                    raise
                missing.append(md5)
        return missing

    def _same_inode(self, oid: str, inode: int) -> bool:
        try:
            return os.stat(self.object_path(oid)).st_ino == inode
        except FileNotFoundError:
            return False

    # -- integrity ---------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Re-hash every object; return a line per damaged object or manifest."""
        problems: list[str] = []
        oids = list(self.all_objects())
        present = set(oids)
        for oid in oids:
            path = self.object_path(oid)
            if oid.endswith(".dir"):
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


def held_objects(cache_root: Path, object_ids: Iterable[str]) -> set[str]:
    """Which of ``object_ids`` the cache at ``cache_root`` holds.

    Many are found by listing their fan-out folders: a fresh clone pulling 20,000 objects
    costs 256 listdirs, not 20,000 stats. A few are stat'ed one by one.
    """
    wanted = set(object_ids)
    base = os.path.join(cache_root, "files", "md5")
    if len(wanted) < LIST_ABOVE:
        return {oid for oid in wanted if os.path.exists(f"{base}/{oid[:2]}/{oid[2:]}")}
    found: set[str] = set()
    if not os.path.isdir(base):
        return found  # a fresh cache: no listdir of 256 folders that are not there
    for fan in {oid[:2] for oid in wanted}:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            found.update(fan + name for name in os.listdir(os.path.join(base, fan)))
    return found & wanted  # temp files are listed too: they never equal an object id


STAGING = "checkout-"  # a folder being copied out under .repro/tmp (fsutil.staging_name)
QUARANTINE = "quarantine"  # damaged objects, moved aside by Cache.quarantine_if_linked
_FICLONE = 0x40049409  # linux/fs.h: make dst share src's extents


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
    _copy_atomic(path, path, WRITABLE)
