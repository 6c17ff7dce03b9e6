"""The links ledger is authoritative, the hash memo disposable: deleting the memos never loses
the ledger, and a project made by an earlier repro (both in .repro/state.db) keeps both."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from helpers import OLD_NS, Project, make_tree

from repro.memo import state as memo_state
from repro.project import LEDGER_FILE
from repro.workspace import ledger


def test_deleting_the_memos_keeps_what_repro_materialised(project: Project) -> None:
    make_tree(project.root / "data", 6)
    project.ok("add", "data")
    (project.root / "data.repro").unlink()  # no stage wants data any more...
    shutil.rmtree(project.root / ".repro" / "tmp")  # ...and every memo is gone
    result = project.ok("checkout")
    assert "D\tdata" in result.out + result.err  # the ledger still knew repro made it
    assert not (project.root / "data").exists()


OLD_SCHEMA = """
CREATE TABLE files (
    inode INTEGER PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, md5 TEXT NOT NULL
);
CREATE TABLE dirs (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, oid TEXT NOT NULL);
CREATE TABLE listings (path TEXT PRIMARY KEY, oid TEXT NOT NULL, listing BLOB NOT NULL);
CREATE TABLE links (path TEXT PRIMARY KEY, oid TEXT NOT NULL);
PRAGMA user_version = 2;
"""


def test_a_state_db_of_an_earlier_repro_keeps_its_links_and_its_hashes(tmp_path: Path) -> None:
    older = tmp_path / ".repro" / LEDGER_FILE
    older.parent.mkdir(parents=True)
    with sqlite3.connect(older) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT INTO files VALUES (7, ?, 3, ?)", (OLD_NS, "a" * 32))
        conn.execute("INSERT INTO dirs VALUES ('data', 'find:x', ?)", ("b" * 32 + ".dir",))
        conn.execute("INSERT INTO links VALUES ('data', ?)", ("b" * 32 + ".dir",))
    conn.close()
    (tmp_path / memo_state.FILE).parent.mkdir(parents=True)

    links = ledger.Ledger(older)
    assert links.linked() == {"data": "b" * 32 + ".dir"}
    hashes = memo_state.StateDB(tmp_path / memo_state.FILE, older=older)
    assert hashes.get_file((7, OLD_NS, 3)) == "a" * 32  # nothing to hash again
    assert hashes.get_dir("data", "find:x") == "b" * 32 + ".dir"
    hashes.close()
    links.close()

    with sqlite3.connect(older) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    conn.close()
    assert tables == {"links"}  # the memo's rows moved out; the ledger's stay
    (tmp_path / memo_state.FILE).unlink()  # deleting the memo...
    assert ledger.Ledger(older).linked() == {"data": "b" * 32 + ".dir"}  # ...loses no link
