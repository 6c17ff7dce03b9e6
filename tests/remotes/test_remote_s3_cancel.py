"""Ctrl-C in the middle of a large S3 object: the remote's part threads stop within a second
(a cancel checked at every chunk of 1 MiB), a multipart upload is aborted, and nothing
partial stays behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from helpers import Project
from remotes.remote_servers import hostile_front, make_bucket

from repro.errors import RemoteError
from repro.remotes import open_remote, s3

PART = 8 << 20  # small parts, so that a test object of a few of them is "large"
SIZE = 12 * PART
BIG_PULL = 160 << 20  # large (over MULTIPART_ABOVE), and not pulled before the Ctrl-C comes
PROMPT = 1.0 + 1.5  # seconds: the promise, and slack for a loaded machine


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "PART", PART)
    monkeypatch.setattr(s3, "MULTIPART_ABOVE", 2 * PART)
    monkeypatch.setattr(s3, "SPLIT_AFTER", PART)


def cancel_when(
    remote: s3.S3Remote, begun: Callable[[], bool], work: Callable[[], object]
) -> float:
    """Run ``work`` in a thread, cancel ``remote`` once ``begun``; the seconds from the cancel
    to the end of ``work``, which must have failed for it."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not begun():
        assert thread.is_alive(), f"it ended before it began: {failure}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    remote.cancel()
    cancelled = time.monotonic()
    thread.join(timeout=30)
    waited = time.monotonic() - cancelled
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], RemoteError), failure
    assert "were cancelled" in str(failure[0])
    return waited


@pytest.mark.usefixtures("small_parts")
def test_a_cancel_stops_a_large_upload_and_aborts_it(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = make_bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    source = tmp_path / "big"
    source.write_bytes(os.urandom(SIZE))
    remote = open_remote(f"s3://{bucket}/x", {"endpointurl": s3_endpoint})
    assert isinstance(remote, s3.S3Remote)
    try:
        waited = cancel_when(
            remote,
            lambda: bool(client.list_multipart_uploads(Bucket=bucket).get("Uploads")),
            lambda: remote.put(source, "files/md5/ab/big"),
        )
        assert waited < PROMPT, f"took {waited:.1f} s"
        assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
        assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
        with pytest.raises(RemoteError, match="were cancelled"):  # and so is what follows
            list(remote.list(""))
    finally:
        remote.close()


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("split_idle", [2.0, 0.0], ids=["one stream", "ranges"])
def test_a_cancel_stops_a_large_download(
    s3_endpoint: str, tmp_path: Path, split_idle: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "SPLIT_IDLE", split_idle)  # never split, or always
    bucket = make_bucket(s3_endpoint)
    data = os.urandom(SIZE)
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket, Key="x/files/md5/ab/big", Body=data
    )
    remote = open_remote(f"s3://{bucket}/x", {"endpointurl": s3_endpoint})
    assert isinstance(remote, s3.S3Remote)
    dest = tmp_path / "dest"
    try:
        waited = cancel_when(
            remote,
            lambda: dest.exists() and dest.stat().st_size > 0,
            lambda: remote.get("files/md5/ab/big", dest),
        )
        assert waited < PROMPT, f"took {waited:.1f} s"
    finally:
        remote.close()


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("split_idle", [2.0, 0.0], ids=["one stream", "ranges"])
def test_a_cancel_stops_a_large_download_from_a_trickling_server(
    s3_endpoint: str, tmp_path: Path, split_idle: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that sends a little every tenth of a second never times out: the cancel must
    end the reads that wait on it at once, not when their chunk is full (4 s here: chunks of
    512 KiB at 128 KiB/s), nor at the server's last byte (minutes away)."""
    monkeypatch.setattr(s3, "SPLIT_IDLE", split_idle)
    monkeypatch.setattr(s3, "CHUNK", 512 << 10)
    monkeypatch.setattr(s3, "SPLIT_AFTER", 512 << 10)
    bucket = make_bucket(s3_endpoint)
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket, Key="x/files/md5/ab/big", Body=os.urandom(SIZE)
    )
    ranges: list[str] = []
    dest = tmp_path / "dest"
    with hostile_front(s3_endpoint, "trickle", ranges) as endpoint:
        remote = open_remote(f"s3://{bucket}/x", {"endpointurl": endpoint, "timeout": "5"})
        assert isinstance(remote, s3.S3Remote)
        try:
            waited = cancel_when(
                remote,
                # The front has every request: the whole object's, and after the split (its
                # first chunk, 4 s) the ranges', one a worker.
                lambda: len(ranges) == (1 if split_idle > 1 else 1 + s3.PART_WORKERS),
                lambda: remote.get("files/md5/ab/big", dest),
            )
            assert waited < PROMPT, f"took {waited:.1f} s"
        finally:
            remote.close()


def test_ctrl_c_in_a_large_pull_exits_130_at_once_and_the_next_pull_completes(
    project: Project, s3_endpoint: str
) -> None:
    bucket = make_bucket(s3_endpoint)
    data = project.root / "big.bin"
    data.write_bytes(os.urandom(BIG_PULL))  # the real sizes: a CLI
    project.ok("add", "big.bin")
    project.ok("remote", "add", "-d", "store", f"s3://{bucket}/store")
    project.ok("remote", "modify", "store", "endpointurl", s3_endpoint)
    project.ok("push")
    cache = project.root / ".repro" / "cache"
    shutil.rmtree(cache / "files")
    data.unlink()

    pull = subprocess.Popen(
        [sys.executable, "-m", "repro", "pull"], cwd=project.root, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not any(path.stat().st_size for path in cache.rglob("*") if path.is_file()):
        assert pull.poll() is None, pull.communicate()
        assert time.monotonic() < deadline, "the pull wrote nothing in 60 s"
        time.sleep(0.01)
    pull.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, err = pull.communicate(timeout=60)
    waited = time.monotonic() - interrupted

    assert pull.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert waited < PROMPT, f"took {waited:.1f} s"
    # Nothing partial, and not the object either: it was cut off (loopback moves all of it
    # within the slack, so the time alone would not tell).
    assert [path for path in cache.rglob("*") if path.is_file()] == []
    assert not data.exists()
    project.ok("pull")
    assert data.stat().st_size == BIG_PULL
