"""Attacks on the ssh push that asks what the remote has of its own stream's session (one ``find``
of the fan-out folders, answered before the stream is read) and sends directory manifests in a
second tar session once every file is in place (``TarStreams.exists``, ``_ask_spare``,
``_listing``, ``_put_session``, ``Transfer.push``): a ``find`` that ends its answer early, twice,
never, or names files the remote lacks; roots with blanks and quotes; a fan-out folder that is a
FIFO, a file, a symlink on the way or another user's closed folder; a server stopped between its
answer and the stream or during the manifests' session; a connection cut while a manifest is
being placed; a refused login for the manifests' session; two pushes at once; a Ctrl-C while the
question waits; a push with nothing to send. No object may be reported pushed unless it is whole
on the remote, no manifest may land before its files, nothing may be written through a symlink,
and every failure must end, in bounded time, in one line; the next command then completes."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers import Project, cli
from remotes.remote_helpers import (
    NOBODY,
    add_directory,
    add_file,
    cached_files,
    chown_tree,
    files_under,
    many_files,
    server_path,
    ssh_project,
    start_push,
)
from remotes.remote_servers import (
    SshServer,
    cut_connections,
    descendants,
    logins,
    resume,
    running_sshd,
    stop_server,
    trust_sshd,
)
from remotes.test_remote_ssh_bulk import open_ssh, ssh_children

from repro.errors import RemoteError
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import Transfer, TransferSummary
from repro.remotes import ssh as ssh_module
from repro.remotes.openssh import PUSH_STAGING
from repro.remotes.ssh import SshRemote

FIND = "/usr/bin/find"
# Shorter pauses between the five attempts, so that a test of the bound waits seconds, not
# minutes: the bound is len(RETRY_DELAYS) + 1 timeouts plus the pauses, whatever they are.
FAST_DELAYS = (0.1, 0.1, 0.1, 0.1)
# Slack on top of a bound: the watchdog looks every timeout / 4, so each of the five attempts
# may end a quarter timeout late, and a busy two-core machine starts processes slowly (the
# same 5 s as the other bounded-time tests).
SLACK = 5.0

PutMany = Callable[
    [Sequence[tuple[str, str]], Callable[[int, int], None] | None, bool],
    Iterator[tuple[str, int]],
]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh_module, "RETRY_DELAYS", FAST_DELAYS)


def bound(timeout: float) -> float:
    """The documented longest wait: (attempts) × timeout + the pauses between attempts."""
    delays = ssh_module.RETRY_DELAYS
    return (len(delays) + 1) * timeout + sum(delays)


def directory(cache: Path, count: int, tag: str = "") -> tuple[str, list[str]]:
    """A directory of ``count`` small files in the cache: its manifest's id and its files'."""
    contents = {f"d/{i}": f"file {tag}{i}\n".encode() for i in range(count)}
    files = [add_file(cache, data) for data in contents.values()]
    return add_directory(cache, contents), files


def plant(store: Path, cache: Path, oids: Iterable[str]) -> None:
    """Put objects on the remote by hand, as an earlier push would have."""
    for oid in oids:
        path = store / object_key(oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(object_path(cache, oid).read_bytes())


def placed(store: Path) -> dict[str, bytes]:
    """Every object under its final name (files/md5/ab/cdef, no temp name): key -> bytes."""
    found = {}
    for path in files_under(store):
        key = path.relative_to(store).as_posix()
        parts = key.split("/")
        layout = len(parts) == 4 and parts[:2] == ["files", "md5"] and "/." not in key
        if layout and stat.S_ISREG(path.lstat().st_mode):  # never open a FIFO planted there
            found[key] = path.read_bytes()
    return found


def all_whole(store: Path) -> bool:
    """Whether every object under its final name holds bytes that hash to its name."""
    for key, data in placed(store).items():
        folder, name = key.split("/")[-2:]
        if hashlib.md5(data).hexdigest() != (folder + name).removesuffix(".dir"):
            return False
    return True


def on_store(store: Path, oids: Iterable[str]) -> set[str]:
    keys = placed(store)
    return {oid for oid in oids if object_key(oid) in keys}


def wrap_put_many(remote: SshRemote, before: Callable[[int], object]) -> None:
    """``before(n)`` runs as the push calls ``put_many`` for the ``n``-th time (1: its files,
    2: its manifests)."""
    streamed: PutMany = remote.put_many
    calls = [0]

    def put_many(
        items: Sequence[tuple[str, str]],
        sent: Callable[[int, int], None] | None = None,
        more: bool = False,
    ) -> Iterator[tuple[str, int]]:
        calls[0] += 1
        before(calls[0])
        return streamed(items, sent, more)

    remote.put_many = put_many  # type: ignore[method-assign]


def push_to(store: Path, cache: Path, ids: list[str]) -> TransferSummary:
    """Push ``ids`` from ``cache`` to the ssh remote at ``store``, in a remote of its own."""
    remote = open_ssh(store)
    try:
        return Transfer(remote, cache, progress=False).push(ids)
    finally:
        remote.close()


def push_or_error(remote: SshRemote, cache: Path, ids: list[str]) -> TransferSummary | RemoteError:
    try:
        return Transfer(remote, cache, progress=False).push(ids)
    except RemoteError as exc:
        return exc


def push_stopped_at(
    server: SshServer,
    store: Path,
    cache: Path,
    ids: list[str],
    timeout: float,
    call: int,
    then: Callable[[], object] = lambda: None,
) -> tuple[TransferSummary | RemoteError, float, set[str]]:
    """Push ``ids``, stopping the server as the push calls ``put_many`` for the ``call``-th
    time (``then()`` runs just before); what the push ended with, how long after the stop,
    and which of ``ids`` were on the store at its end (the server resumed after)."""
    remote = open_ssh(store, {"timeout": str(timeout)})
    stopped: list[int] = []
    when: list[float] = []

    def stop_there(count: int) -> None:
        if count == call:
            then()
            stopped.extend(stop_server(server))
            when.append(time.monotonic())

    wrap_put_many(remote, stop_there)
    try:
        try:
            outcome = push_or_error(remote, cache, ids)
            return outcome, time.monotonic() - when[0], on_store(store, ids)
        finally:
            resume(stopped)
    finally:
        remote.close()


def clients_of(store: Path) -> list[int]:
    """Processes anywhere whose command line names the store (an ssh client left behind)."""
    found = []
    for pid in descendants(1):
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(store) in line and "pytest" not in line:
            found.append(pid)
    return found


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def fake_find(tmp_path: Path, body: str) -> tuple[str, Path]:
    """The sshd line that puts a ``find`` running ``body`` first on every session's PATH, and
    that script's path (rewrite it to change what the server does)."""
    setenv = server_path(tmp_path / "fake-bin", find=f"#!/bin/sh\n{body}\n")
    return setenv, tmp_path / "fake-bin" / "find"


def honest(script: Path) -> None:
    script.write_text(f'#!/bin/sh\nexec {FIND} "$@"\n')


def objects_of(cache: Path) -> list[Path]:
    """The object files of a project's cache."""
    return [p for p in cached_files(cache) if p.relative_to(cache).parts[0] == "files"]


def one_line_error(err: str) -> str:
    """The error line of a failed command; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "no error said"
    return lines[-1]


# -- the question ----------------------------------------------------------------------------------
def test_a_push_with_nothing_to_send_ends_at_once(
    sshd: SshServer, home: Path, tmp_path: Path, fast_retries: None
) -> None:
    """``repro push`` starts the stream's session (prepare_put) before it reads the outputs, so
    a project with nothing to push (or a --run-cache push of no entries) still has one when
    Transfer.push asks exists() about no key at all. It must end at once, as over SFTP, and
    leave no client behind."""
    trust_sshd(home, sshd)
    timeout = 1.0
    remote = open_ssh(tmp_path / "remote", {"timeout": str(timeout)})
    result: list[TransferSummary] = []
    thread = threading.Thread(
        target=lambda: result.append(Transfer(remote, tmp_path / "cache", progress=False).push([])),
        daemon=True,
    )
    remote.prepare_put()  # what cmd_push does before it knows what it will push
    started = time.monotonic()
    thread.start()
    try:
        thread.join(bound(timeout) + SLACK)
        took = time.monotonic() - started
    finally:
        remote.close()  # kills the session: a push still waiting on it then goes on
        thread.join(30)
    assert ssh_children() == []
    assert took < bound(timeout), f"a push of nothing was still waiting after {took:.1f} s"
    assert result and result[0].ok and result[0].transferred == 0


EARLY = f'echo repro-listed\nexec {FIND} "$@"'
TWICE = f'{FIND} "$@"\nstatus=$?\necho repro-listed\nexit $status'


@pytest.mark.parametrize("find", [EARLY, TWICE], ids=["early", "twice"])
def test_a_listing_that_says_it_ended_early_or_twice_costs_a_resend_never_an_object(
    home: Path, tmp_path: Path, find: str
) -> None:
    """A find that prints the script's last line before its keys (they then count for
    nothing), or after them (the script's own last line follows, read by the stream's
    listener): what the listing missed is sent again, nothing extra counts as there, and the
    directory's manifest lands once its files are all whole on the remote."""
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 20)
    plant(store, cache, files[::2])
    setenv, _script = fake_find(tmp_path, find)
    with running_sshd(tmp_path / "odd-sshd", setenv) as server:
        trust_sshd(home, server)
        remote = open_ssh(store)
        try:
            pushed = Transfer(remote, cache, progress=False).push([manifest])
            assert remote._tar.works is True
        finally:
            remote.close()
        assert ssh_children() == []
        # Asked again on a session of its own (no push prepared): no hang, no foreign key.
        remote = open_ssh(store)
        try:
            again = remote.exists([object_key(oid) for oid in [*files, manifest]])
        finally:
            remote.close()
    assert pushed.ok and pushed.transferred + pushed.already_present == 21
    assert pushed.already_present == (0 if find == EARLY else 10)
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)
    assert again == (set() if find == EARLY else {object_key(oid) for oid in [*files, manifest]})


def test_a_server_that_lists_files_it_lacks_gets_their_manifest_without_them(
    home: Path, tmp_path: Path
) -> None:
    """Lying is the server's right: a find that names files the remote lacks. The push counts
    them as there and sends only their directory's manifest, which then is on the remote
    without its files (the price of trusting the answer, as the SFTP way trusts a planted
    name). Nothing is reported transferred that is not whole there, and once find tells the
    truth the next push sends the files."""
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 5)
    lies = " ".join(object_key(oid) for oid in files)
    setenv, script = fake_find(tmp_path, f'printf "%s\\n" {lies}\nexec {FIND} "$@"')
    with running_sshd(tmp_path / "lying-sshd", setenv) as server:
        trust_sshd(home, server)
        lied_to = push_to(store, cache, [manifest])
        assert (lied_to.transferred, lied_to.already_present, lied_to.ok) == (1, 5, True)
        assert on_store(store, [*files, manifest]) == {manifest} and all_whole(store)
        honest(script)
        truly = push_to(store, cache, [manifest])
    assert (truly.transferred, truly.already_present, truly.ok) == (5, 1, True)
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)


def test_only_manifests_whose_files_are_there_go_on_the_session_that_answered(
    sshd: SshServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are all on the remote already, the manifest is not: nothing goes in the
    files' call (no session is spent there), and the manifest goes on the very session that
    answered the question (that session read its question already: no second empty line may
    be written to it, or its tar would read it as the stream). One login, no SFTP."""
    trust_sshd(home, sshd)
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 30)
    plant(store, cache, files)
    remote = open_ssh(store)
    monkeypatch.setattr(remote, "_exists_one", lambda key: pytest.fail("asked over SFTP"))
    monkeypatch.setattr(remote, "list", lambda prefix: pytest.fail("listed over SFTP"))
    monkeypatch.setattr(remote, "put", lambda source, key: pytest.fail("put over SFTP"))
    before = logins(sshd)
    try:
        pushed = Transfer(remote, cache, progress=False).push([manifest])
        assert logins(sshd) - before == 1
    finally:
        remote.close()
    assert (pushed.transferred, pushed.already_present, pushed.ok) == (1, 30, True)
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)
    assert ssh_children() == []


# -- odd roots and layouts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "streams"),
    [("a remote, with blanks", True), ('it\'s "quoted"', False)],
    ids=["blanks", "quotes"],
)
def test_a_root_with_blanks_streams_and_one_with_quotes_goes_over_sftp(
    sshd: SshServer, home: Path, tmp_path: Path, name: str, streams: bool
) -> None:
    """Blanks are shell-safe, quoted in the script (the question's folders are relative to
    it); a quote is not, and then nothing goes on a command line: the question, the files and
    the manifest all go over SFTP. Either way the answer is right and the push whole."""
    trust_sshd(home, sshd)
    cache, store = tmp_path / "cache", tmp_path / name
    manifest, files = directory(cache, 12)
    plant(store, cache, files[:4])
    remote = open_ssh(store)
    before = logins(sshd)
    try:
        pushed = Transfer(remote, cache, progress=False).push([manifest])
        assert remote._tar.works is streams
    finally:
        remote.close()
    # The stream's session (which answered) and the manifest's; or paramiko's one connection.
    assert logins(sshd) - before == (2 if streams else 1)
    assert (pushed.transferred, pushed.already_present, pushed.ok) == (9, 4, True)
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)
    remote = open_ssh(store)
    try:
        keys = [object_key(oid) for oid in [*files, manifest]]
        assert remote.exists(keys) == set(keys)
    finally:
        remote.close()


@pytest.mark.parametrize("kind", ["fifo", "file"])
def test_a_fan_out_folder_that_is_a_fifo_or_a_file_fails_in_one_line_and_is_left_alone(
    project: Project, sshd: SshServer, home: Path, tmp_path: Path, kind: str
) -> None:
    """find lists a FIFO or a file in a folder's place as nothing (it never opens it); the
    stream then refuses to place through it, and paramiko's way names it: one line, exit 1,
    the thing planted there untouched, no manifest on the remote (one of its files could not
    go), every object that is there whole. Once it is gone, push and status -c complete."""
    store = tmp_path / "store"
    ssh_project(project, home, sshd, store, files=20)
    cache = project.root / ".repro" / "cache"
    objects = sorted(p for p in objects_of(cache) if not p.name.endswith(".dir"))
    folder = store / objects[0].relative_to(cache).parent
    folder.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(folder)
    else:
        folder.write_bytes(b"not a folder")
    started = time.monotonic()
    failed = cli(project.root, "push", timeout=90)
    took = time.monotonic() - started
    assert failed.code == 1, failed
    line = one_line_error(failed.err)
    assert str(folder) in failed.err, failed.err
    assert took < 60, line
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISREG)(folder.lstat().st_mode)
    if kind == "file":
        assert folder.read_bytes() == b"not a folder"
    assert not [key for key in placed(store) if key.endswith(".dir")]
    assert all_whole(store)
    folder.unlink()
    assert cli(project.root, "push", timeout=90).code == 0
    assert cli(project.root, "status", "-c", timeout=90).code == 0
    assert all_whole(store) and [key for key in placed(store) if key.endswith(".dir")]


def test_another_users_closed_fan_out_folder_is_an_error_in_one_line_and_is_left_alone(
    nobody_sshd: tuple[SshServer, Path], tmp_path: Path
) -> None:
    """The server's user (nobody) cannot enter a fan-out folder root owns (0700) that holds
    one of the objects: find says nothing of it (its error silenced), so the push sends that
    object again, cannot place it, and says so in one line, in bounded time; the folder keeps
    exactly what it held. Opened for reading, the next push counts the object as there and
    completes."""
    server, public = nobody_sshd
    cache, store = tmp_path / "cache", public / "store"
    files = many_files(cache, 30)
    plant(store, cache, files[:1])
    chown_tree(store, NOBODY)
    closed = (store / object_key(files[0])).parent
    for path in (closed, *closed.iterdir()):
        os.lchown(path, 0, 0)
    closed.chmod(0o700)
    held = {p.name: p.read_bytes() for p in closed.iterdir()}
    remote = open_ssh(store, {"timeout": "5"})
    started = time.monotonic()
    try:
        outcome = push_or_error(remote, cache, files)
    finally:
        remote.close()
    took = time.monotonic() - started
    if isinstance(outcome, RemoteError):
        message = str(outcome)
    else:
        assert not outcome.ok, outcome
        assert [f.object_id for f in outcome.failed] == [files[0]], outcome
        message = str(outcome.failed[0].error)
    assert "permission denied" in message and "\n" not in message, message
    assert took < 30
    assert {p.name: p.read_bytes() for p in closed.iterdir()} == held
    assert all_whole(store)
    closed.chmod(0o755)  # still root's: nobody may read it, not write in it
    pushed = push_to(store, cache, files)
    assert pushed.ok and pushed.already_present >= 1
    assert on_store(store, files) == set(files) and all_whole(store)


def test_a_symlink_above_a_fan_out_folder_is_answered_as_sftp_would_and_never_written_through(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """files/md5 is a symlink to another tree holding the directory's files. find, given
    files/md5/ab, follows the symlinks above its starting point (only the last one is not
    followed), as SFTP's lstat of the whole path does: both ways give the same answer. The
    manifest the push then sends is refused in one line, and nothing lands in the other
    tree."""
    trust_sshd(home, sshd)
    cache, store, elsewhere = tmp_path / "cache", tmp_path / "remote", tmp_path / "elsewhere"
    manifest, files = directory(cache, 5)
    plant(elsewhere, cache, files)
    (store / "files").mkdir(parents=True)
    (store / "files" / "md5").symlink_to(elsewhere / "files" / "md5")
    before = sorted(str(p) for p in files_under(elsewhere))
    keys = [object_key(oid) for oid in [*files, manifest]]
    answers = []
    for streams in (True, False):
        remote = open_ssh(store)
        if not streams:
            remote._tar.works = False
        try:
            answers.append(remote.exists(keys))
        finally:
            remote.close()
    assert answers[0] == answers[1], answers
    remote = open_ssh(store)
    try:
        outcome = push_or_error(remote, cache, [manifest])
    finally:
        remote.close()
    message = str(outcome) if isinstance(outcome, RemoteError) else str(outcome.failed[0].error)
    assert "symlink" in message and "\n" not in message, message
    assert sorted(str(p) for p in files_under(elsewhere)) == before
    assert sorted(p.name for p in store.iterdir()) == ["files"]


# -- stopped, cut, refused, interrupted ------------------------------------------------------------
def test_a_server_stopped_between_its_answer_and_the_stream_is_given_up_on_in_bounded_time(
    home: Path, tmp_path: Path, fast_retries: None
) -> None:
    """The push's session answered (so SFTP's first connection now counts as a drop, retried),
    then the server stopped before the stream. The stream's watchdog ends that session, the
    object-by-object way retries, and the push fails in one line within the bound; no manifest
    is on the remote, and resumed, the next push completes."""
    timeout = 1.0
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 40)
    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        outcome, waited, stranded = push_stopped_at(server, store, cache, [manifest], timeout, 1)
        assert isinstance(outcome, RemoteError), outcome
        assert "did not answer" in str(outcome) and "\n" not in str(outcome)
        assert waited < bound(timeout) + SLACK, f"gave up after {waited:.1f} s"
        assert stranded == set()
        pushed = push_to(store, cache, [manifest])
    assert pushed.ok
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)


def test_a_server_stopped_during_the_manifests_session_leaves_no_manifest_before_its_files(
    home: Path, tmp_path: Path, fast_retries: None
) -> None:
    """The files are placed; the server stops as the manifest's session (logged in while the
    files streamed) starts its stream. That session and its retries are given up on within the
    bound, in one line; the files are whole on the remote, the manifest not there when the
    push gives up; resumed, the next push places it."""
    timeout = 1.0
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 40)
    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        files_there: list[set[str]] = []
        outcome, waited, stranded = push_stopped_at(
            server,
            store,
            cache,
            [manifest],
            timeout,
            2,
            then=lambda: files_there.append(on_store(store, files)),
        )
        assert files_there == [set(files)]
        assert isinstance(outcome, RemoteError), outcome
        assert "did not answer" in str(outcome) and "\n" not in str(outcome)
        assert waited < bound(timeout) + SLACK, f"gave up after {waited:.1f} s"
        assert stranded == set()
        assert all_whole(store)
        pushed = push_to(store, cache, [manifest])
    assert pushed.ok
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)


SLOW_FOR_MANIFESTS = """#!/bin/sh
/usr/bin/tar "$@" || exit
case " $* " in *" -xof "*) ;; *) exit 0 ;; esac
if [ ! -e {mark} ] && [ -n "$(find . -name '*.dir')" ]; then : > {mark}; exec sleep 30; fi
"""


def test_a_connection_cut_while_a_manifest_is_placed_names_no_manifest_then_resumes(
    project: Project, home: Path, tmp_path: Path
) -> None:
    """The server's tar has unpacked the manifest's stream into the staging folder (the files
    are in place) and then the connection is cut: the manifest is not under its name, never
    half there. The push resumes on a new session and completes; status -c and gc -c then find
    all well."""
    mark = tmp_path / "manifest-unpacked"
    setenv = server_path(tmp_path / "fake-bin", tar=SLOW_FOR_MANIFESTS.format(mark=mark))
    store = tmp_path / "store"
    with running_sshd(tmp_path / "sshd", setenv) as server:
        ssh_project(project, home, server, store, files=30)
        cache = project.root / ".repro" / "cache"
        ids = [p.parent.name + p.name for p in objects_of(cache)]
        manifests = [oid for oid in ids if oid.endswith(".dir")]
        proc = start_push(project, lambda: True)
        try:
            wait_until(lambda: mark.exists() or proc.poll() is not None, "no manifest came", 60)
            assert proc.poll() is None, proc.communicate()
            files_there = on_store(store, ids)
            assert cut_connections(server) > 0
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert files_there == set(ids) - set(manifests)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert on_store(store, ids) == set(ids) and all_whole(store)
        assert cli(project.root, "status", "-c", timeout=90).code == 0
        assert cli(project.root, "gc", "-w", "-c", "-f", timeout=90).code == 0
    assert on_store(store, ids) == set(ids) and all_whole(store)
    assert clients_of(store) == []


@pytest.mark.parametrize("back", [True, False], ids=["login-back", "login-refused"])
def test_a_refused_login_for_the_manifests_session_is_retried_and_never_lets_it_go_first(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_retries: None, back: bool
) -> None:
    """The manifests' session logs in while the files stream; the server refuses that one
    login. A refused login once the way worked counts as a drop: a new session places the
    manifest after the files (login-back), or, refused every time, the push fails in one line
    within the bound with its files whole and no manifest (login-refused), and the next push,
    once logins work, places it."""
    timeout = 2.0
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 30)
    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        authorized = tmp_path / "sshd" / "authorized_keys"
        keys = authorized.read_text()
        remote = open_ssh(store, {"timeout": str(timeout)})
        tar = remote._tar
        prepare = tar.prepare_put
        calls = [0]

        def prepare_put() -> None:
            calls[0] += 1
            if calls[0] != 2:  # the second: the manifests', from inside the files' session
                prepare()
                return
            authorized.write_text("")
            prepare()
            spare = tar._spare_push
            assert spare is not None
            spare._process.wait(timeout=30)  # its login refused
            if back:
                authorized.write_text(keys)

        monkeypatch.setattr(tar, "prepare_put", prepare_put)
        placed_first: list[set[str]] = []
        wrap_put_many(
            remote, lambda call: placed_first.append(on_store(store, files)) if call == 2 else None
        )
        started = time.monotonic()
        try:
            outcome = push_or_error(remote, cache, [manifest])
            took = time.monotonic() - started
        finally:
            remote.close()
            authorized.write_text(keys)
        assert calls[0] == 2 and placed_first == [set(files)]
        if back:
            assert isinstance(outcome, TransferSummary) and outcome.ok, outcome
            assert (outcome.transferred, outcome.already_present) == (31, 0)
        else:
            assert isinstance(outcome, RemoteError), outcome
            assert "\n" not in str(outcome)
            assert took < bound(timeout) + SLACK + 2  # the files' stream too
            assert on_store(store, [*files, manifest]) == set(files) and all_whole(store)
            remote = open_ssh(store)
            try:
                assert Transfer(remote, cache, progress=False).push([manifest]).ok
            finally:
                remote.close()
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)
    assert ssh_children() == []


def test_two_pushes_at_once_to_a_new_remote_both_complete(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """Two pushes (two users' caches) to a remote that has nothing yet, streaming at the same
    moment: both were told nothing is there, both take the first push's way (the top folder
    moved in one rename) and one of them finds the other's folder there. Both complete, every
    object and both manifests are whole, no staging folder stays."""
    trust_sshd(home, sshd)
    store = tmp_path / "remote"
    shared = {f"s/{i}": f"shared {i}\n".encode() for i in range(40)}
    wanted: list[list[str]] = []
    caches = [tmp_path / "a", tmp_path / "b"]
    for n, cache in enumerate(caches):
        own, _files = directory(cache, 15, tag=f"own{n}")
        wanted.append([add_directory(cache, shared), own, *many_files(cache, 10, tag=f"{n}")])
    barrier = threading.Barrier(2, timeout=60)
    results: list[TransferSummary | BaseException] = []

    def push(cache: Path, ids: list[str]) -> None:
        remote = open_ssh(store)
        wrap_put_many(remote, lambda call: barrier.wait() if call == 1 else None)
        try:
            results.append(Transfer(remote, cache, progress=False).push(ids))
        except BaseException as exc:
            results.append(exc)
            barrier.abort()
        finally:
            remote.close()

    pairs = zip(caches, wanted, strict=True)
    threads = [threading.Thread(target=push, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 2, results
    assert all(isinstance(r, TransferSummary) and r.ok for r in results), results
    every = {oid for ids in wanted for oid in ids}
    assert {oid for oid in every if not oid.endswith(".dir")} <= on_store(store, every)
    assert on_store(store, every) >= {oid for oid in every if oid.endswith(".dir")}
    assert all_whole(store)
    wait_until(
        lambda: not [p for p in store.iterdir() if p.name.startswith(PUSH_STAGING)],
        "a staging folder stayed",
        10,
    )
    assert sorted(p.name for p in store.iterdir()) == ["files"]


def test_ctrl_c_while_the_question_waits_stops_at_once_and_the_next_push_completes(
    project: Project, home: Path, tmp_path: Path
) -> None:
    """The server's find takes its time; Ctrl-C then ends the push at once (exit 130, one
    line), leaves no ssh client running, and nothing half there; the next push, with find
    answering, completes and status -c agrees."""
    mark = tmp_path / "asked"
    setenv, script = fake_find(tmp_path, f": > {mark}\nexec sleep 8")
    store = tmp_path / "store"
    with running_sshd(tmp_path / "sshd", setenv) as server:
        ssh_project(project, home, server, store, files=20)
        proc = subprocess.Popen(
            [sys.executable, "-m", "repro", "push"],
            cwd=project.root,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own foreground group, as in a terminal
        )
        try:
            wait_until(lambda: mark.exists() or proc.poll() is not None, "never asked", 60)
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)
            started = time.monotonic()
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130 and err.strip() == "interrupted", err
        assert took < 3
        wait_until(lambda: clients_of(store) == [], "an ssh client stayed", 10)
        assert all_whole(store)
        honest(script)
        assert cli(project.root, "push", timeout=90).code == 0
        assert cli(project.root, "status", "-c", timeout=90).code == 0
    assert all_whole(store) and placed(store)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    return 0


@pytest.mark.parametrize(
    "find",
    [
        'exec yes "$(head -c 6000 /dev/zero | tr "\\0" a)"',  # endless lines, too long
        "exec cat /dev/zero",  # one endless line
    ],
    ids=["long lines", "one line"],
)
def test_an_endless_listing_is_read_in_bounded_memory_and_ctrl_c_ends_it(
    project: Project, home: Path, tmp_path: Path, find: str
) -> None:
    """A hostile find that never stops talking: the push reads it a bounded line at a time
    (its memory does not grow with what it reads), and Ctrl-C still ends it at once. (Today it
    waits as long as the answer lasts, each line a sign of life as the stream's heartbeat is;
    a push that gives up on it by itself must do so as SFTP's answer, exit 0.)"""
    setenv, script = fake_find(tmp_path, find)
    store = tmp_path / "store"
    with running_sshd(tmp_path / "sshd", setenv) as server:
        ssh_project(project, home, server, store, files=10)
        project.ok("remote", "modify", "store", "timeout", "1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "repro", "push"],
            cwd=project.root,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            time.sleep(1.5)
            first = _rss(proc.pid) if proc.poll() is None else 0
            time.sleep(2.5)
            grown = _rss(proc.pid) - first if proc.poll() is None else 0
            started = time.monotonic()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        assert grown < 16 << 20, f"grew {grown >> 20} MiB while it read the listing"
        assert "Traceback" not in err, err
        if proc.returncode != 0:
            assert proc.returncode == 130 and err.strip() == "interrupted", err
        assert took < 3
        wait_until(lambda: clients_of(store) == [], "an ssh client stayed", 10)
        honest(script)
        assert cli(project.root, "push", timeout=90).code == 0
    assert all_whole(store) and placed(store)


def test_a_directory_file_gone_midway_keeps_its_manifest_off_and_no_session_behind(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """A gc removed one of a directory's files after the push chose it: the stream leaves it
    out, the push reports it missing and the manifest not pushed (it would announce a
    directory that cannot be pulled whole); the manifests' session, started ahead, is ended
    unused. Once the file is back, the next push places it and then the manifest."""
    trust_sshd(home, sshd)
    cache, store = tmp_path / "cache", tmp_path / "remote"
    manifest, files = directory(cache, 10)
    gone = files[3]
    content = object_path(cache, gone).read_bytes()
    remote = open_ssh(store)
    wrap_put_many(remote, lambda call: object_path(cache, gone).unlink() if call == 1 else None)
    try:
        pushed = Transfer(remote, cache, progress=False).push([manifest])
        assert remote._tar.works is True
    finally:
        remote.close()
    assert pushed.missing == (gone,)
    assert [f.object_id for f in pushed.failed] == [manifest]
    assert on_store(store, [*files, manifest]) == set(files) - {gone} and all_whole(store)
    assert ssh_children() == []
    add_file(cache, content)
    again = push_to(store, cache, [manifest])
    assert (again.transferred, again.already_present, again.ok) == (2, 9, True)
    assert on_store(store, [*files, manifest]) == {*files, manifest} and all_whole(store)
