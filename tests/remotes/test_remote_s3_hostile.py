"""An S3 endpoint that answers in ways S3 never does: moto behind a front that rewrites its
answers to GETs (no ETag, no Content-Length, the whole object for a ranged GET, a TLS record
that is garbage). Each must end in a verified object or one line, never an internal error or a
corrupt object kept. The same front, sending slowly, is a connection as slow as S3's: a large
object then comes in ranges."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import pytest
from remotes.remote_servers import hostile_front, make_bucket, self_signed

from repro.errors import RemoteError
from repro.remotes import open_remote, s3

# Large enough to move in parts once the part size is lowered (below), not a round number.
BIG = (3 << 20) + 12345


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of 1 MiB, so that an object of a few MiB is large, and taken in ranges after its
    first part whatever the speed of the stream."""
    monkeypatch.setattr(s3, "PART", 1 << 20)
    monkeypatch.setattr(s3, "MULTIPART_ABOVE", 2 << 20)
    monkeypatch.setattr(s3, "SPLIT_AFTER", 1 << 20)
    monkeypatch.setattr(s3, "SPLIT_IDLE", 0.0)


def stored(endpoint: str, data: bytes) -> str:
    bucket = make_bucket(endpoint)
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key="x/obj", Body=data)
    return bucket


def get_through(endpoint: str, bucket: str, dest: Path) -> str:
    """The stored object, downloaded through ``endpoint`` into ``dest``: its md5."""
    remote = open_remote(f"s3://{bucket}/x", {"endpointurl": endpoint})
    try:
        return remote.get("obj", dest)
    finally:
        remote.close()


@pytest.mark.usefixtures("small_parts")
def test_a_large_object_without_an_etag_still_arrives_whole(
    s3_endpoint: str, tmp_path: Path
) -> None:
    data = os.urandom(BIG)
    bucket = stored(s3_endpoint, data)
    with hostile_front(s3_endpoint, "no-etag") as endpoint:
        digest = get_through(endpoint, bucket, tmp_path / "got")
    assert digest == hashlib.md5(data).hexdigest()
    assert (tmp_path / "got").read_bytes() == data


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("size", [5, BIG], ids=["small", "large"])
def test_an_object_of_unknown_length_is_one_line(
    s3_endpoint: str, tmp_path: Path, size: int
) -> None:
    bucket = stored(s3_endpoint, os.urandom(size))
    with hostile_front(s3_endpoint, "chunked") as endpoint, pytest.raises(RemoteError) as caught:
        get_through(endpoint, bucket, tmp_path / "got")
    assert "no Content-Length" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.usefixtures("small_parts")
def test_the_whole_object_for_a_ranged_get_is_one_line(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = stored(s3_endpoint, os.urandom(BIG))
    with (
        hostile_front(s3_endpoint, "whole") as endpoint,
        pytest.raises(RemoteError, match="sent a part of the wrong size"),
    ):
        get_through(endpoint, bucket, tmp_path / "got")


def test_a_slow_stream_is_split_into_ranges_and_arrives_whole(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "PART", 1 << 20)
    monkeypatch.setattr(s3, "MULTIPART_ABOVE", 2 << 20)
    monkeypatch.setattr(s3, "SPLIT_AFTER", 1 << 20)
    data = os.urandom(BIG)
    bucket = stored(s3_endpoint, data)
    ranges: list[str] = []
    with hostile_front(s3_endpoint, "slow", ranges) as endpoint:
        digest = get_through(endpoint, bucket, tmp_path / "got")
    assert digest == hashlib.md5(data).hexdigest()
    assert (tmp_path / "got").read_bytes() == data
    # The whole object asked first, then the rest (after its first MiB) in ranges, end to end.
    assert ranges[0] == "" and len(ranges) > 2, ranges
    spans = sorted(tuple(map(int, r.removeprefix("bytes=").split("-"))) for r in ranges[1:])
    assert spans[0][0] >= 1 << 20 and spans[-1][1] == BIG - 1, ranges
    assert all(end + 1 == start for (_, end), (start, _) in zip(spans, spans[1:], strict=False)), (
        ranges
    )


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize(
    ("size", "split_idle"),
    [(5000, 2.0), (BIG, 2.0), (BIG, 0.0)],
    ids=["small", "large", "large-ranges"],
)
def test_a_garbage_tls_record_mid_body_is_one_line(
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    split_idle: float,
) -> None:
    monkeypatch.setattr(s3, "SPLIT_IDLE", split_idle)
    tls = self_signed(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls[0]))  # the front is trusted: its data is not
    bucket = stored(s3_endpoint, os.urandom(size))
    with (
        hostile_front(s3_endpoint, "bad-tls", tls=tls) as endpoint,
        pytest.raises(RemoteError) as caught,
    ):
        get_through(endpoint, bucket, tmp_path / "got")
    message = str(caught.value)
    assert "\n" not in message and f"s3://{bucket}/x/obj" in message, message
