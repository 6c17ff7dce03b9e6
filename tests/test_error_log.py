"""The log of an internal error: private to its user, never written through a planted link,
and free of the secrets the command line carried."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repro.cli import error_handler
from repro.cli.error_handler import run_guarded
from repro.cli.ui import UI

SECRET_ARGVS = [
    ["repro", "config", "--local", "remote.store.password", "Hunter2-secret"],
    ["repro", "remote", "modify", "--local", "store", "secret_access_key", "Hunter2-secret"],
    ["repro", "config", "--local", "remote.store.session_token=Hunter2-secret"],
    ["repro", "remote", "add", "store", "ssh://alice:Hunter2-secret@example.invalid/data"],
    ["repro", "remote", "add", "store", "https://alice:Hunter2@secret@example.invalid/x"],
]


def _boom() -> int:
    raise RuntimeError("cannot reach ssh://alice:Hunter2-secret@example.invalid/data")


def _log_path(err: str) -> Path:
    match = re.search(r"details in (\S+); please report", err)
    assert match, err
    return Path(match.group(1))


@pytest.fixture
def no_log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No REPRO_LOG_DIR: the state folder and the temp folder are tmp_path's."""
    monkeypatch.delenv("REPRO_LOG_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    yield tmp_path


@pytest.mark.parametrize("argv", SECRET_ARGVS)
def test_the_log_is_private_and_hides_secrets(
    no_log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    assert run_guarded(_boom, UI()) == 3
    err = capsys.readouterr().err
    log = _log_path(err)
    assert log.parent == no_log_dir / "state" / "repro" / "logs"
    info = log.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    text = log.read_text()
    assert "RuntimeError" in text and "****" in text
    assert "Hunter2" not in text and "secret@" not in text, text
    assert "store" in text  # only the secret goes


def test_planted_symlinks_are_never_followed(
    no_log_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Make the name guessable, then plant a link at every name it can take, in every folder.
    monkeypatch.setattr(error_handler, "_random_part", lambda: "guessed")
    shared = no_log_dir / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    monkeypatch.setenv("REPRO_LOG_DIR", str(shared))
    victim = no_log_dir / "victim"
    victim.write_text("precious")
    victim.chmod(0o644)
    state, temp = no_log_dir / "state" / "repro" / "logs", no_log_dir / "tmp"
    folders = [shared, state, temp / f"repro-{os.getuid()}"]
    now = int(time.time())
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for second in range(now - 1, now + 30):
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(second))
            os.symlink(victim, folder / f"repro-error-{stamp}-guessed.log")
    assert run_guarded(_boom, UI()) == 3
    log = _log_path(capsys.readouterr().err)
    assert victim.read_text() == "precious" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert log.parent not in folders and not log.is_symlink()
    assert stat.S_IMODE(log.lstat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.lstat().st_mode) == 0o700


@pytest.mark.parametrize("planted", ["symlink", "foreign folder"])
def test_another_users_planted_log_folder_is_refused(tmp_path: Path, planted: str) -> None:
    """As an unprivileged user whose per-uid temp folder someone else made first."""
    uid = gid = 65534
    public = Path(tempfile.mkdtemp(prefix="repro-public-", dir="/tmp"))
    try:
        public.chmod(0o1777)
        attacker = public / "attacker"
        attacker.mkdir()
        attacker.chmod(0o777)
        if planted == "symlink":
            os.symlink(attacker, public / f"repro-{uid}")
        else:
            (public / f"repro-{uid}").mkdir()
            (public / f"repro-{uid}").chmod(0o777)
        code, err = _as_user(uid, gid, public)
        assert code == 3, err
        log = _log_path(err)
        assert list(attacker.iterdir()) == [] and list((public / f"repro-{uid}").iterdir()) == []
        info = log.lstat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o600)
        folder = log.parent.lstat()
        assert (folder.st_uid, stat.S_IMODE(folder.st_mode)) == (uid, 0o700)
        assert "Hunter2" not in log.read_text()
    finally:
        shutil.rmtree(public, ignore_errors=True)


def _as_user(uid: int, gid: int, temp: Path) -> tuple[int, str]:
    """run_guarded(_boom) in a forked child that dropped root (the python install is private)."""
    import traceback  # noqa: F401 - imported before dropping privileges

    import repro.config  # noqa: F401

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.dup2(write_fd, 2)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.environ["HOME"] = "/nonexistent"
            os.environ.pop("REPRO_LOG_DIR", None)
            os.environ.pop("XDG_STATE_HOME", None)
            tempfile.tempdir = str(temp)
            sys.argv = SECRET_ARGVS[0]
            sys.stderr = os.fdopen(2, "w")
            code = run_guarded(_boom, UI())
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        err = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err
