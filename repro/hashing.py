"""Content hashes as SPEC §1.3 fixes them: md5 of a file's bytes; a directory's manifest md5 + .dir.

An unchanged file is never read twice: the state db maps (inode, mtime_ns, size) to its md5, and
an unchanged directory is recognised from a single walk by its fingerprint.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import os
import re
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from repro import workers
from repro.errors import ReproError
from repro.paths import has_git_part
from repro.state import FileKey, StateDB, file_key
from repro.walk import find_listing, mtime_ns, records, settled, touched_files

CHUNK = 1 << 20
# Hashing more files than this at once earns the "large directory" notice and a progress bar.
LARGE_DIR_FILES = 200


_buffers = threading.local()


def _read_buffer() -> tuple[bytearray, memoryview]:
    """This thread's read buffer, allocated once.

    ``os.read(fd, CHUNK)`` would allocate (mmap) a fresh CHUNK-sized object per call and unmap
    it again: three syscalls per file, and in a threaded process every unmap interrupts the
    other cores to flush their TLBs. On 20,000 small files that costs more than the hashing.
    """
    found: tuple[bytearray, memoryview] | None = getattr(_buffers, "buffer", None)
    if found is None:
        data = bytearray(CHUNK)
        found = _buffers.buffer = (data, memoryview(data))
    return found


def file_md5(path: str) -> str:
    """md5 hex digest of a file's raw bytes (what md5sum prints)."""
    return _md5_of(os.open(path, os.O_RDONLY))


def file_md5_links(path: str) -> str:
    """:func:`file_md5`, with ``+`` appended when the file has other hardlinks (fstat of the
    open file: the commit that follows must copy such a file into the cache, not link it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        shared = os.fstat(fd).st_nlink > 1
    except BaseException:
        os.close(fd)
        raise
    return _md5_of(fd) + ("+" if shared else "")


def _md5_of(fd: int) -> str:
    """md5 of what ``fd`` reads from its start; closes it."""
    buffer, view = _read_buffer()
    digest = hashlib.md5()
    try:
        # A regular file reads short only at its end: no extra read to see EOF.
        while (count := os.readv(fd, [buffer])) == CHUNK:
            digest.update(view)
        digest.update(view[:count])
    finally:
        os.close(fd)
    return digest.hexdigest()


def copy_md5(src: int, dst: int) -> str:
    """Copy all of ``src`` (from where it stands) into ``dst``; return the bytes' md5.

    One pass through user space: for a small file, cheaper than a kernel copy followed by
    reading it back (a large one is the other way round; see the folder remote).
    """
    buffer, view = _read_buffer()
    digest = hashlib.md5()
    while count := os.readv(src, [buffer]):
        chunk = view[:count]
        digest.update(chunk)
        while chunk:
            chunk = chunk[os.write(dst, chunk) :]
    return digest.hexdigest()


def bytes_md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


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


def manifest_bytes(entries: Sequence[tuple[str, str]]) -> bytes:
    """The manifest of DVC 3: sorted JSON list of {md5, relpath}, default separators."""
    payload = [{"md5": md5, "relpath": rel} for rel, md5 in entries]
    return json.dumps(payload, sort_keys=True).encode("utf-8")


def parse_manifest(data: bytes, where: str) -> list[tuple[str, str]]:
    """(relpath, md5) pairs of a manifest; a malformed one is a ReproError naming ``where``.

    Manifests come from remotes, so each relpath must be canonical (what posixpath.normpath
    leaves alone: relative, no empty, "." or ".." part), listed once, and not the folder of
    another: anything else could write outside the folder or make checkout depend on order.
    """
    try:
        payload = json.loads(data.decode("utf-8"))
        rels = list(map(_RELPATH, payload))
        md5s = list(map(_MD5_OF, payload))
        joined = "\0".join(rels)  # a TypeError when one is not a string
        hex_digits = "".join(md5s)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise ReproError(
            f"directory manifest {where} is malformed ({exc}); "
            "run 'repro fsck' (-r REMOTE for a remote's copy)"
        ) from exc
    # Checked all at once (a manifest can list 100,000 files, and checkout parses it), then
    # one by one to name the culprit only when something is wrong.
    if rels and (_bad_md5s(hex_digits, md5s) or _bad_relpaths(joined, rels)):
        raise ReproError(
            f"directory manifest {where} has a bad entry {_culprit(rels, md5s)}; "
            "run 'repro fsck' (-r REMOTE for a remote's copy)"
        )
    return list(zip(rels, md5s, strict=True))


def _bad_md5s(hex_digits: str, md5s: list[str]) -> bool:
    """True unless each of ``md5s`` (``hex_digits`` joined) is 32 lowercase hex digits."""
    if set(map(len, md5s)) != {32} or any(upper in hex_digits for upper in "ABCDEF"):
        return True
    try:  # all hex digits: fromhex skips whitespace, but then yields fewer bytes
        return len(bytes.fromhex(hex_digits)) != 16 * len(md5s)
    except ValueError:
        return True


def _bad_relpaths(joined: str, rels: list[str]) -> bool:
    """True unless the relpaths (``joined`` by NULs) are canonical, distinct, and none is
    also the folder of another, nor has a part named .git."""
    if joined.startswith("/") or "\0/" in joined or joined.count("\0") != len(rels) - 1:
        return True  # absolute, or a NUL in one
    if has_git_part(joined):
        return True
    files = set(rels)
    if len(files) != len(rels) or "" in files or "." in files or ".." in files:
        return True
    if joined.endswith(_EMPTY_OR_DOTS) or any(end in joined for end in _EMPTY_OR_DOTS_IN):
        return True  # "a/", "a/." or "a/.."
    # Every folder above an entry must be canonical and none a file. Level by level, each in
    # C: a Python loop per entry or folder would cost as much as the JSON itself.
    level = set(map(_FOLDER, map(str.rpartition, rels, itertools.repeat("/"))))
    level.discard("")
    folders = level
    while level:
        # Each part of a folder is the last part of one: "a//b" gives "a/", "a/./b" "a/.".
        level_text = "\0".join(level) + "\0"
        if any(end in level_text for end in _EMPTY_OR_DOTS_IN):
            return True
        if "/" not in level_text:
            break
        level = set(map(_FOLDER, map(str.rpartition, level, itertools.repeat("/"))))
        level.discard("")
        level -= folders
        folders = folders | level
    return "." in folders or ".." in folders or not files.isdisjoint(folders)


def _culprit(rels: list[str], md5s: list[str]) -> str:
    """The first bad entry, quoted, with why when the entry alone looks fine."""
    seen: set[str] = set()
    for rel, md5 in zip(rels, md5s, strict=True):
        if not is_md5(md5) or _bad_relpaths(rel, [rel]):
            return repr(rel)
        if rel in seen:
            return f"{rel!r} (listed twice)"
        seen.add(rel)
    folders = {rel.rpartition("/")[0] for rel in rels}
    for rel in rels:
        if rel in folders or any(folder.startswith(rel + "/") for folder in folders):
            return f"{rel!r} (both a file and a folder)"
    return "(none alone)"  # unreachable while the checks agree


_RELPATH = operator.itemgetter("relpath")
_MD5_OF = operator.itemgetter("md5")
_FOLDER = operator.itemgetter(0)
_EMPTY_OR_DOTS = ("/", "/.", "/..")
_EMPTY_OR_DOTS_IN = ("/\0", "/.\0", "/..\0")

_MD5 = re.compile(r"[0-9a-f]{32}\Z")


def is_md5(text: str) -> bool:
    return _MD5.match(text) is not None


def _not_regular(path: str, kind: str) -> ReproError:
    if kind == "l":
        return ReproError(
            f"{path} is a symlink; repro tracks regular files only: replace it with the file "
            "it points to, or leave it out"
        )
    return ReproError(f"{path} is not a regular file (a fifo, socket or device); leave it out")


def _walk_python(root: str) -> list[FileEntry]:
    found: list[FileEntry] = []
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                    continue
                st = entry.stat(follow_symlinks=False)
                if not stat_mod.S_ISREG(st.st_mode):
                    raise _not_regular(entry.path, "l" if entry.is_symlink() else "?")
                found.append(FileEntry(rel, entry.path, (st.st_ino, st.st_mtime_ns, st.st_size)))
    found.sort(key=lambda f: f.relpath)
    return found


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
    find is missing, a Python walk gives a fingerprint of another kind (the two never compare
    equal) and no listing. Equal fingerprints mean an unchanged tree (same names, inodes,
    mtimes and sizes).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.listing = find_listing(root)
        self._files: list[FileEntry] | None = None
        if self.listing is not None:
            self.fingerprint = "find:" + hashlib.md5(self.listing).hexdigest()
            return
        self._files = _walk_python(root)
        parts = [f"{f.relpath}\0{f.key[0]}\0{f.key[1]}\0{f.key[2]}" for f in self._files]
        joined = "\n".join(parts).encode("utf-8", "surrogateescape")
        self.fingerprint = "py:" + hashlib.md5(joined).hexdigest()

    def files(self) -> list[FileEntry]:
        """Every regular file, sorted by POSIX relpath (other kinds are refused)."""
        if self._files is None:
            assert self.listing is not None
            found = [_parse_record(self.root, record) for record in records(self.listing)]
            found.sort(key=lambda f: f.relpath)
            self._files = found
        return self._files


def walk_files(root: str) -> list[FileEntry]:
    """Every regular file below ``root``, sorted by POSIX relpath (other kinds are refused)."""
    return Scan(root).files()


Notify = Callable[[str], None]


class Hasher:
    """Hashes files and directories through the state db, on every core."""

    def __init__(
        self,
        state: StateDB,
        jobs: int | None = None,
        notify: Notify | None = None,
        progress: bool = True,
    ) -> None:
        self.state = state
        self.jobs = jobs or workers.cores()
        self.notify = notify or (lambda _msg: None)
        self.progress = progress
        self.files_hashed = 0  # how many files were actually read; tests watch it
        # Hashes read by this command, racily recent ones too (the state db skips those):
        # a later pass of the same command must not read the file again.
        self._read: dict[FileKey, str] = {}
        # What status_memo may remember: by path, the find listing of a folder, or the key of
        # a file, that this command hashed (or found remembered) and that is settled.
        self.settled_walks: dict[str, bytes] = {}
        self.settled_files: dict[str, FileKey] = {}
        # Whether a file this command read had other hardlinks (1 or 2 for "more"), seen by
        # the fstat of its read: a commit then needs no lstat of its own.
        self.link_counts: dict[str, int] = {}

    def hash_file(self, path: str, st: os.stat_result | None = None) -> str:
        key = file_key(st or os.stat(path))
        read_at = time.time_ns()
        md5 = self._hash_entry(FileEntry(path, path, key), read_at)
        if settled(key[1], read_at):
            self.settled_files[path] = key
        return md5

    def dir_oid(self, path: str, label: str) -> str:
        """Object id of a directory; one walk and one lookup when nothing changed."""
        read_at = time.time_ns()
        tree = Scan(path)
        known = self.state.get_dir(label, tree.fingerprint)
        if known is not None:  # remembered only when settled
            if tree.listing is not None:
                self.settled_walks[path] = tree.listing
            return known
        known = self._only_touched(tree, label, read_at)
        if known is not None:
            return known
        return self.hash_dir(path, label, (read_at, tree)).oid

    def _only_touched(self, tree: Scan, label: str, read_at: int) -> str | None:
        """The remembered object id when, since the last walk, a few files changed their mtime
        (or inode) but not their bytes; None when that is not so, or not cheap to tell.

        A ``touch``, a ``git checkout`` or an editor that saves unchanged bytes would otherwise
        cost a state lookup for every file of the tree and a new manifest.
        """
        previous = self.state.get_listing(label)
        if tree.listing is None or previous is None:
            return None
        oid, old_listing = previous
        touched = touched_files(old_listing, tree.listing)
        if touched is None:
            return None
        for rel, was, key in touched:
            relpath = os.fsdecode(rel)
            md5 = self.state.get_file(was)
            entry = FileEntry(relpath, os.path.join(tree.root, relpath), key)
            if md5 is None or self._hash_entry(entry, read_at) != md5:
                return None
        if all(settled(key[1], read_at) for _rel, _was, key in touched):
            self._put_dir(label, tree, oid)
        return oid

    def _put_dir(self, label: str, tree: Scan, oid: str) -> None:
        self.state.put_dir(label, tree.fingerprint, oid, tree.listing)
        if tree.listing is not None:
            self.settled_walks[tree.root] = tree.listing

    def _hash_entry(self, entry: FileEntry, read_at: int) -> str:
        """The md5 of one file, looked at (stat, or a walk) at ``read_at``.

        The hash is remembered only if a walk made then could be: a row without its listing
        would make the next comparison with that listing miss.
        """
        known = self._read.get(entry.key) or self.state.get_file(entry.key)
        if known is not None:
            return known
        md5 = self._read[entry.key] = file_md5(entry.path)
        self.files_hashed += 1
        self.state.put_files([(entry.key, md5)], read_at)
        return md5

    def hash_dir(self, path: str, label: str, scanned: tuple[int, Scan] | None = None) -> DirInfo:
        """Hash the directory at ``path``; ``label`` names it in messages and in the state db.

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
        oid = bytes_md5(manifest) + ".dir"
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
        if large and label not in self.state.linked():
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
