"""The sqlite files of .repro (the hash memo, the links ledger), opened and written one way.

A rollback journal, not WAL: reading creates no files (WAL would add -wal and -shm beside the
db on every open), and a kill -9 mid-transaction still rolls back cleanly on the next open.
Writers are brief, so readers rarely wait. A write that the disk refuses (a read-only
project, a db locked for too long) is skipped: the hash memo learns it again, and a link the
ledger misses only makes checkout keep that output where it would have removed it.
"""

from __future__ import annotations

import os
import sqlite3
import threading

TYPE_CHECKING = False  # typing itself costs the quick status an import
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    Statement = tuple[str, Sequence[tuple[object, ...]]]  # sql, and the rows it runs over


class Database:
    """One sqlite file with its schema; safe to share between threads of one process."""

    def __init__(self, path: str | os.PathLike[str], schema: str, version: int) -> None:
        self.path = path
        self.read_only = False  # --dry: write nothing
        self.lock = threading.RLock()  # held around a read and what depends on it, too
        self.on_disk = True  # False: it could not be opened (a read-only project), so in memory
        conn = None
        try:
            conn = sqlite3.connect(os.fspath(path), timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=DELETE").fetchall()
        except sqlite3.OperationalError:
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            self.on_disk = False
        self.conn = conn
        self.created = False  # whether this open made the schema
        try:
            # fetchall, never fetchone: an unfinished statement keeps sqlite from closing.
            if self.conn.execute("PRAGMA user_version").fetchall()[0][0] != version:
                self.conn.executescript(schema + f"PRAGMA user_version = {version};")
                self.created = True
        except sqlite3.OperationalError:
            pass  # read-only project or another process creating it at once

    def read(self, sql: str, values: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.conn.execute(sql, values).fetchall()

    def write(self, *statements: Statement) -> None:
        """Run every (sql, rows) statement over its rows, in one transaction."""
        if self.read_only:
            return
        try:
            with self.lock, self.conn:
                for sql, rows in statements:
                    self.conn.executemany(sql, rows)
        except sqlite3.OperationalError:
            pass

    def adopt(self, older: str | os.PathLike[str], tables: Sequence[str]) -> None:
        """Move the rows of ``tables`` (same schema) from the db at ``older``, which a previous
        version of repro kept them in, into this one. The tables stay there, empty: an older
        repro opening that db, even read-only, still finds them."""
        if not os.path.exists(older):
            return
        try:
            with self.lock:
                self.conn.execute("ATTACH DATABASE ? AS older", (os.fspath(older),))
                try:
                    there = self.conn.execute(
                        "SELECT name FROM older.sqlite_master WHERE type = 'table'"
                    ).fetchall()
                    moved = [table for table in tables if (table,) in there]
                    with self.conn:  # one transaction over both files
                        for table in moved:
                            self.conn.execute(
                                f"INSERT OR IGNORE INTO {table} SELECT * FROM older.{table}"
                            )
                            self.conn.execute(f"DELETE FROM older.{table}")
                finally:
                    self.conn.execute("DETACH DATABASE older")
        except sqlite3.OperationalError:
            pass  # kept there: this db starts empty

    def close(self) -> None:
        with self.lock:
            self.conn.close()
