"""Fan-out folders built aside and renamed into place: a folder remote's put_group on push,
and the cache's folders on fetch."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from remotes.remote_helpers import add_file, many_files

from repro.fsutil import copy_fd
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import FOLDER_STAGING, Transfer
from repro.remotes import local
from repro.remotes.local import LocalRemote

FOLDER = "files/md5/ab"


def _objects(tmp_path: Path, count: int) -> list[tuple[str, str]]:
    """(source, key) pairs of ``count`` small files, all keyed under FOLDER."""
    pairs = []
    for i in range(count):
        source = tmp_path / "src" / f"{i}"
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(f"object {i}\n".encode())
        pairs.append((str(source), f"{FOLDER}/{i:030d}"))
    return pairs


def _everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class _Counting:
    def __init__(self, real: Callable[..., Any], before: Callable[..., None] | None = None):
        self.real, self.before, self.calls = real, before, 0

    def __call__(self, *args: Any, **dir_fds: Any) -> Any:
        self.calls += 1
        if self.before is not None:
            self.before(*args)
        return self.real(*args, **dir_fds)


def test_a_fresh_folder_takes_one_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = LocalRemote(tmp_path / "remote")
    pairs = _objects(tmp_path, 40)
    rename, replace = _Counting(os.rename), _Counting(os.replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    remote.put_group(pairs)
    assert (rename.calls, replace.calls) == (1, 0)
    for source, key in pairs:
        assert (tmp_path / "remote" / key).read_bytes() == Path(source).read_bytes()
    assert _everything_under(tmp_path / "remote") == sorted(
        ["files", "files/md5", FOLDER] + [key for _, key in pairs]
    )  # no staging folder or temp file left


def test_an_existing_folder_takes_each_object_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = LocalRemote(tmp_path / "remote")
    (tmp_path / "remote" / FOLDER).mkdir(parents=True)
    pairs = _objects(tmp_path, 5)
    replace = _Counting(os.replace)
    monkeypatch.setattr(os, "replace", replace)
    remote.put_group(pairs)
    assert replace.calls == 5
    assert len(list((tmp_path / "remote" / FOLDER).iterdir())) == 5


def test_a_folder_made_meanwhile_by_another_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = LocalRemote(tmp_path / "remote")
    other = LocalRemote(tmp_path / "remote")
    pairs = _objects(tmp_path, 6)

    def other_push_first(_staging: str, _folder: str) -> None:
        other.put(Path(pairs[0][0]), pairs[0][1])  # the folder now exists, not empty

    monkeypatch.setattr(os, "rename", _Counting(os.rename, other_push_first))
    remote.put_group(pairs)
    for source, key in pairs:
        assert (tmp_path / "remote" / key).read_bytes() == Path(source).read_bytes()
    assert _everything_under(tmp_path / "remote") == sorted(
        ["files", "files/md5", FOLDER] + [key for _, key in pairs]
    )


class Interrupted(Exception):
    pass


def test_an_interrupted_group_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = LocalRemote(tmp_path / "remote")
    copied: list[int] = []
    real = copy_fd

    def copy_three_then_die(src: int, dst: int) -> None:
        if len(copied) == 3:
            raise Interrupted
        copied.append(src)
        real(src, dst)

    monkeypatch.setattr(local, "copy_fd", copy_three_then_die)
    with pytest.raises(Interrupted):
        remote.put_group(_objects(tmp_path, 10))
    assert _everything_under(tmp_path / "remote") == ["files", "files/md5"]


def test_push_names_the_one_object_gone_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ids = many_files(cache, 300) + [add_file(cache, b"gone")]
    object_path(cache, ids[-1]).unlink()
    summary = Transfer(LocalRemote(tmp_path / "remote"), cache, progress=False).push(ids)
    assert summary.missing == (ids[-1],)
    assert summary.transferred == 300
    for object_id in ids[:-1]:
        assert (tmp_path / "remote" / object_key(object_id)).is_file()


def test_fetch_builds_each_new_cache_folder_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_cache, cache = tmp_path / "source-cache", tmp_path / "cache"
    ids = many_files(source_cache, 300)
    remote = LocalRemote(tmp_path / "remote")
    Transfer(remote, source_cache, progress=False).push(ids)
    corrupt = ids[7]
    (tmp_path / "remote" / object_key(corrupt)).write_bytes(b"rotten")
    folders = {object_key(oid).rpartition("/")[0] for oid in ids}
    rename, replace = _Counting(os.rename), _Counting(os.replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    summary = Transfer(remote, cache, progress=False).fetch(ids)
    assert (rename.calls, replace.calls) == (len(folders), 0)  # one per folder, none per object
    assert [f.object_id for f in summary.failed] == [corrupt]
    assert not object_path(cache, corrupt).exists()
    for object_id in ids:
        if object_id != corrupt:
            path = object_path(cache, object_id)
            assert path.read_bytes() == object_path(source_cache, object_id).read_bytes()
            assert path.stat().st_mode & 0o777 == 0o444
    assert [p.name for p in cache.iterdir()] == ["files"]  # no staging folder left


def test_fetch_into_a_folder_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_cache, cache = tmp_path / "source-cache", tmp_path / "cache"
    ids = [add_file(source_cache, f"object {i}".encode()) for i in range(40)]
    remote = LocalRemote(tmp_path / "remote")
    Transfer(remote, source_cache, progress=False).push(ids)

    def other_fetch_first(_staging: str, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        Path(folder, "someone-else").write_bytes(b"x")  # every folder now exists, not empty

    monkeypatch.setattr(os, "rename", _Counting(os.rename, other_fetch_first))
    get = _Counting(remote.get)
    monkeypatch.setattr(remote, "get", get)
    summary = Transfer(remote, cache, progress=False).fetch(ids)
    assert summary.transferred == len(ids) and not summary.failed
    assert get.calls == len(ids)  # what was built aside goes in, none downloaded again
    for object_id in ids:
        assert (
            object_path(cache, object_id).read_bytes()
            == object_path(source_cache, object_id).read_bytes()
        )
        assert object_path(cache, object_id).stat().st_mode & 0o777 == 0o444
        assert object_path(cache, object_id).with_name("someone-else").read_bytes() == b"x"
    assert [p.name for p in cache.iterdir()] == ["files"]


def test_a_fetch_stopped_midway_keeps_the_objects_it_verified_in_a_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C while a new cache folder is being built aside: the objects already verified
    in it go in with it (not thrown away with the folder), nothing else does, and no staging
    folder is left."""
    source_cache, cache = tmp_path / "source-cache", tmp_path / "cache"
    contents = (f"object {i}".encode() for i in range(1_000_000))
    # All in one fan-out folder (files/md5/ab), so one group is cut in its middle.
    ids = [add_file(source_cache, c) for c in contents if hashlib.md5(c).hexdigest()[:2] == "ab"]
    ids = ids[:30]
    remote = LocalRemote(tmp_path / "remote")
    Transfer(remote, source_cache, progress=False).push(ids)
    real_get, asked = remote.get, []

    def get(key: str, dest: str) -> str:
        asked.append(key)
        if len(asked) == 11:
            raise KeyboardInterrupt
        return real_get(key, dest)

    monkeypatch.setattr(remote, "get", get)
    with pytest.raises(KeyboardInterrupt):
        Transfer(remote, cache, jobs=1, progress=False).fetch(ids)
    kept = [oid for oid in ids if object_path(cache, oid).exists()]
    assert len(kept) == 10
    assert all(
        object_path(cache, oid).read_bytes() == object_path(source_cache, oid).read_bytes()
        for oid in kept
    )
    assert [p.name for p in cache.iterdir()] == ["files"]  # no staging folder left
    assert len(_everything_under(cache / "files" / "md5" / "ab")) == 10  # nor a partial file


def test_fetch_removes_what_a_killed_fetch_of_this_host_left(tmp_path: Path) -> None:
    source_cache, cache = tmp_path / "source-cache", tmp_path / "cache"
    ids = many_files(source_cache, 3)
    remote = LocalRemote(tmp_path / "remote")
    Transfer(remote, source_cache, progress=False).push(ids)
    host = os.uname().nodename
    dead = cache / f"{FOLDER_STAGING}{host}-999999999-aaaa"
    alive = cache / f"{FOLDER_STAGING}{host}-{os.getpid()}-bbbb"
    elsewhere = cache / f"{FOLDER_STAGING}other-host-1-cccc"
    for folder in (dead, alive, elsewhere):
        folder.mkdir(parents=True)
        (folder / "half").write_bytes(b"ha")
    Transfer(remote, cache, progress=False).fetch(ids)
    assert not dead.exists()
    assert alive.is_dir() and elsewhere.is_dir()
