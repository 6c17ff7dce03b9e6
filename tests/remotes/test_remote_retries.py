"""Retries where they make sense: an ssh connection that drops mid-transfer is re-established
and the push goes on; a server gone for good gives one line after a bounded wait. A folder
remote retries what a network filesystem reports for a moment, and nothing else.

The ssh tests cut connections for real: they SIGKILL the sshd processes serving the push.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, cli
from remotes.remote_helpers import objects_in, ssh_project, start_push
from remotes.remote_servers import cut_connections, logins, running_sshd

import repro.remotes.common
from repro.errors import RemoteError
from repro.fsutil import copy_fd
from repro.remotes import local
from repro.remotes.local import RETRY_DELAYS, LocalRemote

FILES = 2000
KEY = "files/md5/ab/cdef0123456789abcdef0123456789"


def leftovers_in(remote: Path) -> list[Path]:
    return [p for p in remote.rglob(".repro-tmp-*") if p.is_file()]


def test_ssh_push_survives_dropped_connections(
    project: Project, home: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    with running_sshd(tmp_path / "sshd") as server:
        ssh_project(project, home, server, remote, FILES)
        proc = start_push(project, lambda: objects_in(remote) > 0)
        killed = cut_connections(server)
        stored_when_cut = objects_in(remote)
        out, err = proc.communicate(timeout=300)
        assert cli(project.root, "fsck", "-r", "store").code == 0
        assert cli(project.root, "status", "-c").code == 0

    assert killed > 0 and stored_when_cut < FILES + 1
    assert proc.returncode == 0, err
    assert f"Pushed {FILES + 1} objects" in out  # all of them, in one command
    assert logins(server) >= 4  # the push reconnected; fsck and status came after
    assert leftovers_in(remote) == []  # the cut uploads' temp files were removed


def test_ssh_push_waits_for_a_restarted_sshd(project: Project, home: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    with running_sshd(tmp_path / "sshd") as server:
        ssh_project(project, home, server, remote, FILES)
        proc = start_push(project, lambda: objects_in(remote) > 0)
        cut_connections(server, listener_too=True)
        stored_when_cut = objects_in(remote)
    # The same host on the same port, a moment later.
    with running_sshd(tmp_path / "sshd", port=server.port) as again:
        out, err = proc.communicate(timeout=300)
        assert cli(project.root, "fsck", "-r", "store").code == 0

    assert stored_when_cut < FILES + 1
    assert proc.returncode == 0, err
    assert f"Pushed {FILES + 1} objects" in out
    assert logins(again) >= 2  # the push, then fsck


def test_ssh_server_gone_for_good_fails_with_one_line(
    project: Project, home: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    with running_sshd(tmp_path / "sshd") as server:
        ssh_project(project, home, server, remote, FILES)
        proc = start_push(project, lambda: objects_in(remote) > 0)
        cut_connections(server, listener_too=True)
        _, err = proc.communicate(timeout=300)

    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "lost the connection to ssh://" in err and "5 attempts failed" in err
    assert "run the command again" in err
    assert cli(project.root, "fsck").code == 0  # the local cache is intact
    with running_sshd(tmp_path / "sshd", port=server.port):
        result = cli(project.root, "push")
        assert result.code == 0, result.err
        assert cli(project.root, "fsck", "-r", "store").code == 0


# -- a folder ----------------------------------------------------------------------------------
class Flaky:
    """Wraps a function so that its first calls fail with ``errors``, one each."""

    def __init__(self, real: Callable[..., Any], *errors: int) -> None:
        self.real = real
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, os.strerror(code))
        return self.real(*args, **kwargs)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between attempts, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(repro.remotes.common, "sleep", recorded.append)
    return recorded


def test_folder_remote_retries_a_stale_nfs_handle(
    tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = LocalRemote(tmp_path / "remote")
    (tmp_path / "src").write_bytes(b"payload")
    copy = Flaky(copy_fd, errno.ESTALE, errno.EAGAIN)
    monkeypatch.setattr(local, "copy_fd", copy)

    remote.put(tmp_path / "src", KEY)

    assert copy.calls == 3 and waits == list(RETRY_DELAYS[:2])
    assert (tmp_path / "remote" / KEY).read_bytes() == b"payload"
    assert leftovers_in(tmp_path / "remote") == []
    monkeypatch.setattr(local, "_copy_hashing", Flaky(local._copy_hashing, errno.ESTALE))
    assert remote.get(KEY, tmp_path / "back") == hashlib.md5(b"payload").hexdigest()
    assert (tmp_path / "back").read_bytes() == b"payload"


def test_folder_remote_gives_up_after_bounded_attempts(
    tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = LocalRemote(tmp_path / "remote")
    (tmp_path / "src").write_bytes(b"payload")
    copy = Flaky(copy_fd, *[errno.ESTALE] * 10)
    monkeypatch.setattr(local, "copy_fd", copy)

    with pytest.raises(RemoteError, match="still failed after 4 attempts"):
        remote.put(tmp_path / "src", KEY)

    assert copy.calls == 4 and waits == list(RETRY_DELAYS)
    assert [p for p in (tmp_path / "remote").rglob("*") if p.is_file()] == []  # not even a temp


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC, errno.EROFS, errno.EIO])
def test_folder_remote_fails_fast_on_lasting_errors(
    code: int, tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = LocalRemote(tmp_path / "remote")
    (tmp_path / "src").write_bytes(b"payload")
    copy = Flaky(copy_fd, code)
    monkeypatch.setattr(local, "copy_fd", copy)

    with pytest.raises(RemoteError) as caught:
        remote.put(tmp_path / "src", KEY)

    assert copy.calls == 1 and waits == []
    assert "\n" not in str(caught.value)
