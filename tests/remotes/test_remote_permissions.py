"""Permission denied on every backend, provoked for real: a folder and an sshd user that may
not write or read, an S3 server that enforces IAM policies. Each gives one line and exit 1,
is not retried, leaves the local cache intact, and a later run after the fix completes.

The tests run as root, whom no file mode stops: the folder remote is driven as the ordinary
user ``nobody`` (a forked child), and the sshd logs in as ``nobody``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, Result, make_tree, run_as
from remotes.remote_helpers import NOBODY, chown_tree, public_dir, remove_public_dir
from remotes.remote_servers import SSH_ALIAS, SshServer, free_port, start_server

import repro.remotes.common

FILES = 30


def never_sleep(delay: float) -> None:
    raise AssertionError(f"a refusal was retried (wait of {delay} s)")


@pytest.fixture(autouse=True)
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission denied is final: a retry would fail the command with exit 3, not 1."""
    monkeypatch.setattr(repro.remotes.common, "sleep", never_sleep)


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def stored_objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def one_line(result: Result) -> str:
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def add_data(project: Project, seed: int = 5) -> dict[str, str]:
    make_tree(project.root / "data", FILES, folders=3, size=256, seed=seed)
    project.ok("add", "data")
    project.commit("data")
    return digests(project.root / "data")


def forget_local_copies(project: Project) -> None:
    """As on a fresh clone: neither the cache nor the workspace has the data."""
    shutil.rmtree(project.root / ".repro" / "cache")
    shutil.rmtree(project.root / "data")


def cache_is_clean(cache: Path, pending_ok: bool = True) -> None:
    """No partial download. A fetch that stops early may leave a verified manifest waiting
    under a dot-name for its files (no listing counts it; the next fetch completes it)."""
    names = [p.name for p in cache.rglob("*") if p.is_file() and p.name.startswith(".repro-")]
    allowed = [n for n in names if pending_ok and n.startswith(".repro-pending-")]
    assert names == allowed


# -- a folder ----------------------------------------------------------------------------------
@pytest.fixture
def store() -> Iterator[Path]:
    """A public folder for the remote, and a home for nobody."""
    folder = public_dir("repro-store-")
    (folder / "home").mkdir()
    os.chown(folder / "home", NOBODY, NOBODY)
    try:
        yield folder
    finally:
        remove_public_dir(folder)


def as_nobody(project: Project, store: Path, *args: str) -> Result:
    chown_tree(project.root, NOBODY)
    return run_as(NOBODY, project.root, store / "home", *args)


def test_push_to_a_folder_the_user_may_not_write(public_project: Project, store: Path) -> None:
    project = public_project
    add_data(project)
    remote = store / "remote"
    remote.mkdir()
    remote.chmod(0o555)  # root's: others may look, not write
    project.ok("remote", "add", "-d", "store", str(remote))
    project.commit("remote")

    line = one_line(as_nobody(project, store, "push"))

    assert f"remote folder {remote}: permission denied for user nobody" in line
    assert "give nobody write permission" in line
    assert stored_objects(remote) == []
    assert as_nobody(project, store, "fsck").code == 0
    os.chown(remote, NOBODY, NOBODY)  # the fix: nobody's folder, and writable
    remote.chmod(0o755)
    pushed = as_nobody(project, store, "push")
    assert pushed.code == 0, pushed.err
    assert f"Pushed {FILES + 1} objects" in pushed.out
    assert as_nobody(project, store, "status", "-c").code == 0


def test_pull_of_objects_the_user_may_not_read(public_project: Project, store: Path) -> None:
    project = public_project
    expected = add_data(project)
    remote = store / "remote"
    project.ok("remote", "add", "-d", "store", str(remote))
    project.commit("remote")
    project.ok("push")  # as root: folders 0755, objects 0644
    files = [p for p in stored_objects(remote) if not p.name.endswith(".dir")]
    unreadable = files[::3]
    for path in unreadable:
        path.chmod(0)
    forget_local_copies(project)

    line = one_line(as_nobody(project, store, "pull"))

    assert "permission denied for user nobody" in line and "give nobody read permission" in line
    assert any(str(path) in line for path in unreadable), line
    cache_is_clean(project.root / ".repro" / "cache")
    assert as_nobody(project, store, "fsck").code == 0
    assert not (project.root / "data").exists()
    for path in unreadable:
        path.chmod(0o444)  # the fix
    pulled = as_nobody(project, store, "pull")
    assert pulled.code == 0, pulled.err
    assert digests(project.root / "data") == expected
    cache_is_clean(project.root / ".repro" / "cache", pending_ok=False)
    assert as_nobody(project, store, "fsck").code == 0


# -- ssh ---------------------------------------------------------------------------------------
def test_ssh_push_to_a_folder_the_login_user_may_not_write(
    project: Project, nobody_sshd: tuple[SshServer, Path]
) -> None:
    _, public = nobody_sshd
    remote = public / "remote"
    remote.mkdir()  # root's, 0755: nobody may enter it, not write in it
    add_data(project)
    project.ok("remote", "add", "-d", "store", f"ssh://{SSH_ALIAS}{remote}")

    line = one_line(project.repro("push"))

    assert f"cannot write in {remote} on {SSH_ALIAS}: permission denied for user nobody" in line
    assert "give nobody write permission" in line
    assert stored_objects(remote) == []
    assert project.repro("fsck").code == 0
    os.chown(remote, NOBODY, NOBODY)  # the fix
    assert f"Pushed {FILES + 1} objects" in project.ok("push").out
    project.ok("fsck", "-r", "store")


def test_ssh_pull_of_objects_the_login_user_may_not_read(
    project: Project, nobody_sshd: tuple[SshServer, Path]
) -> None:
    _, public = nobody_sshd
    remote = public / "remote"
    remote.mkdir()
    os.chown(remote, NOBODY, NOBODY)
    expected = add_data(project)
    project.ok("remote", "add", "-d", "store", f"ssh://{SSH_ALIAS}{remote}")
    project.ok("push")
    files = [p for p in stored_objects(remote) if not p.name.endswith(".dir")]
    unreadable = files[::3]
    for path in unreadable:
        path.chmod(0)  # nobody owns them, and still may not read them
    forget_local_copies(project)

    line = one_line(project.repro("pull"))

    assert "permission denied for user nobody" in line and "give nobody read permission" in line
    assert any(str(path) in line for path in unreadable), line
    cache_is_clean(project.root / ".repro" / "cache")
    assert project.repro("fsck").code == 0
    for path in unreadable:
        path.chmod(0o444)  # the fix
    project.ok("pull")
    assert digests(project.root / "data") == expected
    cache_is_clean(project.root / ".repro" / "cache", pending_ok=False)
    project.ok("fsck")


# -- S3 ----------------------------------------------------------------------------------------
@dataclass
class IamStore:
    """A moto S3 server of its own that checks signatures and IAM policies."""

    endpoint: str
    bucket: str
    iam: Any  # an IAM client with an admin's key, for granting
    s3: Any  # an S3 client with an admin's key, for looking

    def user(self, name: str, actions: list[str]) -> dict[str, str]:
        """A user allowed ``actions`` on the bucket; returns its key as remote options."""
        self.iam.create_user(UserName=name)
        self.allow(name, actions)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}

    def allow(self, name: str, actions: list[str]) -> None:
        resources = [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"]
        statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        self.iam.put_user_policy(UserName=name, PolicyName="bucket", PolicyDocument=policy)

    def names(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture
def iam_s3(home: Path) -> Iterator[IamStore]:
    """Its own server process: moto's auth switch is global to a process, and the shared
    server must stay open."""
    import boto3
    import requests

    port = free_port()
    process, _log = start_server(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], "Running on"
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # Auth is off until reset-auth: set up the bucket and an admin first.
        iam = boto3.client("iam", endpoint_url=endpoint)
        bucket = "repro-iam-test"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        iam.create_user(UserName="admin")
        admin_policy = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [admin_policy]}),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        # From now on every request must be signed by a known key and allowed by a policy.
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=30).raise_for_status()
        admin = {
            "endpoint_url": endpoint,
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        store = IamStore(
            endpoint, bucket, boto3.client("iam", **admin), boto3.client("s3", **admin)
        )
        with pytest.raises(Exception, match="InvalidAccessKeyId"):
            boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
        yield store
    finally:
        process.terminate()
        process.wait(timeout=30)


def add_s3_remote(project: Project, store: IamStore, key: dict[str, str]) -> None:
    project.ok("remote", "add", "-f", "-d", "store", f"s3://{store.bucket}/project")
    project.ok("remote", "modify", "store", "endpointurl", store.endpoint)
    for option, value in key.items():
        project.ok("remote", "modify", "--local", "store", option, value)


def test_s3_push_without_put_permission(project: Project, iam_s3: IamStore) -> None:
    add_data(project)
    add_s3_remote(project, iam_s3, iam_s3.user("alice", ["s3:ListBucket", "s3:GetObject"]))

    line = one_line(project.repro("push"))

    assert f"cannot write s3://{iam_s3.bucket}/project/files/md5/" in line
    assert "access denied (AccessDenied)" in line and "grants them s3:PutObject" in line
    assert iam_s3.names() == []
    assert project.repro("fsck").code == 0
    iam_s3.allow("alice", ["s3:ListBucket", "s3:GetObject", "s3:PutObject"])  # the fix
    assert f"Pushed {FILES + 1} objects" in project.ok("push").out
    project.ok("status", "-c")


def test_s3_pull_without_get_permission(project: Project, iam_s3: IamStore) -> None:
    expected = add_data(project)
    add_s3_remote(project, iam_s3, iam_s3.user("writer", ["s3:*"]))
    project.ok("push")
    add_s3_remote(project, iam_s3, iam_s3.user("bob", ["s3:ListBucket"]))
    forget_local_copies(project)

    line = one_line(project.repro("pull"))

    assert f"cannot read s3://{iam_s3.bucket}/project/files/md5/" in line
    assert "access denied (AccessDenied)" in line and "grants them s3:GetObject" in line
    cache_is_clean(project.root / ".repro" / "cache")
    assert project.repro("fsck").code == 0
    iam_s3.allow("bob", ["s3:ListBucket", "s3:GetObject"])  # the fix
    project.ok("pull")
    assert digests(project.root / "data") == expected
    project.ok("fsck")
