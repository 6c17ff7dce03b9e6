"""push / fetch / status / verify / gc, against every real backend."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from remotes.remote_helpers import (
    Backend,
    CountingRemote,
    add_directory,
    add_file,
    cached_files,
    many_files,
)

from repro.errors import CorruptObjectError, ReproError
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import Transfer, gc_remote, verify_remote
from repro.remotes import s3


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def other_cache(tmp_path: Path) -> Path:
    """A second, empty cache: another clone of the project."""
    return tmp_path / "other-cache"


def directory(cache: Path, count: int, tag: str = "") -> str:
    return add_directory(cache, {f"d/{i}.txt": f"{tag} file {i}\n".encode() for i in range(count)})


def directory_entries(cache: Path, manifest: str) -> list[str]:
    return [entry["md5"] for entry in json.loads(object_path(cache, manifest).read_bytes())]


def test_second_push_moves_nothing_and_asks_in_bulk(
    backend: Backend, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = many_files(cache, 100)
    manifest = directory(cache, 30)
    first = Transfer(backend.remote, cache, jobs=8, progress=False).push([*files, manifest])
    assert (first.transferred, first.already_present, first.ok) == (131, 0, True)

    counting = CountingRemote(backend.remote)
    per_key: list[str] = []
    monkeypatch.setattr(backend.remote, "_exists_one", per_key.append)
    second = Transfer(counting, cache, jobs=8, progress=False).push([*files, manifest])

    assert (second.transferred, second.transferred_bytes, second.already_present) == (0, 0, 131)
    assert counting.calls == {"exists": 1}
    assert counting.keys_asked == 131
    assert per_key == []  # listed by prefix, never one request per object


def test_push_uploads_each_manifest_after_its_files(backend: Backend, cache: Path) -> None:
    manifest = directory(cache, 20)
    counting = CountingRemote(backend.remote)
    summary = Transfer(counting, cache, jobs=8, progress=False).push([manifest])

    assert summary.transferred == 21
    assert counting.put_order[-1] == object_key(manifest)
    assert counting.calls["put"] == 21


def test_push_reports_what_the_cache_lacks_and_holds_back_the_manifest(
    backend: Backend, cache: Path
) -> None:
    manifest = directory(cache, 5)
    lost_entry = directory_entries(cache, manifest)[2]
    object_path(cache, lost_entry).unlink()
    never_cached = "0" * 32

    summary = Transfer(backend.remote, cache, progress=False).push([manifest, never_cached])

    assert sorted(summary.missing) == sorted([lost_entry, never_cached])
    assert [f.object_id for f in summary.failed] == [manifest]
    assert "not pushed" in str(summary.failed[0].error)
    assert summary.transferred == 4
    # A manifest on the remote would promise a directory that cannot be pulled whole.
    assert backend.remote.exists([object_key(manifest)]) == set()


def test_fetch_brings_every_object_verified_and_read_only(
    backend: Backend, cache: Path, other_cache: Path
) -> None:
    files = many_files(cache, 10)
    manifest = directory(cache, 10)
    Transfer(backend.remote, cache, progress=False).push([*files, manifest])

    summary = Transfer(backend.remote, other_cache, jobs=8, progress=False).fetch(
        [*files, manifest]
    )

    assert (summary.transferred, summary.ok) == (21, True)
    theirs = [p.relative_to(other_cache) for p in cached_files(other_cache)]
    assert theirs == [p.relative_to(cache) for p in cached_files(cache)]
    for path in cached_files(other_cache):
        assert path.read_bytes() == (cache / path.relative_to(other_cache)).read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    again = Transfer(backend.remote, other_cache, progress=False).fetch([*files, manifest])
    assert (again.transferred, again.already_present) == (0, 21)


@pytest.mark.parametrize(
    ("size", "split_idle"),
    [(1000, 2.0), (11 << 20, 2.0), (11 << 20, 0.0)],
    ids=["small", "large", "large-ranges"],
)
def test_fetch_rejects_corrupt_and_truncated_objects(
    backend: Backend,
    cache: Path,
    other_cache: Path,
    size: int,
    split_idle: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Large objects take each backend's large path: the folder's overlapped copy and hash,
    # S3's multipart upload and its download as one stream or, after its first part, in
    # ranges (never or always split; parts of S3's smallest size).
    monkeypatch.setattr(s3, "PART", 5 << 20)
    monkeypatch.setattr(s3, "MULTIPART_ABOVE", 5 << 20)
    monkeypatch.setattr(s3, "SPLIT_AFTER", 5 << 20)
    monkeypatch.setattr(s3, "SPLIT_IDLE", split_idle)
    good, flipped, truncated = (add_file(cache, os.urandom(size)) for _ in range(3))
    Transfer(backend.remote, cache, progress=False).push([good, flipped, truncated])
    data = bytearray(object_path(cache, flipped).read_bytes())
    data[-1] ^= 1  # same size, wrong bytes (in the last part of a large object)
    backend.write_raw(object_key(flipped), bytes(data))
    backend.write_raw(object_key(truncated), object_path(cache, truncated).read_bytes()[:-100])

    summary = Transfer(backend.remote, other_cache, progress=False).fetch(
        [good, flipped, truncated]
    )

    assert summary.transferred == 1
    assert sorted(f.object_id for f in summary.failed) == sorted([flipped, truncated])
    for failure in summary.failed:
        assert isinstance(failure.error, CorruptObjectError)
        assert failure.object_id in str(failure.error) and backend.remote.url in str(failure.error)
    # Nothing corrupt entered the cache, and no temp file was left behind.
    assert cached_files(other_cache) == [object_path(other_cache, good)]


def test_fetch_refuses_a_corrupt_manifest_and_skips_its_files(
    backend: Backend, cache: Path, other_cache: Path
) -> None:
    manifest = directory(cache, 3)
    Transfer(backend.remote, cache, progress=False).push([manifest])
    backend.write_raw(object_key(manifest), b'[{"md5": "00000000000000000000000000000000"}]')

    summary = Transfer(backend.remote, other_cache, progress=False).fetch([manifest])

    assert [f.object_id for f in summary.failed] == [manifest]
    assert summary.transferred == 0
    assert cached_files(other_cache) == []


def test_fetch_reports_objects_the_remote_lacks(
    backend: Backend, cache: Path, other_cache: Path
) -> None:
    pushed = add_file(cache, b"pushed")
    Transfer(backend.remote, cache, progress=False).push([pushed])
    absent_file, absent_manifest = "1" * 32, "2" * 32 + ".dir"

    summary = Transfer(backend.remote, other_cache, progress=False).fetch(
        [pushed, absent_file, absent_manifest]
    )

    assert summary.transferred == 1
    assert sorted(summary.missing) == [absent_file, absent_manifest]
    assert summary.failed == ()


def test_status_classifies_each_object(backend: Backend, cache: Path, other_cache: Path) -> None:
    both, remote_only, local_only = (add_file(cache, name) for name in (b"b", b"r", b"l"))
    Transfer(backend.remote, cache, progress=False).push([both, remote_only])
    object_path(cache, remote_only).unlink()
    manifest = directory(other_cache, 2)  # in no cache we use, nor on the remote
    nowhere = "3" * 32

    states = Transfer(backend.remote, cache).status(
        [both, remote_only, local_only, nowhere, manifest]
    )

    assert states == {
        both: "ok",
        remote_only: "deleted",
        local_only: "new",
        nowhere: "missing",
        manifest: "missing",
    }


def test_status_reads_a_manifest_only_the_remote_has(
    backend: Backend, cache: Path, other_cache: Path
) -> None:
    manifest = directory(other_cache, 2)
    Transfer(backend.remote, other_cache, progress=False).push([manifest])

    states = Transfer(backend.remote, cache).status([manifest])

    assert sorted(states.values()) == ["deleted"] * 3
    assert cached_files(cache) == []  # status does not fill the cache


def test_verify_remote_finds_corruption_and_incomplete_directories(
    backend: Backend, cache: Path
) -> None:
    files = many_files(cache, 5)
    manifest = directory(cache, 4)
    Transfer(backend.remote, cache, progress=False).push([*files, manifest])
    assert verify_remote(backend.remote, progress=False) == []

    backend.write_raw(object_key(files[0]), b"rotten")
    entry = directory_entries(cache, manifest)[0]
    backend.remote.delete(object_key(entry))
    backend.write_raw("files/md5/zz-stray", b"?")

    problems = verify_remote(backend.remote, progress=False)

    assert len(problems) == 3
    assert any(files[0] in p and "corrupt" in p for p in problems)
    assert any(manifest in p and entry in p for p in problems)
    assert any("zz-stray" in p for p in problems)


def test_gc_remote_keeps_kept_directories_and_deletes_the_rest(
    backend: Backend, cache: Path, other_cache: Path
) -> None:
    kept_manifest = directory(cache, 4, "kept")
    kept_file = add_file(cache, b"kept file")
    old = [*many_files(cache, 6, "old"), directory(cache, 3, "old")]
    Transfer(backend.remote, cache, progress=False).push([kept_manifest, kept_file, *old])
    old_bytes = sum(
        object_path(cache, oid).stat().st_size
        for oid in [*old[:-1], old[-1], *directory_entries(cache, old[-1])]
    )

    # No cache given: the kept manifest is read from the remote itself.
    count, nbytes = gc_remote(backend.remote, [kept_manifest, kept_file])

    assert (count, nbytes) == (6 + 1 + 3, old_bytes)
    summary = Transfer(backend.remote, other_cache, progress=False).fetch(
        [kept_manifest, kept_file]
    )
    assert (summary.transferred, summary.ok) == (6, True)
    assert Transfer(backend.remote, cache).status(old) == dict.fromkeys(
        [*old, *directory_entries(cache, old[-1])], "new"
    )


def test_gc_remote_stops_before_deleting_when_a_kept_manifest_is_corrupt(
    backend: Backend, cache: Path
) -> None:
    manifest = directory(cache, 2)
    Transfer(backend.remote, cache, progress=False).push([manifest, add_file(cache, b"other")])
    backend.write_raw(object_key(manifest), b"garbage")

    with pytest.raises(CorruptObjectError):
        gc_remote(backend.remote, [manifest])
    assert len(list(backend.remote.list("files/md5/"))) == 4


def test_object_ids_that_are_no_md5_are_refused(backend: Backend, cache: Path) -> None:
    with pytest.raises(ReproError, match="not an object id"):
        Transfer(backend.remote, cache, progress=False).push(["../../etc/passwd"])
