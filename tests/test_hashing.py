from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import Project, make_tree, on_terminal

from repro import host
from repro.errors import CorruptObjectError, ReproError
from repro.memo.state import StateDB
from repro.objects.digest import bytes_md5, file_md5
from repro.objects.ids import manifest_id
from repro.objects.manifest import manifest_bytes, parse_manifest
from repro.workspace.hashing import Hasher


def test_file_md5_is_what_md5sum_prints(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 5000)
    md5sum = subprocess.run(["md5sum", str(path)], capture_output=True, text=True, check=True)
    assert file_md5(str(path)) == md5sum.stdout.split()[0]


def test_directory_hash_is_dvc3_manifest(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b").write_text("b")
    (tmp_path / "d" / "sub" / "a").write_text("a")
    hasher = Hasher(StateDB(tmp_path / "state.db"))
    info = hasher.hash_dir(str(tmp_path / "d"), "d")
    entries = [
        {"md5": hashlib.md5(b"b").hexdigest(), "relpath": "b"},
        {"md5": hashlib.md5(b"a").hexdigest(), "relpath": "sub/a"},
    ]
    expected = json.dumps(entries, sort_keys=True).encode()
    assert info.manifest == expected == manifest_bytes(info.entries)
    assert info.oid == hashlib.md5(expected).hexdigest() + ".dir"


def test_unchanged_files_are_never_hashed_twice(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", 50, folders=5)
    state = StateDB(tmp_path / "state.db")
    first = Hasher(state)
    oid = first.hash_dir(str(tmp_path / "d"), "d").oid
    assert first.files_hashed == 50
    second = Hasher(StateDB(tmp_path / "state.db"))  # a new process, same db
    assert second.dir_oid(str(tmp_path / "d"), "d") == oid
    assert second.hash_dir(str(tmp_path / "d"), "d").oid == oid
    assert second.files_hashed == 0
    (tmp_path / "d" / "d001" / "f00001").write_bytes(b"changed")
    third = Hasher(StateDB(tmp_path / "state.db"))
    assert third.dir_oid(str(tmp_path / "d"), "d") != oid
    assert third.files_hashed == 1


def _touch(path: Path, seconds: int) -> None:
    """Give ``path`` a new, settled mtime without changing its bytes."""
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


def test_touched_files_are_told_apart_from_changed_ones(tmp_path: Path) -> None:
    tree = tmp_path / "d"
    make_tree(tree, 200, folders=4)
    oid = Hasher(StateDB(tmp_path / "state.db")).hash_dir(str(tree), "d").oid
    touched = [tree / "d000" / "f00000", tree / "d001" / "f00001", tree / "d003" / "f00199"]
    for path in touched:
        _touch(path, 1_600_000_000)
    second = Hasher(StateDB(tmp_path / "state.db"))
    assert second.dir_oid(str(tree), "d") == oid
    assert second.files_hashed == len(touched)  # the touched files only, not the other 197
    third = Hasher(StateDB(tmp_path / "state.db"))
    assert third.dir_oid(str(tree), "d") == oid
    assert third.files_hashed == 0  # the new walk was remembered

    # Same size, new bytes, an old mtime: still a change.
    path = tree / "d002" / "f00002"
    path.write_bytes(bytes(len(path.read_bytes())))
    _touch(path, 1_500_000_000)
    fourth = Hasher(StateDB(tmp_path / "state.db"))
    changed = fourth.dir_oid(str(tree), "d")
    assert changed != oid
    assert changed == Hasher(StateDB(tmp_path / "fresh.db")).hash_dir(str(tree), "d").oid

    # A rename keeps every byte but changes the manifest.
    path.rename(tree / "d002" / "renamed")
    renamed = Hasher(StateDB(tmp_path / "state.db")).dir_oid(str(tree), "d")
    assert renamed not in (oid, changed)
    assert renamed == Hasher(StateDB(tmp_path / "fresh2.db")).hash_dir(str(tree), "d").oid


def test_many_touched_files_fall_back_to_a_full_lookup(tmp_path: Path) -> None:
    tree = tmp_path / "d"
    make_tree(tree, 300, folders=3)
    oid = Hasher(StateDB(tmp_path / "state.db")).hash_dir(str(tree), "d").oid
    for index, path in enumerate(sorted(tree.rglob("f*"))[:150]):
        _touch(path, 1_600_000_000 + index)
    again = Hasher(StateDB(tmp_path / "state.db"))
    assert again.dir_oid(str(tree), "d") == oid
    assert again.files_hashed == 150


def test_second_status_hashes_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(project.root / "data", 300, folders=3)
    project.ok("add", "data")
    import repro.workspace.hashing as hashing

    calls: list[str] = []
    real = file_md5  # repro.objects.digest's, which hashing uses

    def counting(path: str) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(hashing, "file_md5", counting)
    assert project.repro("status").code == 0
    assert project.repro("status").code == 0
    assert calls == []
    project.write("data/d000/f00000", "new content")
    assert project.repro("status").code == 1
    assert len(calls) == 1


def test_large_directory_shows_notice_and_progress(project: Project) -> None:
    make_tree(project.root / "data", 400, folders=4)
    result = project.ok("add", "data")
    assert "Computing md5 for a large directory data. This is only done once." in result.out
    assert "md5 data" not in result.err  # no bar when stderr is not a terminal


def test_progress_bar_on_a_terminal(project: Project) -> None:
    """On a terminal (a real pty), the first hash of a large directory shows a tqdm bar."""
    make_tree(project.root / "data", 3000, folders=10)
    code, screen = on_terminal(project.root, "add", "data")
    assert code == 0
    assert "md5 data:" in screen and "file" in screen, screen


MD5 = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    "entries",
    [
        [("/etc/passwd", MD5)],
        [("ok", MD5), ("a/../../b", MD5)],
        [("..", MD5)],
        [("ok", MD5), ("a/..", MD5)],
        [("ok", MD5), ("", MD5)],
        [("a\0b", MD5)],
        [("a", MD5[:31])],
        [("a", MD5 + "0")],
        [("a", MD5.upper())],
        [("a", MD5[:31]), ("b", MD5 + "0")],  # the right length in total, not each
        [("a", MD5 + "\n" + MD5)],  # two md5s in one
    ],
)
def test_a_bad_manifest_entry_is_named(entries: list[tuple[str, str]]) -> None:
    data = json.dumps([{"md5": md5, "relpath": rel} for rel, md5 in entries]).encode()
    with pytest.raises(ReproError, match="has a bad entry"):
        _parse(data)


def test_odd_but_contained_relpaths_are_fine() -> None:
    entries = [("..a", MD5), ("a..", MD5), ("a/...", MD5), (".x/y", MD5), ("a/..\n", MD5)]
    assert _parse(manifest_bytes(entries)) == entries
    assert _parse(b"[]") == []


def test_a_manifest_that_does_not_hash_to_its_id_is_corrupt() -> None:
    data = manifest_bytes([("a", MD5)])
    with pytest.raises(CorruptObjectError, match="is corrupt"):
        parse_manifest(data, manifest_id(bytes_md5(data + b" ")), "the cache")


def _parse(data: bytes) -> list[tuple[str, str]]:
    """parse_manifest of bytes under their own id: only the entries are judged."""
    return parse_manifest(data, manifest_id(bytes_md5(data)), "m")


@pytest.mark.parametrize("odd_name", ["plain", "-starts-with-dash", "(paren", "!bang", "sp ace"])
def test_a_split_walk_lists_what_one_find_lists(tmp_path: Path, odd_name: str) -> None:
    """Two finds share the top-level names (or one does all, where a name would read as find
    syntax): either way the same records, and the same listing every time."""
    from repro.walk import find_listing, python_listing, records

    root = tmp_path / "tree"
    make_tree(root, 60, folders=6)
    (root / "top.txt").write_text("top")
    (root / odd_name).mkdir()
    (root / odd_name / "inner\nline").write_text("x")
    (root / "d002" / "deeper" / "still").mkdir(parents=True)
    (root / "d002" / "deeper" / "still" / "f").write_text("f")
    one_find = python_listing(str(root))  # one find's records (tests/test_host.py)
    listing = find_listing(str(root))
    assert listing is not None
    assert sorted(records(listing)) == sorted(records(one_find))
    assert len(records(listing)) == 63
    assert find_listing(str(root)) == listing
    assert find_listing(str(tmp_path / "absent")) is None


def test_a_wide_folder_is_walked_by_one_find(tmp_path: Path) -> None:
    """Top-level names go on find's command line only while there are few of them."""
    from repro import walk

    root = tmp_path / "wide"
    for index in range(walk.MAX_SPLIT_NAMES + 1):
        (root / f"d{index}").mkdir(parents=True)
    (root / "d0" / "f").write_text("f")
    assert walk._halves(str(root)) is None
    listing = walk.find_listing(str(root))
    assert listing is not None and walk.records(listing)[0].endswith(b" d0/f")
    (root / "d1" / "g").write_text("g")
    for index in range(2, walk.MAX_SPLIT_NAMES + 1):
        (root / f"d{index}").rmdir()
    if host.cores() >= 2:  # one core: never split
        assert walk._halves(str(root)) == (["d0"], ["d1"]) or walk._halves(str(root)) == (
            ["d1"],
            ["d0"],
        )
