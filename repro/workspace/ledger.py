"""The links ledger: the outputs repro itself put in the work tree, with the object it put there.

Checkout may remove such a path later only while it still holds exactly that object, and an
output linked as an object that now hashes to something else was edited in place (with
hardlinks, its cache object with it). So the ledger is authoritative, not a memo: losing it
would leave stale outputs behind and let a damaged object through. It keeps its file,
``.repro/state.db``, which it once shared with the hash memo (now in .repro/tmp, which may be
deleted at any time).
"""

from __future__ import annotations

import os

from repro.database import Database

# Version 2 had the hash memo's tables here too (memo/state.py moves them out).
VERSION = 3
_SCHEMA = "CREATE TABLE IF NOT EXISTS links (path TEXT PRIMARY KEY, oid TEXT NOT NULL);"


class Ledger:
    """Output path → the object id repro materialised there."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.db = Database(path, _SCHEMA, VERSION)

    def linked(self) -> dict[str, str]:
        """Every output path repro materialised, with the object id it put there."""
        return {path: oid for path, oid in self.db.read("SELECT path, oid FROM links")}

    def put(self, path: str, oid: str) -> None:
        self.db.write(("INSERT OR REPLACE INTO links VALUES (?, ?)", [(path, oid)]))

    def drop(self, path: str) -> None:
        self.db.write(("DELETE FROM links WHERE path = ?", [(path,)]))

    def close(self) -> None:
        self.db.close()
