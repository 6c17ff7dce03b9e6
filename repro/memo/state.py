"""The hash memo: what repro already knows about files, so nothing is hashed twice.

Three tables, all keyed so that a stale row can never be mistaken for a fresh one:
- ``files``: inode → (mtime_ns, size, md5). A row counts only when mtime and size still match.
- ``dirs``: directory path → (fingerprint of every file's relpath/inode/mtime/size, object id),
  so an unchanged directory is recognised from one walk, without a lookup per file.
- ``listings``: directory path → the raw walk behind its ``dirs`` row, so that a walk that
  differs in a few records (a touched file) is recognised from those records alone.

It is only a memo: deleting it costs a hash of every tracked file, nothing else. Unlike the
marshal memos (memo/store.py) it survives an upgrade of repro: no version hashes a file's
bytes differently, and rebuilding it means reading every tracked byte again.
"""

from __future__ import annotations

import os

from repro.database import Database
from repro.memo.store import FOLDER
from repro.walk import FileKey as FileKey
from repro.walk import settled, touched_files

TYPE_CHECKING = False  # typing would cost the quick status an import
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from repro.database import Statement

FILE = os.path.join(FOLDER, "hashes.db")  # relative to the project's root

VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    inode INTEGER PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, md5 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dirs (
    path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, oid TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS listings (
    path TEXT PRIMARY KEY, oid TEXT NOT NULL, listing BLOB NOT NULL
);
"""


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class StateDB:
    """sqlite-backed memory of hashes; safe to share between threads of one process."""

    def __init__(
        self, path: str | os.PathLike[str], older: str | os.PathLike[str] | None = None
    ) -> None:
        """The memo in the db at ``path``; made anew, it takes over the rows of the db at
        ``older``, where an earlier repro kept them (so an upgrade hashes nothing again)."""
        self.db = Database(path, _SCHEMA, VERSION)
        if self.db.created and self.db.on_disk and older is not None:  # never into memory
            self.db.adopt(older, ("files", "dirs", "listings"))
        self._files: dict[int, tuple[int, int, str]] | None = None

    @property
    def read_only(self) -> bool:
        return self.db.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        """--dry: remember nothing."""
        self.db.read_only = value

    def close(self) -> None:
        self.db.close()

    # -- files -------------------------------------------------------------------------------
    def _load_files(self) -> dict[int, tuple[int, int, str]]:
        if self._files is None:
            rows = self.db.read("SELECT inode, mtime_ns, size, md5 FROM files")
            self._files = {ino: (mtime, size, md5) for ino, mtime, size, md5 in rows}
        return self._files

    def get_file(self, key: FileKey) -> str | None:
        """The md5 remembered for a file whose inode, mtime and size are ``key``."""
        with self.db.lock:
            if self._files is not None:
                row: tuple[int, int, str] | None = self._files.get(key[0])
            else:  # one lookup: not worth loading every row
                rows = self.db.read(
                    "SELECT mtime_ns, size, md5 FROM files WHERE inode = ?", (key[0],)
                )
                row = rows[0] if rows else None
        if row is not None and row[0] == key[1] and row[1] == key[2]:
            return str(row[2])
        return None

    def get_files(self, keys: Sequence[FileKey]) -> list[str | None]:
        """:meth:`get_file` for many keys at once."""
        with self.db.lock:
            files = self._load_files()
        found: list[str | None] = []
        for inode, mtime_ns, size in keys:
            row = files.get(inode)
            found.append(row[2] if row is not None and row[:2] == (mtime_ns, size) else None)
        return found

    def put_files(self, items: Iterable[tuple[FileKey, str]], read_at_ns: int) -> None:
        """Remember hashes of files read at ``read_at_ns`` (racily recent ones are skipped)."""
        rows = [(k[0], k[1], k[2], md5) for k, md5 in items if settled(k[1], read_at_ns)]
        if not rows:
            return
        with self.db.lock:
            if self._files is not None:
                for ino, mtime, size, md5 in rows:
                    self._files[ino] = (mtime, size, md5)
            self.db.write(("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows))

    def touched_only(
        self, folder: str, old: bytes, new: bytes, md5_of: Callable[[str, FileKey], str]
    ) -> list[tuple[FileKey, str]] | None:
        """(key now, md5) of each file whose record differs between two find listings of
        ``folder``, when every such file kept the bytes this memo knows it by before (a
        ``touch``, a ``git checkout``, an editor that saved the same bytes); None when any did
        not, or the listings differ otherwise. ``md5_of(path, key now)`` hashes a file."""
        touched = touched_files(old, new)
        if touched is None:
            return None
        found = []
        for rel, was, key in touched:
            md5 = self.get_file(was)
            if md5 is None or md5_of(os.path.join(folder, os.fsdecode(rel)), key) != md5:
                return None
            found.append((key, md5))
        return found

    # -- dirs --------------------------------------------------------------------------------
    def get_dir(self, path: str, fingerprint: str) -> str | None:
        rows = self.db.read(
            "SELECT oid FROM dirs WHERE path = ? AND fingerprint = ?", (path, fingerprint)
        )
        return str(rows[0][0]) if rows else None

    def put_dir(self, path: str, fingerprint: str, oid: str, listing: bytes | None = None) -> None:
        """Remember a directory's object id by its fingerprint, and the walk behind it."""
        memo: Statement
        if listing is None:
            memo = ("DELETE FROM listings WHERE path = ?", [(path,)])
        else:
            memo = ("INSERT OR REPLACE INTO listings VALUES (?, ?, ?)", [(path, oid, listing)])
        dirs = ("INSERT OR REPLACE INTO dirs VALUES (?, ?, ?)", [(path, fingerprint, oid)])
        self.db.write(dirs, memo)

    def get_listing(self, path: str) -> tuple[str, bytes] | None:
        """(object id, raw walk) last remembered for the directory ``path``."""
        rows = self.db.read("SELECT oid, listing FROM listings WHERE path = ?", (path,))
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None
