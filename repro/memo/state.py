"""The state database: what repro already knows about files, so nothing is hashed twice.

Three tables, all keyed so that a stale row can never be mistaken for a fresh one:
- ``files``: inode → (mtime_ns, size, md5). A row counts only when mtime and size still match.
- ``dirs``: directory path → (fingerprint of every file's relpath/inode/mtime/size, object id),
  so an unchanged directory is recognised from one walk, without a lookup per file.
- ``listings``: directory path → the raw walk behind its ``dirs`` row, so that a walk that
  differs in a few records (a touched file) is recognised from those records alone.
- ``links``: outputs that repro itself materialised, with the object id it put there; checkout
  may remove such a path later only while it still holds exactly that object.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence

from repro.walk import FileKey as FileKey
from repro.walk import settled

TYPE_CHECKING = False  # typing would cost status_memo's quick path an import
if TYPE_CHECKING:
    from pathlib import Path

SCHEMA_VERSION = 2
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
CREATE TABLE IF NOT EXISTS links (
    path TEXT PRIMARY KEY, oid TEXT NOT NULL
);
"""

Statement = tuple[str, Sequence[tuple[object, ...]]]


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# Strong references: a state db must be closed by close_all, not whenever the collector
# gets to it (sqlite removes the WAL files on close, which touches .repro/).
_OPEN: set[StateDB] = set()


def close_all() -> None:
    """Close every state db of this process now (the CLI does at exit), not at some later GC:
    sqlite removes its WAL files on close, and that must not happen during another command."""
    for state in list(_OPEN):
        state.close()


class StateDB:
    """sqlite-backed memory of hashes; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        _OPEN.add(self)
        self._lock = threading.Lock()
        self._files: dict[int, tuple[int, int, str]] | None = None
        self.read_only = False  # --dry: remember nothing, touch nothing
        self._conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        # A rollback journal, not WAL: reading creates no files (WAL would add -wal and -shm
        # beside the db on every open), and a kill -9 mid-transaction still rolls back cleanly
        # on the next open. Writers are brief, so readers rarely wait.
        self._conn.execute("PRAGMA journal_mode=DELETE").fetchall()
        try:
            # fetchall, never fetchone: an unfinished statement keeps sqlite from closing
            # (and removing its WAL files) when close() is called.
            if self._conn.execute("PRAGMA user_version").fetchall()[0][0] != SCHEMA_VERSION:
                self._conn.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except sqlite3.OperationalError:
            pass  # read-only project or another process creating it at once

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        _OPEN.discard(self)

    # -- files -------------------------------------------------------------------------------
    def _load_files(self) -> dict[int, tuple[int, int, str]]:
        if self._files is None:
            rows = self._conn.execute("SELECT inode, mtime_ns, size, md5 FROM files")
            self._files = {ino: (mtime, size, md5) for ino, mtime, size, md5 in rows}
        return self._files

    def get_file(self, key: FileKey) -> str | None:
        """The md5 remembered for a file whose inode, mtime and size are ``key``."""
        with self._lock:
            if self._files is not None:
                row = self._files.get(key[0])
            else:  # one lookup: not worth loading every row
                rows = self._conn.execute(
                    "SELECT mtime_ns, size, md5 FROM files WHERE inode = ?", (key[0],)
                ).fetchall()
                row = rows[0] if rows else None
        if row is not None and row[0] == key[1] and row[1] == key[2]:
            return str(row[2])
        return None

    def get_files(self, keys: Sequence[FileKey]) -> list[str | None]:
        """:meth:`get_file` for many keys at once."""
        with self._lock:
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
        with self._lock:
            if self._files is not None:
                for ino, mtime, size, md5 in rows:
                    self._files[ino] = (mtime, size, md5)
            self._write("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)

    # -- dirs --------------------------------------------------------------------------------
    def get_dir(self, path: str, fingerprint: str) -> str | None:
        with self._lock:
            rows = self._conn.execute(
                "SELECT oid FROM dirs WHERE path = ? AND fingerprint = ?", (path, fingerprint)
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def put_dir(self, path: str, fingerprint: str, oid: str, listing: bytes | None = None) -> None:
        """Remember a directory's object id by its fingerprint, and the walk behind it."""
        memo: Statement
        if listing is None:
            memo = ("DELETE FROM listings WHERE path = ?", [(path,)])
        else:
            memo = ("INSERT OR REPLACE INTO listings VALUES (?, ?, ?)", [(path, oid, listing)])
        with self._lock:
            self._write(
                "INSERT OR REPLACE INTO dirs VALUES (?, ?, ?)", [(path, fingerprint, oid)], memo
            )

    def get_listing(self, path: str) -> tuple[str, bytes] | None:
        """(object id, raw walk) last remembered for the directory ``path``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT oid, listing FROM listings WHERE path = ?", (path,)
            ).fetchall()
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None

    # -- links -------------------------------------------------------------------------------
    def linked(self) -> dict[str, str]:
        """Every output path repro materialised, with the object id it put there."""
        with self._lock:
            return {p: o for p, o in self._conn.execute("SELECT path, oid FROM links")}

    def put_link(self, path: str, oid: str) -> None:
        with self._lock:
            self._write("INSERT OR REPLACE INTO links VALUES (?, ?)", [(path, oid)])

    def drop_link(self, path: str) -> None:
        with self._lock:
            self._write("DELETE FROM links WHERE path = ?", [(path,)])

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]], *more: Statement) -> None:
        """Run ``sql`` over ``rows`` (and any more statements) in one transaction."""
        if self.read_only:
            return
        try:
            with self._conn:
                for statement, values in ((sql, rows), *more):
                    self._conn.executemany(statement, values)
        except sqlite3.OperationalError:
            # A read-only project (or a locked db) only loses a memo, never correctness.
            pass
