"""Three real remote backends for one shared suite: a folder, a private sshd on loopback, and
moto's S3 server on loopback. The servers start once per session; each test gets fresh storage.

Only fixtures live here; the helpers behind them are in remote_helpers.py and remote_servers.py,
which the tests import as ``remotes.remote_helpers`` and ``remotes.remote_servers``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from remotes.remote_helpers import Backend, folder_access, public_dir, remove_public_dir, s3_access
from remotes.remote_servers import (
    SSH_ALIAS,
    SshServer,
    make_bucket,
    running_s3,
    running_sshd,
    trust_sshd,
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep tests out of the real $HOME, ssh agent and AWS settings."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    # Without credentials boto3 would otherwise wait for an EC2 metadata service.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One sshd for the whole session; each test gets its own folder on it."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def nobody_sshd(home: Path) -> Iterator[tuple[SshServer, Path]]:
    """An sshd that logs in as nobody; its folder is public, as sshd reads the
    authorized keys as that user."""
    public = public_dir("repro-sshd-")
    try:
        with running_sshd(public / "sshd", user="nobody") as server:
            trust_sshd(home, server)
            yield server, public
    finally:
        remove_public_dir(public)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, a real HTTP endpoint for boto3."""
    with running_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "ssh", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[Backend]:
    """Each real backend in turn, with empty storage."""
    name: str = request.param
    if name == "local":
        root = tmp_path / "remote"
        made = Backend(name, str(root), {}, *folder_access(root))
    elif name == "ssh":
        server: SshServer = request.getfixturevalue("sshd")
        trust_sshd(home, server)
        root = tmp_path / "ssh-remote"
        made = Backend(name, f"ssh://{SSH_ALIAS}{root}", {}, *folder_access(root))
    else:
        endpoint: str = request.getfixturevalue("s3_endpoint")
        bucket = make_bucket(endpoint)
        made = Backend(
            name,
            f"s3://{bucket}/team/project",
            {"endpointurl": endpoint},
            *s3_access(endpoint, bucket, "team/project/"),
        )
    try:
        yield made
    finally:
        made.remote.close()


@pytest.fixture
def no_openssh_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without OpenSSH's client, as on a host that lacks it: ssh transfers then go
    object by object through paramiko. Every other program stays within reach."""
    shadows = tmp_path / "path-without-ssh"
    folders = []
    for number, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not (Path(folder) / "ssh").exists():
            folders.append(folder)
            continue
        shadow = shadows / str(number)
        shadow.mkdir(parents=True)
        for entry in Path(folder).iterdir():
            if entry.name != "ssh":
                (shadow / entry.name).symlink_to(entry)
        folders.append(str(shadow))
    monkeypatch.setenv("PATH", os.pathsep.join(folders))
