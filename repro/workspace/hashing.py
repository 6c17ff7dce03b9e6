"""The content ids of workspace paths: md5 of a file's bytes; for a folder, the md5 of its manifest
+ ".dir" (objects/manifest.py).

An unchanged file is never read twice: the hash memo (memo/state.py) maps (inode, mtime_ns,
size) to its md5, and an unchanged directory is recognised from a single walk by its fingerprint.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat as stat_mod
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from repro import host, workers
from repro.errors import ReproError
from repro.memo.state import FileKey, StateDB, file_key
from repro.objects.digest import bytes_md5, file_md5, file_md5_links
from repro.objects.ids import manifest_id
from repro.objects.manifest import manifest_bytes
from repro.walk import find_listing, mtime_ns, python_listing, records, settled

# Hashing more files than this at once earns the "large directory" notice and a progress bar.
LARGE_DIR_FILES = 200


class FileEntry(NamedTuple):
    """One file below a tracked directory (a tuple: tens of thousands are made per walk)."""

    relpath: str  # POSIX, relative to the directory
    path: str
    key: FileKey  # (inode, mtime_ns, size)


class DirInfo(NamedTuple):
    """A hashed directory: its object id and its entries, as stored in the manifest."""

    oid: str
    manifest: bytes
    entries: tuple[tuple[str, str], ...]  # (relpath, md5), sorted by relpath
    files: tuple[FileEntry, ...]


def _not_regular(path: str, kind: str) -> ReproError:
    if kind == "l":
        return ReproError(
            f"{path} is a symlink; repro tracks regular files only: replace it with the file "
            "it points to, or leave it out"
        )
    return ReproError(f"{path} is not a regular file (a fifo, socket or device); leave it out")


def _parse_record(root: str, record: bytes) -> FileEntry:
    kind, inode, mtime, size, rel = record.split(b" ", 4)
    relpath = os.fsdecode(rel)
    if kind != b"f":
        raise _not_regular(os.path.join(root, relpath), kind.decode())
    key = (int(inode), mtime_ns(mtime), int(size))
    return FileEntry(relpath, os.path.join(root, relpath), key)


class Scan:
    """One walk of a tree: its fingerprint, and its files parsed only when asked.

    GNU find walks and stats in C, several times faster than os.scandir from Python; its raw
    ``listing`` is kept, so that a later walk can be compared with it record by record. Where
    find cannot list, the same records come from Python (walk.python_listing), which also
    says why a tree cannot be walked. Equal fingerprints mean an unchanged tree (same names,
    inodes, mtimes and sizes).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        # None: find failed and so did a Python walk; walked again here to raise its OSError.
        self.listing = find_listing(root) or python_listing(root)
        self._files: list[FileEntry] | None = None
        self.fingerprint = "find:" + hashlib.md5(self.listing).hexdigest()

    def files(self) -> list[FileEntry]:
        """Every regular file, sorted by POSIX relpath (other kinds are refused)."""
        if self._files is None:
            found = [_parse_record(self.root, record) for record in records(self.listing)]
            found.sort(key=lambda f: f.relpath)
            self._files = found
        return self._files


def walk_files(root: str) -> list[FileEntry]:
    """Every regular file below ``root``, sorted by POSIX relpath (other kinds are refused)."""
    return Scan(root).files()


Notify = Callable[[str], None]


class Observer(Protocol):
    """Told what the hasher looked at and found settled (see walk.RACY_NS), by full path: the
    status memo (memo/status.py) remembers it."""

    def file(self, path: str, key: FileKey) -> None: ...

    def folder(self, path: str, listing: bytes) -> None: ...


class Hasher:
    """Hashes files and directories through the hash memo, on every core."""

    def __init__(
        self,
        state: StateDB,
        jobs: int | None = None,
        notify: Notify | None = None,
        progress: bool = True,
        materialised: Callable[[str], bool] = lambda _label: False,
        observer: Observer | None = None,
    ) -> None:
        self.state = state
        self.jobs = jobs or host.cores()
        self.notify = notify or (lambda _msg: None)
        self.progress = progress
        # Whether repro put the folder it calls ``label`` in the work tree itself (its objects
        # are then in the cache, and its first hash is behind us).
        self.materialised = materialised
        self.observer = observer
        self.files_hashed = 0  # how many files were actually read; tests watch it
        # Hashes read by this command, racily recent ones too (the hash memo skips those):
        # a later pass of the same command must not read the file again.
        self._read: dict[FileKey, str] = {}
        # Whether a file this command read had other hardlinks (1 or 2 for "more"), seen by
        # the fstat of its read: a commit then needs no lstat of its own.
        self.link_counts: dict[str, int] = {}

    def hash_file(self, path: str, st: os.stat_result | None = None) -> str:
        key = file_key(st or os.stat(path))
        read_at = time.time_ns()
        md5 = self._hash_entry(path, key, read_at)
        if settled(key[1], read_at) and self.observer is not None:
            self.observer.file(path, key)
        return md5

    def dir_oid(self, path: str, label: str) -> str:
        """Object id of a directory; one walk and one lookup when nothing changed."""
        read_at = time.time_ns()
        tree = Scan(path)
        known = self.state.get_dir(label, tree.fingerprint)
        if known is not None:  # remembered only when settled
            self._observe(tree)
            return known
        known = self._only_touched(tree, label, read_at)
        if known is not None:
            return known
        return self.hash_dir(path, label, (read_at, tree)).oid

    def _only_touched(self, tree: Scan, label: str, read_at: int) -> str | None:
        """The remembered object id when, since the last walk, a few files changed their mtime
        (or inode) but not their bytes; None when that is not so, or not cheap to tell.

        A ``touch``, a ``git checkout`` or an editor that saves unchanged bytes would otherwise
        cost a memo lookup for every file of the tree and a new manifest.
        """
        previous = self.state.get_listing(label)
        if tree.listing is None or previous is None:
            return None
        oid, old_listing = previous
        touched = self.state.touched_only(
            tree.root,
            old_listing,
            tree.listing,
            lambda path, key: self._hash_entry(path, key, read_at),
        )
        if touched is None:
            return None
        if all(settled(key[1], read_at) for key, _md5 in touched):
            self._put_dir(label, tree, oid)
        return oid

    def _put_dir(self, label: str, tree: Scan, oid: str) -> None:
        self.state.put_dir(label, tree.fingerprint, oid, tree.listing)
        self._observe(tree)

    def _observe(self, tree: Scan) -> None:
        """Tell the observer of a settled walk (a Python walk has no listing to tell)."""
        if tree.listing is not None and self.observer is not None:
            self.observer.folder(tree.root, tree.listing)

    def _hash_entry(self, path: str, key: FileKey, read_at: int) -> str:
        """The md5 of the file at ``path``, looked at (stat, or a walk) at ``read_at``.

        The hash is remembered only if a walk made then could be: a row without its listing
        would make the next comparison with that listing miss.
        """
        known = self._read.get(key) or self.state.get_file(key)
        if known is not None:
            return known
        md5 = self._read[key] = file_md5(path)
        self.files_hashed += 1
        self.state.put_files([(key, md5)], read_at)
        return md5

    def hash_dir(self, path: str, label: str, scanned: tuple[int, Scan] | None = None) -> DirInfo:
        """Hash the directory at ``path``; ``label`` names it in messages and in the hash memo.

        ``scanned`` is (time before the walk, the walk) when the caller walked already.
        """
        # The walk comes before reading: a change meanwhile makes its fingerprint stale.
        read_at, tree = scanned or (time.time_ns(), Scan(path))
        files = tree.files()
        known_oid = self.state.get_dir(label, tree.fingerprint)
        md5s = self.state.get_files([f.key for f in files])
        if self._read:
            md5s = [m or self._read.get(f.key) for f, m in zip(files, md5s, strict=True)]
        if known_oid is not None and all(m is not None for m in md5s):
            entries = tuple(
                (f.relpath, m) for f, m in zip(files, md5s, strict=True) if m is not None
            )
            manifest = manifest_bytes(entries)
            return DirInfo(known_oid, manifest, entries, tuple(files))
        missing = [i for i, m in enumerate(md5s) if m is None]
        if missing:
            self._hash_many(files, missing, md5s, label, read_at)
        entries = tuple((f.relpath, str(m)) for f, m in zip(files, md5s, strict=True))
        manifest = manifest_bytes(entries)
        oid = manifest_id(bytes_md5(manifest))
        if all(settled(f.key[1], read_at) for f in files):
            self._put_dir(label, tree, oid)
        return DirInfo(oid, manifest, entries, tuple(files))

    def _hash_many(
        self,
        files: Sequence[FileEntry],
        missing: list[int],
        md5s: list[str | None],
        label: str,
        read_at: int,
    ) -> None:
        large = len(missing) >= LARGE_DIR_FILES
        # Once repro has committed or checked out the folder, its objects are in the cache: a
        # new hash (files copied in by a checkout, too recent to remember) is not the "once".
        if large and not self.materialised(label):
            self.notify(f"Computing md5 for a large directory {label}. This is only done once.")
        paths = [files[i].path for i in missing]

        def work(batch: Sequence[str]) -> list[str]:
            return [file_md5_links(path) for path in batch]

        bar = None
        if large and self.progress:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: the workers are forked processes
            # disable=None: no bar when stderr is not a terminal (logs, CI, pipes).
            bar = tqdm(
                total=len(missing), unit="file", desc=f"md5 {label}", leave=False, disable=None
            )
        try:
            parts = workers.run_parts(
                work, workers.split(paths, self.jobs), None if bar is None else _counter(bar)
            )
        finally:
            if bar is not None:
                bar.close()
        for i, md5 in zip(missing, itertools.chain.from_iterable(parts), strict=True):
            self.link_counts[files[i].path] = 2 if md5.endswith("+") else 1
            md5s[i] = md5.removesuffix("+")
        self.files_hashed += len(missing)
        self.state.put_files(((files[i].key, str(md5s[i])) for i in missing), read_at)


def _counter(bar: Any) -> Callable[[list[str]], object]:
    return lambda done: bar.update(len(done))


def is_regular_file(st: os.stat_result) -> bool:
    return stat_mod.S_ISREG(st.st_mode)


def read_path_md5(hasher: Hasher, path: Path, label: str) -> str | None:
    """Object id of a file or directory, or None when it does not exist."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder on the way is
        return None
    if stat_mod.S_ISLNK(st.st_mode):
        raise ReproError(
            f"{label} is a symlink; repro tracks regular files and folders only: "
            "replace it with what it points to"
        )
    if stat_mod.S_ISDIR(st.st_mode):
        return hasher.dir_oid(str(path), label)
    if not stat_mod.S_ISREG(st.st_mode):  # reading a fifo would block for ever
        raise _not_regular(label, "?")
    return hasher.hash_file(str(path), st)
