"""The links ledger is authoritative, the hash memo disposable: deleting the memos never loses
the ledger, and a project made by an earlier repro (both in .repro/state.db) keeps both."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from helpers import OLD_NS, Project, make_tree, run_as

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

    assert _rows(older) == {"files": 0, "dirs": 0, "listings": 0, "links": 1}
    (tmp_path / memo_state.FILE).unlink()  # deleting the memo...
    assert ledger.Ledger(older).linked() == {"data": "b" * 32 + ".dir"}  # ...loses no link


def _rows(db: Path) -> dict[str, int]:
    """Rows per table: the memo's moved out, the tables kept (an earlier repro, even on a
    read-only copy of the project, still finds the schema it expects)."""
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {
            name: conn.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in names
        }
    conn.close()
    return counts


def _as_an_earlier_repro_left_it(project: Project) -> None:
    """The hash memo's rows back in state.db, where repro kept them before the ledger split."""
    hashes = project.root / memo_state.FILE
    with sqlite3.connect(project.root / ".repro" / LEDGER_FILE) as conn:
        conn.execute("ATTACH DATABASE ? AS memo", (str(hashes),))
        for table in ("files", "dirs", "listings"):
            conn.execute(f"CREATE TABLE {table} AS SELECT * FROM memo.{table}")
        conn.execute("DETACH DATABASE memo")
    conn.close()
    hashes.unlink()


def test_an_upgrade_adopts_the_hashes_even_when_a_quick_status_comes_first(
    project: Project,
) -> None:
    """The quick status never makes the hash memo: the full one does, and adopts the rows an
    earlier repro left in state.db, so nothing is hashed again."""
    make_tree(project.root / "data", 20)
    project.ok("add", "data")
    project.ok("status")
    _as_an_earlier_repro_left_it(project)
    adopted = _rows(project.root / ".repro" / LEDGER_FILE)["files"]
    assert adopted == 20
    os.utime(project.root / "data" / "d000" / "f00000")  # a touch: the quick status looks in
    project.ok("status")
    assert _rows(project.root / memo_state.FILE)["files"] == adopted
    assert _rows(project.root / ".repro" / LEDGER_FILE)["files"] == 0


def test_a_read_only_project_without_a_hash_memo_still_answers(public_project: Project) -> None:
    """A user who cannot write the project (nobody, in root's project) gets a status that
    remembers nothing, not an internal error."""
    project = public_project
    make_tree(project.root / "data", 5)
    project.ok("add", "data")
    (project.root / memo_state.FILE).unlink()  # as an upgrade from an earlier repro finds it
    for path in (project.root, *project.root.rglob("*")):
        path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    result = run_as(65534, project.root, project.root / "nohome", "status")
    assert result.code == 0, result.err
    assert "up to date" in result.out
    assert not (project.root / memo_state.FILE).exists()


def test_a_hash_memo_kept_in_memory_adopts_nothing(tmp_path: Path) -> None:
    """Rows an earlier repro left are moved only into a memo on disk: one that could not be
    opened lives in memory, and adopting into it would lose them with the command."""
    older = tmp_path / LEDGER_FILE
    with sqlite3.connect(older) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT INTO files VALUES (7, ?, 3, ?)", (OLD_NS, "a" * 32))
    conn.close()
    unopenable = tmp_path / "missing-folder" / "hashes.db"
    hashes = memo_state.StateDB(unopenable, older=older)
    assert not hashes.db.on_disk
    hashes.close()
    assert _rows(older)["files"] == 1
