"""A remote in an S3 bucket, or any S3-compatible store (option ``endpointurl``).

Credentials follow boto3's standard chain (environment, ``~/.aws`` files, instance roles)
unless the remote's options name them (kept in ``config.local``, never the tracked config).

Profiled with cProfile in every thread, a push of 20,000 objects of 4 KiB to moto spends
0.1% of its thread time in repro's code, 12% in botocore building each request (endpoint
rules evaluated per key, signing, checksums) and most of the rest waiting on the server,
which closes the connection after every answer (20,003 connects for 20,003 requests).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import boto3
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.response import StreamingBody
from s3transfer.subscribers import BaseSubscriber

from repro.errors import RemoteError, ReproError
from repro.fsutil import write_all
from repro.remotes.common import MAX_TIMEOUT, bulk_exists, check_key, folder_prefix, retrying

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

CHUNK = 1 << 20
# A large object goes up in parts of at least this size, PART_WORKERS at a time: S3 allows
# parts of 5 MiB to 5 GiB, and 10,000 of them (16 MiB parts reach 156 GiB; a larger object
# gets larger parts); AWS's own tools send 8 MiB. On S3 the connections in flight make a large
# object fast (one rarely passes 100 MB/s), not the part size. moto decodes each part's
# chunked body by appending to a bytes object, a copy of all it holds per 1 MiB chunk, so its
# CPU a byte grows with the part size: uploads of 1 GiB alternated 3 times took 6.0-7.4 s
# (moto 6.6-8.3 s of CPU) in 16 MiB parts, 6.2-8.6 s (6.6-9.6) in 8 MiB parts and 7.9-9.3 s
# (8.9-10.4) in 64 MiB parts.
PART = 16 << 20
PART_WORKERS = 8
MAX_PARTS = 10_000
# Above this an object moves in parts (a multipart upload is atomic too: the object appears
# when it completes); up to it, in one request, which two parts would barely beat.
MULTIPART_ABOVE = 2 * PART
# A large download starts as one stream, the GET of the whole object, hashed in order as it
# lands (md5 is one pass, in order). Once SPLIT_AFTER bytes have come, if the hash spent at
# least SPLIT_IDLE of the time waiting for them (the stream is under a third of md5's speed,
# ~700 MB/s here), the rest is split into PART_WORKERS ranges of equal size (rclone: 4 streams
# above 256 MiB), all requested at once, up to MAX_RANGE each: on S3, one connection rarely
# passes 100 MB/s and what makes a large object fast is the connections in flight; with
# equal ranges started together none queues for a connection and none finishes alone at the
# end. A faster stream stays alone: ranges land together and are hashed only after the last
# one, and where one stream outruns a third of md5, the CPU of the machine is the limit
# more connections share. Measured on loopback, 1 GiB, 2 cores, alternating: one stream
# 2.8 s against eight ranges 8.2 s on moto (which reads the whole object again for every
# ranged GET) and 3.6 s on s3rver; four ranges 4.5 s and 3.8 s, two 5.7 s and 3.3 s.
SPLIT_AFTER = 64 << 20
SPLIT_IDLE = 2 / 3
MAX_RANGE = 1 << 30
# Objects up to this size are put from memory, in one request sent directly (_Direct).
DIRECT_UP_TO = 1 << 20
# Pooled HTTP connections: one per transfer thread (transfer.default_jobs is at most 32),
# plus the part threads of large objects; botocore's default of 10 would queue the others.
MAX_CONNECTIONS = 64
# Seconds an attempt waits to connect, and then for each read from the socket, before it
# gives up (option ``timeout``); each request is tried ATTEMPTS times, with at most 1 + 2 s
# of backoff between (botocore's standard mode); an upload first waits up to 1 s more for
# the server's go-ahead (botocore's Expect: 100-continue, fixed); a direct request (_Direct)
# is tried as often, after BACKOFF. An endpoint that stops answering therefore fails a
# command within ATTEMPTS × (timeout + 1) + 3 s: 96 s by default. Large enough for a busy
# server's slowest answer we know of (a listing of 1,000 keys, a multipart completion).
TIMEOUT = 30
ATTEMPTS = 3
BACKOFF = (1.0, 2.0)
# Keys per list_objects_v2 response.
LIST_PAGE = 1000
# One HEAD costs about as much as listing this many keys. Measured on moto (8 threads, a
# bucket of 4,000 keys): 4.6 ms a HEAD, 0.24 ms a key listed (a page of 1,000 in 240 ms,
# an empty listing 8 ms). AWS's own ratio is larger still (HEADs of ~20 ms, pages of
# ~150 ms): a conservative figure.
HEAD_COST = 20
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}
# The IAM permission each of our operations needs, for the hint when one is denied.
_PERMISSION = {
    "check": "s3:GetObject",
    "list": "s3:ListBucket",
    "write": "s3:PutObject",
    "read": "s3:GetObject",
    "delete": "s3:DeleteObject",
}


def open_remote(url: str, options: Mapping[str, str]) -> S3Remote:
    """Open ``s3://bucket/prefix``; no request is made until first use."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise ReproError(f"s3 remote URL '{url}' has no bucket: use s3://bucket/prefix")
    return S3Remote(url, parts.netloc, parts.path.strip("/"), options)


class S3Remote:
    """Objects are S3 objects named ``prefix/key``; one thread-safe boto3 client serves all."""

    forkable = False

    def __init__(self, url: str, bucket: str, prefix: str, options: Mapping[str, str]) -> None:
        self.url = url
        self.bucket = bucket
        self.root = f"{prefix}/" if prefix else ""
        self._options = dict(options)
        self.timeout = _timeout(options.get("timeout"))
        # Set once a request timed out: the endpoint stopped answering, for this command.
        self._unanswered: str | None = None
        self._client_lock = threading.Lock()
        self._s3: S3Client | None = None
        self._direct: _Direct | None = None
        self._cancelled = threading.Event()
        self._watch = _Watch(self._cancelled)

    def _client(self) -> S3Client:
        # boto3 sessions are not thread-safe but its clients are: build one client, once.
        with self._client_lock:
            if self._s3 is None:
                self._s3 = self._make_client()
            return self._s3

    def _direct_requests(self) -> _Direct | None:
        """The direct path for single-request GETs and PUTs, where the endpoint allows it."""
        self._client()
        return self._direct

    def _make_client(self) -> S3Client:
        opts = self._options
        endpoint = opts.get("endpointurl")
        try:
            session = boto3.session.Session(
                aws_access_key_id=opts.get("access_key_id"),
                aws_secret_access_key=opts.get("secret_access_key"),
                aws_session_token=opts.get("session_token"),
                region_name=opts.get("region"),
                profile_name=opts.get("profile"),
            )
            config = Config(
                max_pool_connections=MAX_CONNECTIONS,
                retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                # Most S3-compatible servers (minio, ceph) want bucket names in the path.
                s3={"addressing_style": "path" if endpoint else "auto"},
                # botocore's default CRC32 check of every download costs 0.15 ms of the ~2 ms
                # of CPU a small object takes, and each is checked against its md5 anyway.
                # Uploads keep their CRC32 (sent as a trailer of a chunked body): without it,
                # moto took 15 s of CPU for a 1 GiB upload in parts, against 10.6 s with it.
                response_checksum_validation="when_required",
            )
            client: S3Client = session.client("s3", endpoint_url=endpoint, config=config)
            credentials = session.get_credentials()
        except botocore.exceptions.ProfileNotFound as exc:
            raise RemoteError(
                f"{exc}; fix the remote's 'profile' option or ~/.aws/config"
            ) from None
        except ValueError as exc:  # e.g. a malformed endpoint URL
            raise RemoteError(f"cannot use endpointurl '{endpoint}': {exc}") from None
        if endpoint and credentials is not None:
            self._direct = _Direct(client, credentials, endpoint, self.bucket)
        return client

    def _name(self, key: str) -> str:
        return self.root + check_key(key)

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn botocore failures into one-line RemoteErrors; a missing key is FileNotFoundError."""
        where = f"s3://{self.bucket}/{self.root}{key}"
        if self._unanswered is not None:
            raise RemoteError(self._unanswered)
        self._check_cancelled()
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchBucket":
                raise RemoteError(
                    f"bucket '{self.bucket}' does not exist: create it or fix the remote URL"
                ) from None
            if code in _NOT_FOUND:
                raise FileNotFoundError(where) from None
            if code in _DENIED:
                raise RemoteError(
                    f"cannot {action} {where}: access denied ({code}); check your AWS "
                    f"credentials and that the bucket's policy grants them {_PERMISSION[action]}"
                ) from None
            message = error.get("Message", "") or str(exc)
            raise RemoteError(f"cannot {action} {where}: {code} {message}".strip()) from None
        except botocore.exceptions.NoCredentialsError:
            raise RemoteError(
                f"no AWS credentials for {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, an AWS profile, or 'repro remote modify --local NAME "
                "access_key_id …'"
            ) from None
        except (
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
        ):
            endpoint = self._options.get("endpointurl") or "of AWS"
            # Every later request would wait as long: they fail at once instead.
            self._unanswered = (
                f"S3 endpoint {endpoint} did not answer within {self.timeout:g} s "
                f"({ATTEMPTS} attempts) to {action} {where}: check that it is running and "
                "reachable, or give it longer with the remote's 'timeout' option"
            )
            raise RemoteError(self._unanswered) from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionError,
        ) as exc:
            raise RemoteError(
                f"cannot connect to the S3 endpoint for {self.url}: {exc}; check 'endpointurl' "
                "and the network"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise RemoteError(f"cannot {action} {where}: {exc}") from None
        except urllib3.exceptions.HTTPError as exc:
            # What botocore lets through from reading a body: a TLS failure mid-stream.
            raise RemoteError(
                f"cannot {action} {where}: the connection failed ({exc}); run the command again"
            ) from None

    def _exists_one(self, key: str) -> bool:
        try:
            with self._errors("check", key):
                self._client().head_object(Bucket=self.bucket, Key=self._name(key))
        except FileNotFoundError:
            return False
        return True

    def exists(self, keys: Iterable[str]) -> set[str]:
        return bulk_exists(
            keys, self._exists_one, self.list, page_size=LIST_PAGE, query_cost=HEAD_COST
        )

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        start = folder_prefix(prefix)
        with self._errors("list", start):
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=self.root + start)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.root) :], item.get("Size", 0)

    def put(self, source: Path, key: str) -> None:
        name = self._name(key)
        size = source.stat().st_size
        with self._errors("write", key):
            if size <= MULTIPART_ABOVE:
                with source.open("rb") as body:
                    checksum = base64.b64encode(hashlib.file_digest(body, "md5").digest())
                    body.seek(0)
                    direct = self._direct_requests() if size <= DIRECT_UP_TO else None
                    if direct is None or not direct.put(name, body.read(), checksum.decode()):
                        body.seek(0)
                        self._client().put_object(
                            Bucket=self.bucket, Key=name, Body=body, ContentMD5=checksum.decode()
                        )
                return
            config = TransferConfig(
                multipart_threshold=MULTIPART_ABOVE,
                multipart_chunksize=_part_size(size),
                max_concurrency=PART_WORKERS,
            )
            # By name: each part is read from a handle of its own as it is sent, not held in
            # memory (as a file object's parts would be); the manager, unlike upload_file,
            # raises botocore's own errors.
            # Parts are read a chunk at a time as they are sent, which the subscriber watches.
            with create_transfer_manager(self._client(), config) as manager:
                upload = manager.upload(str(source), self.bucket, name, subscribers=[self._watch])
                try:
                    upload.result()
                except Exception:
                    self._check_cancelled()  # the cancel, rather than the failure it caused
                    raise

    def get(self, key: str, dest: str | os.PathLike[str]) -> str:
        name = self._name(key)
        digest = hashlib.md5()
        with open(dest, "w+b") as out, self._errors("read", key):  # parts are read back
            body, size, etag = self._open(name)
            if size <= MULTIPART_ABOVE:
                while chunk := body.read(CHUNK):
                    self._check_cancelled()
                    digest.update(chunk)
                    out.write(chunk)
            else:
                _LargeGet(self, name, body, etag, size, out.fileno()).run(digest)
        return digest.hexdigest()

    def _open(self, name: str) -> tuple[StreamingBody, int, str | None]:
        """A GET of the object ``name``: its body, length and ETag."""
        direct = self._direct_requests()
        answer = direct.get(name) if direct is not None else None
        if answer is not None:
            return answer
        response = self._client().get_object(Bucket=self.bucket, Key=name)
        size = response.get("ContentLength")
        if size is None:
            # An answer of unknown length could go on for ever and fill the disk.
            raise RemoteError(
                f"s3://{self.bucket}/{name} came without its length (no Content-Length): "
                "the endpoint is not S3-compatible; check 'endpointurl'"
            )
        return response["Body"], size, response.get("ETag")

    def cancel(self) -> None:
        """Stop the transfers under way, as at Ctrl-C: each raises a RemoteError at its next
        chunk of 1 MiB (a multipart upload is then aborted, its parts dropped; the caller
        removes the file a download was writing), and so does every later request."""
        self._cancelled.set()

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise RemoteError(f"the transfers with {self.url} were cancelled")

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self._client().delete_object(Bucket=self.bucket, Key=self._name(key))

    def close(self) -> None:
        with self._client_lock:
            if self._s3 is not None:
                self._s3.close()
                self._s3 = None


class _Watch(BaseSubscriber):  # type: ignore[misc]
    """Cancels an upload at the next chunk one of its parts reads to send, once ``cancelled``
    is set: the manager then fails every part's next read (a failure botocore does not retry,
    unlike one of ours), sends no further part and aborts the upload."""

    def __init__(self, cancelled: threading.Event) -> None:
        self._cancelled = cancelled

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        if self._cancelled.is_set():
            future.cancel()


class _Direct:
    """GETs and PUTs of one object in one request, signed by botocore's signer and sent through
    the client's own HTTP session (its pool, TLS settings, proxies and timeouts), without the
    client's per-call machinery: the endpoint rules evaluated again for every key, a dozen
    event hooks, the parsing of every header. Measured on moto, a GET of 4 KiB costs 0.75 ms
    of CPU this way against 2.1 ms through the client: with the GIL, that CPU bounds how
    many small objects a second one process moves, and it kept a pull of many small objects
    behind rclone's (1.2 ms of CPU an object, in Go).

    Only for an endpoint addressed by path (option ``endpointurl``: minio, Ceph, moto…); on
    AWS itself, virtual hosts, regions and their redirects are the client's. A request that
    gets no answer is tried again like the client's; an answer that is no plain success (an
    error status, a redirect, no length) gives None, and the caller asks again through the
    client, which explains it."""

    def __init__(
        self, client: S3Client, credentials: Credentials, endpoint: str, bucket: str
    ) -> None:
        # The session the client sends its own requests with (no public name for it).
        self._http = client._endpoint.http_session
        self._credentials = credentials
        # The region a path-style endpoint's requests are signed for, as the client does.
        self._region = client.meta.region_name or "us-east-1"
        self._base = f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}/"

    def _send(
        self, method: str, name: str, data: bytes = b"", headers: dict[str, str] | None = None
    ) -> AWSResponse:
        request = AWSRequest(
            method=method, url=self._base + quote(name, safe="/~"), data=data, headers=headers
        )
        signer = S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region)
        signer.add_auth(request)
        prepared = request.prepare()
        prepared.stream_output = True
        response: AWSResponse = retrying(lambda: self._http.send(prepared), _transient, BACKOFF)
        return response

    def get(self, name: str) -> tuple[StreamingBody, int, str | None] | None:
        """The object's body, length and ETag; None unless the answer is a plain success."""
        response = self._send("GET", name)
        length = response.headers.get("Content-Length", "")
        if response.status_code != 200 or not (length.isascii() and length.isdigit()):
            response.raw.close()
            return None
        size = int(length)
        return StreamingBody(response.raw, size), size, response.headers.get("ETag")

    def put(self, name: str, data: bytes, checksum: str) -> bool:
        """Store ``data`` as the object; False unless the store says it did."""
        response = self._send("PUT", name, data, {"Content-MD5": checksum})
        # A success has an empty body: read to its end, it frees the connection for the next
        # request (a keep-alive endpoint saves a connect); anything longer is dropped.
        response.raw.read(CHUNK)
        response.raw.close()
        return bool(response.status_code == 200)


def _transient(error: Exception) -> bool:
    """Whether a direct request's failure may pass: no answer, a dropped connection; not a
    certificate refused."""
    transport = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)
    return isinstance(error, transport) and not isinstance(error, botocore.exceptions.SSLError)


def _timeout(value: str | None) -> float:
    """The ``timeout`` option in seconds; a one-line refusal unless it is a positive number
    below MAX_TIMEOUT."""
    if value is None:
        return TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < MAX_TIMEOUT:
        raise ReproError(
            f"the S3 remote option timeout={value!r} is not a number of seconds above 0 and "
            f"below {MAX_TIMEOUT:g}: fix it with 'repro remote modify NAME timeout 30'"
        )
    return seconds


def _part_size(size: int) -> int:
    """The part size for an object of ``size`` bytes: PART, or more for a huge object."""
    return max(PART, -(-size // MAX_PARTS))


def _range_size(size: int) -> int:
    """The size of each ranged GET of a large object of ``size`` bytes: PART_WORKERS ranges
    of at least PART, at most MAX_RANGE."""
    return min(max(PART, -(-size // PART_WORKERS)), MAX_RANGE)


def _hash_range(fd: int, start: int, end: int, digest: Any, check: Callable[[], None]) -> None:
    """Feed bytes ``start``..``end`` of ``fd`` to ``digest``, calling ``check`` (which may
    raise) before each chunk."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while start < end:
        check()
        count = os.preadv(fd, [view[: min(CHUNK, end - start)]], start)
        if not count:
            raise RemoteError("a downloaded part vanished from its file before it was hashed")
        digest.update(view[:count])
        start += count


class _Part:
    """Bytes ``start``..``end`` of a large object, coming on one connection (the ``answer``
    being read): ``landed`` is how far they are written, ``error`` why the connection ended
    early."""

    __slots__ = ("start", "end", "landed", "finished", "error", "answer")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.landed = start
        self.finished = False
        self.error: BaseException | None = None
        self.answer: StreamingBody | None = None


class _LargeGet:
    """A large object into ``fd``: first as the one stream of ``body`` (the GET of the whole
    object), hashed in order by the calling thread as it lands, read back from the page cache
    (no disk read, no memory beyond one buffer however large the object). Once SPLIT_AFTER
    bytes have come, if the hash spent at least SPLIT_IDLE of the time waiting for them, the
    rest comes in ranged GETs, PART_WORKERS at a time, each pinned to ``etag`` (a replaced
    object fails the request rather than mixing two versions; an endpoint that gives no ETag
    leaves two versions mixed to the md5 check, which refuses them)."""

    def __init__(
        self,
        remote: S3Remote,
        name: str,
        body: StreamingBody,
        etag: str | None,
        size: int,
        fd: int,
    ) -> None:
        self._remote = remote
        self._name = name
        self._body = body
        self._etag = etag
        self._size = size
        self._fd = fd
        self._changed = threading.Condition()
        self._parts = [_Part(0, size)]  # contiguous, in order
        self._parts[0].answer = body
        self._began = time.monotonic()
        self._waited = 0.0  # seconds the hash waited for bytes
        self._waiting_since: float | None = None  # when the wait under way began
        self._stopped = False

    def run(self, digest: Any) -> None:
        pool = ThreadPoolExecutor(max_workers=PART_WORKERS)
        try:
            pool.submit(self._stream, pool)
            self._hash(digest)
        finally:
            with self._changed:
                self._stopped = True  # no part starts, none writes again
                reading = [part.answer for part in self._parts if not part.finished]
            # A read waiting on a stalled or trickling server ends now, not at its timeout.
            for answer in reading:
                if answer is not None:
                    _shut(answer)
            pool.shutdown(wait=True, cancel_futures=True)
            self._body.close()

    def _hash(self, digest: Any) -> None:
        """Feed the object to ``digest`` in order as its bytes land; raise what ended a part's
        connection early."""
        index = hashed = 0
        while hashed < self._size:
            with self._changed:
                self._waiting_since = time.monotonic()
                while True:
                    part = self._parts[index]
                    if part.error is not None:
                        raise part.error
                    if part.landed > hashed:
                        ready = part.landed
                        break
                    if part.finished:  # whole (else its error was raised above)
                        index += 1
                        continue
                    self._changed.wait(1.0)
                    self._remote._check_cancelled()
                self._waited += time.monotonic() - self._waiting_since
                self._waiting_since = None
            _hash_range(self._fd, hashed, ready, digest, self._remote._check_cancelled)
            hashed = ready

    def _stream(self, pool: ThreadPoolExecutor) -> None:
        """The first part, from the GET of the whole object, until the end or a split."""
        part, probed = self._parts[0], False
        with self._ending(part):
            while part.landed < part.end:
                chunk = self._body.read(min(CHUNK, part.end - part.landed))
                if not chunk:
                    break
                self._write(part, chunk)
                if not probed and part.landed >= SPLIT_AFTER:
                    probed = True
                    if self._slow():
                        self._split(pool, part)
            self._body.close()  # drops what the connection had left to send, after a split

    def _slow(self) -> bool:
        """Whether the hash waited for the stream at least SPLIT_IDLE of the time so far."""
        with self._changed:
            now = time.monotonic()
            waiting = 0.0 if self._waiting_since is None else now - self._waiting_since
            return self._waited + waiting >= SPLIT_IDLE * (now - self._began)

    def _split(self, pool: ThreadPoolExecutor, first: _Part) -> None:
        """End ``first`` where it has landed; the rest in ranges of equal size."""
        cut = first.landed
        step = _range_size(self._size - cut)
        rest = [
            _Part(start, min(start + step, self._size)) for start in range(cut, self._size, step)
        ]
        with self._changed:
            first.end = cut
            self._parts.extend(rest)
        for part in rest:
            pool.submit(self._ranged, part)

    def _ranged(self, part: _Part) -> None:
        with self._ending(part):
            pinned = {"IfMatch": self._etag} if self._etag else {}
            response = self._remote._client().get_object(
                Bucket=self._remote.bucket,
                Key=self._name,
                Range=f"bytes={part.start}-{part.end - 1}",
                **pinned,
            )
            answer: StreamingBody = response["Body"]
            with self._changed:
                stopped = self._stopped
                part.answer = answer
            if stopped:
                _shut(answer)
            for chunk in answer.iter_chunks(CHUNK):
                self._write(part, chunk)
            answer.close()

    def _write(self, part: _Part, chunk: bytes) -> None:
        with self._changed:
            if self._stopped:
                raise RemoteError(
                    f"the download of s3://{self._remote.bucket}/{self._name} stopped"
                )
        self._remote._check_cancelled()
        if part.landed + len(chunk) > part.end:  # never write over the next part
            raise self._wrong_size()
        write_all(self._fd, chunk, part.landed)
        with self._changed:
            part.landed += len(chunk)
            self._changed.notify_all()

    @contextmanager
    def _ending(self, part: _Part) -> Iterator[None]:
        """Mark ``part`` finished when the block ends, with the error that ended it, or the
        wrong size if it came short."""
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread
            error = exc
        with self._changed:
            if error is None and part.landed != part.end:
                error = self._wrong_size()
            part.error = error
            part.finished = True
            self._changed.notify_all()

    def _wrong_size(self) -> RemoteError:
        return RemoteError(
            f"s3://{self._remote.bucket}/{self._name} sent a part of the wrong size: it changed "
            "during the download; run the command again"
        )


def _shut(answer: StreamingBody) -> None:
    """Shut the connection ``answer`` is read from (urllib3's shutdown: a read blocked in
    another thread ends at once, which closing alone does not do), else close it."""
    raw = getattr(answer, "_raw_stream", None)
    shutdown: Callable[[], None] | None = getattr(raw, "shutdown", None)
    # urllib3 refuses (ValueError, RuntimeError) a connection that went back to its pool.
    with suppress(OSError, ValueError, RuntimeError):
        if shutdown is not None:
            shutdown()
        else:
            answer.close()
