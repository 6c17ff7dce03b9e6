"""Choosing a backend by URL, and the errors of a wrong URL, option or missing SDK."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.remotes import known_options, open_remote, scheme_of


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("/remote", ""),
        ("../backup:2024", ""),
        ("file:///remote", "file"),
        ("ssh://user@host:2222/srv", "ssh"),
        ("S3://bucket/prefix", "s3"),
    ],
)
def test_scheme_of(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


def test_folder_remotes_from_paths_and_file_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_remote("relative/store", {}).url == str(tmp_path / "relative/store")
    assert open_remote(f"file://{tmp_path}/a%20b", {}).url == str(tmp_path / "a b")


def test_backend_classes() -> None:
    assert type(open_remote("ssh://host/srv", {})).__name__ == "SshRemote"
    assert type(open_remote("s3://bucket/prefix", {})).__name__ == "S3Remote"


def test_unsupported_scheme() -> None:
    with pytest.raises(ReproError, match="unsupported remote URL 'gs://b'"):
        open_remote("gs://b", {})


def test_unknown_option_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ReproError, match=r"'endpoint_url'.*endpointurl"):
        open_remote("s3://bucket", {"endpoint_url": "http://x"})
    assert "keyfile" in known_options("ssh://host/x")
    assert open_remote("/x", {"url": "/x"}).url == "/x"  # a whole config section is fine


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [
        ("ssh://host/x", "paramiko", "ssh"),
        ("s3://bucket", "boto3", "s3"),
    ],
)
def test_missing_sdk_names_the_extra(
    url: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes "import package" fail
    monkeypatch.delitem(sys.modules, f"repro.remotes.{extra}", raising=False)
    with pytest.raises(ReproError, match=rf"pip install 'repro-pipelines\[{extra}\]'"):
        open_remote(url, {})
