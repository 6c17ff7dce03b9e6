"""What only the S3 backend does: buckets, endpoints, credentials from options."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from remotes.remote_servers import free_port, make_bucket

from repro.errors import RemoteError
from repro.objects.transfer import default_jobs
from repro.remotes import open_remote, s3


def one_line_error(url: str, options: dict[str, str]) -> str:
    remote = open_remote(url, options)
    try:
        with pytest.raises(RemoteError) as caught:
            list(remote.list("files/"))
    finally:
        remote.close()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_bucket_says_so(s3_endpoint: str) -> None:
    message = one_line_error("s3://no-such-bucket/x", {"endpointurl": s3_endpoint})
    assert "bucket 'no-such-bucket' does not exist" in message


def test_an_unreachable_endpoint_is_one_clear_line() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    message = one_line_error("s3://bucket/x", {"endpointurl": endpoint})
    assert "cannot connect" in message and endpoint in message


def test_missing_credentials_say_where_to_put_them(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = one_line_error("s3://bucket/x", {"endpointurl": s3_endpoint})
    assert "no AWS credentials" in message and "access_key_id" in message


def test_credentials_and_region_from_options(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = make_bucket(s3_endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    options = {
        "endpointurl": s3_endpoint,
        "access_key_id": "from-config",
        "secret_access_key": "from-config-secret",
        "region": "eu-west-1",
    }
    remote = open_remote(f"s3://{bucket}", options)
    try:
        (tmp_path / "src").write_bytes(b"with options")
        remote.put(tmp_path / "src", "files/md5/ab/cd")
        assert list(remote.list("")) == ["files/md5/ab/cd"]  # no prefix: the bucket's root
    finally:
        remote.close()


def test_the_client_waits_the_timeout_option_and_pools_a_connection_per_transfer(
    s3_endpoint: str,
) -> None:
    remote = open_remote("s3://bucket/x", {"endpointurl": s3_endpoint, "timeout": "2.5"})
    try:
        config = remote._client().meta.config  # type: ignore[attr-defined]
    finally:
        remote.close()
    assert (config.connect_timeout, config.read_timeout) == (2.5, 2.5)
    assert config.retries["total_max_attempts"] == s3.ATTEMPTS
    assert config.max_pool_connections >= default_jobs() + s3.PART_WORKERS


def test_small_objects_move_in_one_direct_request_each_way(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """A small object's PUT and GET skip the client's per-call machinery (its CPU bounds how
    many small objects a second a push or pull moves); listing still goes through it."""
    remote = open_remote(f"s3://{make_bucket(s3_endpoint)}/x", {"endpointurl": s3_endpoint})
    calls: list[str] = []
    try:
        client = remote._client()  # type: ignore[attr-defined]
        client.meta.events.register("before-call.s3", lambda **kw: calls.append(kw["model"].name))
        data = b"small object\n" * 100
        (tmp_path / "src").write_bytes(data)
        remote.put(tmp_path / "src", "files/md5/ab/cd")
        assert remote.get("files/md5/ab/cd", tmp_path / "dest") == hashlib.md5(data).hexdigest()
        assert (tmp_path / "dest").read_bytes() == data
        assert calls == []
        with pytest.raises(FileNotFoundError):  # an error answer: asked again by the client
            remote.get("files/md5/ab/missing", tmp_path / "other")
        assert calls == ["GetObject"]
    finally:
        remote.close()
