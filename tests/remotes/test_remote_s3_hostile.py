"""An S3 endpoint that answers in ways S3 never does: moto behind a front that rewrites its
answers to GETs (no ETag, no Content-Length, the whole object for a ranged GET). Each must end
in a verified object or one line, never an internal error or a corrupt object kept. The same
front, sending slowly, is a connection as slow as S3's: a large object then comes in ranges."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from remotes.remote_servers import make_bucket

from repro.errors import RemoteError
from repro.remotes import open_remote, s3

# Large enough to move in parts once the part size is lowered (below), not a round number.
BIG = (3 << 20) + 12345
SLOW_RATE = 4 << 20  # bytes a second: a hundredth of what md5 hashes on one core


@contextmanager
def hostile_front(upstream: str, tamper: str, ranges: list[str] | None = None) -> Iterator[str]:
    """An endpoint forwarding every request to ``upstream``, its answers to GETs changed as
    ``tamper`` says: "no-etag", "chunked" (no Content-Length), "whole" (ranges ignored) or
    "slow" (SLOW_RATE bytes a second on each connection). The Range of each GET is added to
    ``ranges`` ("" for none)."""
    target = urlsplit(upstream)

    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = dict(self.headers.items())
            get = self.command == "GET"
            if get and ranges is not None:
                ranges.append(self.headers.get("Range", ""))
            if get and tamper == "whole":
                headers.pop("Range", None)
            connection = http.client.HTTPConnection(target.hostname or "", target.port)
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            connection.close()
            self.send_response(answer.status)
            dropped = {"transfer-encoding", "connection", "content-length"}
            if get and tamper == "no-etag":
                dropped.add("etag")
            for name, value in answer.getheaders():
                if name.lower() not in dropped:
                    self.send_header(name, value)
            if get and tamper == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if get and tamper == "slow":
                for start in range(0, len(data), SLOW_RATE // 10):
                    self.wfile.write(data[start : start + SLOW_RATE // 10])
                    time.sleep(0.1)
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = forward

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client dropping a part it no longer wants is no failure here

    server = Server(("127.0.0.1", 0), Front)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
