"""The Remote protocol, against every real backend."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PosixPath
from typing import Any

import pytest
from remotes.remote_helpers import Backend

from repro.errors import RemoteError
from repro.remotes import local

KEY = "files/md5/ab/cdef0123456789abcdef0123456789"
OTHER = "files/md5/ab/ffff0123456789abcdef0123456789"


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of an upload."""


class FailingFile(io.FileIO):
    """A file whose reads die after the first MiB (seekable, as SDKs like to rewind)."""

    def _check(self) -> None:
        if self.tell() >= 1 << 20:
            raise Interrupted

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        return super().read(64 << 10 if size is None or size < 0 else min(size, 64 << 10))

    def readinto(self, buffer: Any) -> int:
        self._check()
        return super().readinto(memoryview(buffer)[: 64 << 10])

    def readall(self) -> bytes:
        self._check()
        return super().read(64 << 10)


class FailingSource(PosixPath):
    """A source file whose upload is cut short, like a crash or Ctrl-C mid-transfer."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return FailingFile(str(self), "rb")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_get_list_exists_delete_round_trip(backend: Backend, tmp_path: Path) -> None:
    remote = backend.remote
    remote.put(write(tmp_path / "src", b"hello remote\n"), KEY)

    dest = tmp_path / "dest"
    remote.get(KEY, dest)
    assert dest.read_bytes() == b"hello remote\n"
    assert list(remote.list("files/md5/")) == [KEY]
    assert list(remote.list_sizes("files/")) == [(KEY, 13)]
    assert remote.exists([KEY, OTHER]) == {KEY}

    remote.delete(KEY)
    remote.delete(KEY)  # already gone: no error
    assert remote.exists([KEY]) == set()
    assert list(remote.list("files/md5/")) == []


@pytest.mark.parametrize("size", [0, 4096, (1 << 20) + 1, 3 << 20])
def test_get_returns_the_md5_of_what_it_wrote(backend: Backend, tmp_path: Path, size: int) -> None:
    # Sizes on both sides of the folder remote's one-buffer path, and over several buffers.
    payload = os.urandom(size)
    backend.remote.put(write(tmp_path / "src", payload), KEY)
    dest = tmp_path / "dest"
    dest.write_bytes(b"stale bytes from an earlier attempt" * 100_000)
    assert backend.remote.get(KEY, dest) == hashlib.md5(payload).hexdigest()
    assert dest.read_bytes() == payload


def test_get_of_a_missing_key_raises_file_not_found(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        backend.remote.get(KEY, tmp_path / "dest")


def test_listing_an_absent_folder_is_empty(backend: Backend) -> None:
    assert list(backend.remote.list("files/md5/zz/")) == []


def test_put_replaces_an_existing_key(backend: Backend, tmp_path: Path) -> None:
    backend.remote.put(write(tmp_path / "a", b"first"), KEY)
    backend.remote.put(write(tmp_path / "b", b"second"), KEY)
    backend.remote.get(KEY, tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == b"second"


def _copy_one_mib_then_die(src: int, dst: int) -> None:
    os.write(dst, os.pread(src, 1 << 20, 0))
    raise Interrupted


def test_interrupted_put_leaves_no_partial_object(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.remote.put(write(tmp_path / "good", b"good bytes"), KEY)
    big = write(tmp_path / "big", b"x" * (3 << 20))
    with monkeypatch.context() as patched:
        # A folder copies inside the kernel, not through the file object's reads: cut it there.
        patched.setattr(local, "copy_fd", _copy_one_mib_then_die)
        with pytest.raises(Interrupted):
            backend.remote.put(FailingSource(big), KEY)
        with pytest.raises(Interrupted):
            backend.remote.put(FailingSource(big), OTHER)

    # The old object is intact, the new key never appeared, and no temp file is left behind.
    backend.remote.get(KEY, tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == b"good bytes"
    assert backend.remote.exists([OTHER]) == set()
    assert [name.rsplit("files/", 1)[-1] for name in backend.stored_names()] == [
        KEY.removeprefix("files/")
    ]


def sftp_only(backend: Backend) -> None:
    """The ssh remote asks through one ``find`` over OpenSSH's client where it can
    (test_remote_ssh_bulk tests that); these tests are of the way every other host takes."""
    if backend.name == "ssh":
        backend.remote._tar.works = False  # type: ignore[attr-defined]


def test_exists_with_few_keys_asks_each(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sftp_only(backend)
    backend.remote.put(write(tmp_path / "src", b"x"), KEY)
    asked: list[str] = []
    real = backend.remote._exists_one  # type: ignore[attr-defined]

    def ask_one(key: str) -> bool:
        asked.append(key)
        return bool(real(key))

    monkeypatch.setattr(backend.remote, "_exists_one", ask_one)

    assert backend.remote.exists([KEY, OTHER]) == {KEY}
    assert sorted(asked) == [KEY, OTHER]


def test_exists_with_many_keys_lists_folders_instead(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sftp_only(backend)
    keys = [f"files/md5/{i % 4:02x}/{i:030x}" for i in range(200)]
    source = write(tmp_path / "src", b"x")
    for key in keys[::2]:
        backend.remote.put(source, key)

    def ask_one(key: str) -> bool:
        raise AssertionError(f"asked about {key} one by one")

    monkeypatch.setattr(backend.remote, "_exists_one", ask_one)
    assert backend.remote.exists(keys) == set(keys[::2])


def test_temp_files_are_never_listed(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "s3":
        pytest.skip("S3 uploads are atomic without temp names")
    backend.write_raw("files/md5/ab/.repro-tmp-0123-cdef", b"partial")
    backend.write_raw("files/md5/ab/cdef", b"complete")
    assert list(backend.remote.list("files/")) == ["files/md5/ab/cdef"]


def test_concurrent_puts_and_gets_from_many_threads(backend: Backend, tmp_path: Path) -> None:
    sources = [write(tmp_path / f"src{i}", f"payload {i}".encode() * 100) for i in range(48)]
    keys = [f"files/md5/{i:02x}/{i:030x}" for i in range(48)]
    barrier = threading.Barrier(16)

    def round_trip(i: int) -> bytes:
        if i < 16:
            barrier.wait()  # start the first wave together, to really overlap
        backend.remote.put(sources[i], keys[i])
        dest = tmp_path / f"dest{i}"
        backend.remote.get(keys[i], dest)
        return dest.read_bytes()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(round_trip, range(48)))
    assert results == [s.read_bytes() for s in sources]
    assert sorted(backend.remote.list("files/md5/")) == sorted(keys)


def test_keys_must_stay_under_the_root(backend: Backend, tmp_path: Path) -> None:
    for key in ("../escape", "/abs/key", "files//x", "files/./x"):
        with pytest.raises(ValueError):
            backend.remote.put(write(tmp_path / "src", b"x"), key)


def test_a_remote_that_cannot_be_written_is_one_clear_line(
    backend: Backend, tmp_path: Path
) -> None:
    if backend.name == "s3":
        pytest.skip("an S3 prefix cannot be blocked by a file")
    # Tests run as root, where permissions do not deny: a file where a folder must go does.
    backend.write_raw("files", b"in the way")
    with pytest.raises(RemoteError) as caught:
        backend.remote.put(write(tmp_path / "src", b"x"), KEY)
    assert "\n" not in str(caught.value) and "files/md5/ab" in str(caught.value)
