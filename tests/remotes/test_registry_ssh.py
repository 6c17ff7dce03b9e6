"""The data registry as teams use it: a registry repository served over ssh (a real sshd on
loopback) whose data lives on S3 (moto), imported here, updated after it moves, pushed to this
project's own remote and pulled by a fresh clone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import Project, git, make_tree
from remotes.remote_servers import SSH_ALIAS, SshServer, make_bucket, trust_sshd
from test_registry import repository


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_import_over_ssh_from_s3_update_push_and_clone(
    tmp_path: Path,
    home: Path,
    sshd: SshServer,
    s3_endpoint: str,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust_sshd(home, sshd)
    # git's ssh reads the user's ssh config and known hosts: the test's, in its $HOME.
    monkeypatch.setenv(
        "GIT_SSH_COMMAND",
        f"ssh -F {home}/.ssh/config -o UserKnownHostsFile={home}/.ssh/known_hosts",
    )
    root = tmp_path / "registry"
    registry = repository(root, capsys)
    bucket = make_bucket(s3_endpoint)
    registry.ok("remote", "add", "-d", "s3", f"s3://{bucket}/registry")
    registry.ok("remote", "modify", "s3", "endpointurl", s3_endpoint)
    make_tree(root / "datasets" / "train", 40, folders=4)
    registry.ok("add", "datasets/train")
    registry.ok("push")
    registry.commit("train v1")
    shutil.rmtree(root / ".repro" / "cache")  # over ssh the data can only come from S3
    url = f"ssh://{SSH_ALIAS}{root}"

    project.ok("import", url, "datasets/train", "-o", "train")
    assert _tree(project.root / "train") == _tree(root / "datasets/train")
    assert project.repro("status").code == 0

    registry.ok("pull")
    registry.ok("unprotect", "datasets/train")
    (root / "datasets/train/d000/f00000").write_bytes(b"relabelled")
    registry.ok("add", "datasets/train")
    registry.ok("push")
    registry.commit("train v2")
    status = project.repro("status")
    assert status.code == 1 and "moved" in status.out
    project.ok("update", "train.repro")
    assert (project.root / "train/d000/f00000").read_bytes() == b"relabelled"
    assert project.repro("status").code == 0

    store = tmp_path / "own-store"
    project.ok("remote", "add", "-d", "own", str(store))
    project.commit("import train")
    project.ok("push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.root), str(clone))
    cloned = Project(clone, capsys)
    cloned.ok("pull")
    assert _tree(clone / "train") == _tree(project.root / "train")
    config = (clone / ".repro" / "config").read_text()
    assert bucket not in config and s3_endpoint not in config, "nothing of the source's config"
