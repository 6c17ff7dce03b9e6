"""Many objects at once over ssh: one ``tar`` stream through OpenSSH's client. What the stream
reader accepts, the way on a BusyBox server, and what happens when that way is missing,
hostile, cut or silent: paramiko's object-by-object way takes over, or the transfer resumes,
or it stops in bounded time, and no byte that does not hash to its name is ever kept."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers import Project, cli
from remotes.remote_helpers import (
    NOBODY,
    add_directory,
    add_file,
    cached_files,
    chown_tree,
    many_files,
    nobody_ssh_home,
    public_dir,
    remove_public_dir,
    server_path,
    start_child,
)
from remotes.remote_servers import (
    SSH_ALIAS,
    SshServer,
    cut_connections,
    descendants,
    logins,
    resume,
    running_sshd,
    stop_server,
    trust_sshd,
)

from repro.errors import CorruptObjectError, RemoteError
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import Transfer, TransferSummary
from repro.remotes import open_remote, openssh, tarstream
from repro.remotes.openssh import PUSH_STAGING
from repro.remotes.ssh import RETRY_DELAYS, SshRemote


def open_ssh(root: Path, options: dict[str, str] | None = None) -> SshRemote:
    remote = open_remote(f"ssh://{SSH_ALIAS}{root}", options or {})
    assert isinstance(remote, SshRemote)
    return remote


def push_and_fetch(
    store: Path, cache: Path, other: Path, files: list[str]
) -> tuple[TransferSummary, TransferSummary, tuple[bool | None, bool | None]]:
    """Push ``files`` from ``cache`` to the ssh remote at ``store`` and fetch them into
    ``other``; the two summaries, and whether OpenSSH's way was taken by each."""
    ways = []
    summaries = []
    for transfer in (Transfer.push, Transfer.fetch):
        remote = open_ssh(store)
        try:
            summaries.append(transfer(Transfer(remote, cache, progress=False), files))
            ways.append(remote._tar.works)
        finally:
            remote.close()
        cache = other
    return summaries[0], summaries[1], (ways[0], ways[1])


def same_objects(cache: Path, other: Path, ids: list[str]) -> bool:
    return all(
        object_path(other, oid).read_bytes() == object_path(cache, oid).read_bytes() for oid in ids
    )


# -- the stream reader and writer, against GNU tar ------------------------------------------------
def test_what_we_write_gnu_tar_reads_and_what_it_writes_we_read(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    names = ["files/md5/ab/" + "c" * 30, "d" * 120, "files/md5/ab/big"]  # a long name too
    for i, name in enumerate(names):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(os.urandom(70_000 * i + 5))
    ours = tmp_path / "ours.tar"
    with open(ours, "wb") as out:
        for name in names:
            tarstream.write_member(out, name, str(tree / name), 1_700_000_000, lambda _n: None)
        tarstream.end(out)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(ours), "-C", str(unpacked)], check=True)
    assert all((unpacked / n).read_bytes() == (tree / n).read_bytes() for n in names)

    for form in ("gnu", "posix", "ustar"):
        listed = ",".join(n for n in names if form != "ustar" or len(n) <= 100)
        theirs = subprocess.run(
            ["tar", f"--format={form}", "-cf", "-", *listed.split(",")],
            cwd=tree,
            capture_output=True,
            check=True,
        ).stdout
        reader = tarstream.Reader(io.BytesIO(theirs + theirs))  # two archives in a row
        read = []
        while (member := reader.next()) is not None:
            read.append((member.name, b"".join(reader.data())))
        expected = [(n, (tree / n).read_bytes()) for n in listed.split(",")]
        assert read == expected * 2, form


def test_the_reader_refuses_a_malformed_or_cut_stream(tmp_path: Path) -> None:
    source = tmp_path / "object"
    source.write_bytes(b"x" * 3000)
    whole = io.BytesIO()
    tarstream.write_member(whole, "files/md5/ab/cd", str(source), 0, lambda _n: None)
    data = whole.getvalue()

    def read_all(stream: bytes) -> list[tuple[str, bytes]]:
        reader = tarstream.Reader(io.BytesIO(stream))
        return [(m.name, b"".join(reader.data())) for m in iter(reader.next, None)]

    assert read_all(data) == [("files/md5/ab/cd", b"x" * 3000)]
    flipped = bytearray(data)
    flipped[5] ^= 1  # a header byte: its checksum no longer matches
    with pytest.raises(tarstream.TarFormatError, match="checksum"):
        read_all(bytes(flipped))
    with pytest.raises(tarstream.TarFormatError, match="ended inside"):
        read_all(data[:2000])
    with pytest.raises(tarstream.TarFormatError, match="ended inside a header"):
        read_all(data[:100])
    huge = tarfile.TarInfo("././@LongLink")
    huge.type = b"L"  # a GNU long name claiming a megabyte
    huge.size = 1 << 20
    with pytest.raises(tarstream.TarFormatError, match="meta-entry"):
        read_all(huge.tobuf(tarfile.USTAR_FORMAT) + bytes(1 << 20))


def test_a_big_size_in_base_256_is_read() -> None:
    assert tarstream._number(b"\x80" + (9 << 30).to_bytes(11, "big")) == 9 << 30
    assert tarstream._number(b"00000000017\0") == 15


# -- the way itself, on a real sshd ---------------------------------------------------------------
def test_many_objects_go_in_one_stream_each_way(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 300) + [add_file(cache, os.urandom(3 << 20))]
    remote = open_ssh(tmp_path / "remote")
    before = logins(sshd)
    try:
        pushed = Transfer(remote, cache, progress=False).push(files)
        fetched = Transfer(remote, other, progress=False).fetch(files)
        assert remote._tar.works is True
    finally:
        remote.close()
    assert (pushed.transferred, pushed.failed, fetched.transferred, fetched.failed) == (
        301,
        (),
        301,
        (),
    )
    assert same_objects(cache, other, files)
    # One session to push (which first said what the remote had), one to fetch.
    assert logins(sshd) - before == 2
    assert not [p for p in (tmp_path / "remote").iterdir() if p.name.startswith(PUSH_STAGING)]
    assert all(oct(p.stat().st_mode)[-3:] == "444" for p in cached_files(other))


def fetch_watching(
    store: Path,
    other: Path,
    files: list[str],
    on_object: Callable[[int], None] | None = None,
    tar_way: bool = False,
) -> TransferSummary:
    """Fetch ``files`` from the ssh remote at ``store`` into ``other``; ``on_object(n)`` runs as
    the stream hands over its ``n``-th object (what another process or a Ctrl-C does then).
    ``tar_way``: the fetch must have taken (or resumed) OpenSSH's tar way, not paramiko's."""
    remote = open_ssh(store)
    if on_object is not None:
        streamed = remote.get_many

        def get_many(
            items: Sequence[tuple[str, str]], more: bool = False
        ) -> Iterator[tuple[str, str]]:
            for count, got in enumerate(streamed(items, more), 1):
                on_object(count)
                yield got

        remote.get_many = get_many  # type: ignore[method-assign]
    try:
        fetched = Transfer(remote, other, progress=False).fetch(files)
        assert remote._tar.works is True or not tar_way
        return fetched
    finally:
        remote.close()


def test_a_fetch_builds_the_cache_folders_it_lacks_aside_and_joins_one_made_meanwhile(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 300)
    store = pushed_store(tmp_path, cache, files)
    late = files[-1]  # its folder is made, with a file in it, while the stream runs
    made_meanwhile = object_path(other, late).parent
    stagings: list[list[str]] = []

    def another_fetch(count: int) -> None:
        if count == 1:
            stagings.append([p.name for p in other.iterdir() if p.name.startswith(".repro")])
            assert not object_path(other, files[0]).exists()  # built aside, not in place
            made_meanwhile.mkdir(parents=True)
            (made_meanwhile / ("f" * 30)).write_bytes(b"another fetch's object")

    fetched = fetch_watching(store, other, files, another_fetch)

    assert (fetched.transferred, fetched.failed) == (300, ())
    assert len(stagings[0]) == len({object_path(other, oid).parent for oid in files})
    assert same_objects(cache, other, files)
    assert (made_meanwhile / ("f" * 30)).read_bytes() == b"another fetch's object"
    assert not [p for p in other.iterdir() if p.name.startswith(".repro")]  # no staging left
    assert not [p for p in cached_files(other) if p.name.startswith(".")]
    ours = [p for p in cached_files(other) if p.name != "f" * 30]
    assert len(ours) == 300 and all(oct(p.stat().st_mode)[-3:] == "444" for p in ours)


def test_a_fetch_stopped_midway_keeps_what_it_verified_and_leaves_no_staging(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 300)
    store = pushed_store(tmp_path, cache, files)

    def ctrl_c(count: int) -> None:
        if count == 101:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_watching(store, other, files, ctrl_c)

    kept = [oid for oid in files if object_path(other, oid).exists()]
    assert len(kept) == 100 and same_objects(cache, other, kept)
    assert not [p for p in other.iterdir() if p.name.startswith(".repro")]
    assert len(cached_files(other)) == 100  # nothing half-written, under any name
    fetched = fetch_watching(store, other, files)
    assert (fetched.transferred, fetched.already_present, fetched.failed) == (200, 100, ())
    assert same_objects(cache, other, files)


def test_a_big_push_goes_in_several_sessions(
    sshd: SshServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each session's objects take their names when it ends: a cut costs at most one."""
    monkeypatch.setattr(openssh, "SESSION_BYTES", 1 << 20)
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = [add_file(cache, os.urandom(300 << 10)) for _ in range(10)]
    before = logins(sshd)
    pushed, fetched, ways = push_and_fetch(tmp_path / "remote", cache, other, files)
    assert ways == (True, True)
    assert (pushed.transferred, fetched.transferred) == (10, 10)
    # Three sessions of four, four and two objects (the first said what the remote had), and
    # the fetch's one.
    assert logins(sshd) - before == 4
    assert same_objects(cache, other, files)


def ssh_children() -> list[int]:
    """Our OpenSSH clients still running."""
    return [
        pid
        for pid in descendants(os.getpid())
        if Path(f"/proc/{pid}/comm").exists() and Path(f"/proc/{pid}/comm").read_text() == "ssh\n"
    ]


def test_a_directory_fetch_starts_its_files_session_ahead_and_leaves_no_client_behind(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    cache, other, third = tmp_path / "cache", tmp_path / "other", tmp_path / "third"
    manifest = add_directory(cache, {f"d/{i}": os.urandom(100) for i in range(300)})
    store = pushed_store(tmp_path, cache, [manifest])
    remote = open_ssh(store)
    before = logins(sshd)
    try:
        fetched = Transfer(remote, other, progress=False).fetch([manifest])
        # The manifest's session and the files' one, started while the first ran.
        assert logins(sshd) - before == 2
    finally:
        remote.close()
    assert (fetched.transferred, fetched.failed) == (301, ())
    # The files in the cache already: the session started ahead goes unused, and is ended.
    shutil.copytree(other, third)
    object_path(third, manifest).unlink()
    remote = open_ssh(store)
    try:
        again = Transfer(remote, third, progress=False).fetch([manifest])
        assert ssh_children() != []
    finally:
        remote.close()
    assert (again.transferred, again.already_present) == (1, 300)
    assert ssh_children() == []


def test_a_push_asks_what_the_remote_has_of_the_session_that_will_carry_its_stream(
    sshd: SshServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One login: the stream's session answers the question before it reads the stream (its
    login began before the push knew what it would ask). When nothing is left to send, that
    session is ended, and its script leaves nothing on the server."""
    trust_sshd(home, sshd)
    cache, store = tmp_path / "cache", tmp_path / "remote"
    files = many_files(cache, 50)
    remote = open_ssh(store)
    clients_while_asking: list[list[int]] = []
    asked = remote.exists

    def exists(keys: list[str]) -> set[str]:
        clients_while_asking.append(ssh_children())
        return asked(keys)

    monkeypatch.setattr(remote, "exists", exists)
    monkeypatch.setattr(remote, "_exists_one", lambda key: pytest.fail("asked over SFTP"))
    monkeypatch.setattr(remote, "list", lambda prefix: pytest.fail("listed over SFTP"))
    before = logins(sshd)
    try:
        pushed = Transfer(remote, cache, progress=False).push(files)
        assert logins(sshd) - before == 1
        again = Transfer(remote, cache, progress=False).push(files)
        assert logins(sshd) - before == 2
        assert len(ssh_children()) == 1  # the second push's session, unused until close
    finally:
        remote.close()
    assert clients_while_asking[0] != [] and clients_while_asking[1] != []
    assert (pushed.transferred, again.transferred, again.already_present) == (50, 0, 50)
    assert ssh_children() == []
    deadline = time.monotonic() + 10
    while [p for p in store.iterdir() if p.name.startswith(PUSH_STAGING)]:
        assert time.monotonic() < deadline, "the unused session left its staging folder"
        time.sleep(0.1)
    assert sorted(p.name for p in store.iterdir()) == ["files"]


def test_an_object_gone_from_the_cache_midway_is_left_out_of_the_stream_not_the_rest(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """A gc running meanwhile removed one object after the push chose it: the stream goes on
    without it, in the same session, and the push says it is missing."""
    trust_sshd(home, sshd)
    cache = tmp_path / "cache"
    files = many_files(cache, 30)
    gone = files[10]
    remote = open_ssh(tmp_path / "remote")
    streamed = remote.put_many

    def put_many(
        items: Sequence[tuple[str, str]],
        sent: Callable[[int, int], None] | None = None,
        more: bool = False,
    ) -> Iterator[tuple[str, int]]:
        object_path(cache, gone).unlink(missing_ok=True)
        return streamed(items, sent, more)

    remote.put_many = put_many  # type: ignore[method-assign]
    before = logins(sshd)
    try:
        pushed = Transfer(remote, cache, progress=False).push(files)
        assert remote._tar.works is True
    finally:
        remote.close()
    assert pushed.transferred == 29 and pushed.missing == (gone,) and not pushed.failed
    assert logins(sshd) - before == 1
    assert not (tmp_path / "remote" / object_key(gone)).exists()


def test_pushes_from_several_threads_on_one_remote_each_ask_and_stream_their_own(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """The cluster pushes each stage's inputs from its own thread through one remote: each
    prepares a session, asks, and streams. The session started ahead goes to one of them
    whole; two threads writing their questions to it hung both for ever (the second one's
    line went into the first one's stream, and the heartbeat read as an endless listing)."""
    trust_sshd(home, sshd)
    cache = tmp_path / "cache"
    groups = [many_files(cache, 30, tag=f"{n}-") for n in range(4)]
    remote = open_ssh(tmp_path / "remote", {"timeout": "5"})
    results: dict[int, TransferSummary] = {}
    barrier = threading.Barrier(len(groups))

    def push(n: int) -> None:
        barrier.wait()
        remote.prepare_put()
        results[n] = Transfer(remote, cache, progress=False).push(groups[n])

    threads = [threading.Thread(target=push, args=(n,), daemon=True) for n in range(len(groups))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a push never ended"
    finally:
        remote.close()
    assert ssh_children() == []
    assert {n: (r.transferred, r.failed) for n, r in results.items()} == {
        n: (30, ()) for n in range(len(groups))
    }
    store = tmp_path / "remote"
    assert all(
        (store / object_key(oid)).read_bytes() == object_path(cache, oid).read_bytes()
        for group in groups
        for oid in group
    )


def test_the_listing_counts_regular_files_only_and_no_symlinked_folder(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """What ``find`` lists is what the SFTP way's lstat would count, but for a folder of the
    layout that is a symlink: it holds nothing (a push then refuses to write through it)."""
    trust_sshd(home, sshd)
    cache, store = tmp_path / "cache", tmp_path / "remote"
    plain, in_symlink, as_folder, as_link, absent = many_files(cache, 5)
    elsewhere = tmp_path / "elsewhere"
    for oid in (plain, in_symlink):
        target = (elsewhere if oid == in_symlink else store) / object_key(oid)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(object_path(cache, oid).read_bytes())
    (store / object_key(in_symlink)).parent.symlink_to(
        elsewhere / object_key(in_symlink).rsplit("/", 1)[0]
    )
    (store / object_key(as_folder)).mkdir(parents=True)
    (store / object_key(as_link)).parent.mkdir(parents=True, exist_ok=True)
    (store / object_key(as_link)).symlink_to(store / object_key(plain))
    keys = [object_key(oid) for oid in (plain, in_symlink, as_folder, as_link, absent)]
    for prepared in (False, True):
        remote = open_ssh(store)
        remote._exists_one = lambda key: pytest.fail("asked over SFTP")  # type: ignore[method-assign]
        remote.list = lambda prefix: pytest.fail("listed over SFTP")  # type: ignore[method-assign]
        try:
            if prepared:
                remote.prepare_put()
            assert remote.exists(keys) == {object_key(plain)}
        finally:
            remote.close()
    remote = open_ssh(store)
    try:
        with pytest.raises(RemoteError, match="is a symlink, not a folder"):
            Transfer(remote, cache, progress=False).push([in_symlink])
    finally:
        remote.close()
    assert sorted(p.name for p in (elsewhere / object_key(in_symlink)).parent.iterdir()) == [
        in_symlink[2:]
    ]


@pytest.mark.parametrize(
    "find",
    [
        "exit 127",  # no find on the server
        "exit 2",  # a find that failed
        'echo "$PWD/files/md5/x"; exit 0',  # answered, but the script's last line is ours
        "head -c 5000000 /dev/zero | tr '\\0' a; echo",  # an endless line, then the end
    ],
    ids=["missing", "failed", "foreign", "endless line"],
)
def test_a_listing_that_fails_or_lies_about_its_form_leaves_the_question_to_sftp(
    home: Path, tmp_path: Path, find: str
) -> None:
    """Whatever the server's find does, the answer is SFTP's where the listing did not end as
    it should, no key it did not name, and read in bounded memory; the push that follows
    completes."""
    cache = tmp_path / "cache"
    files = many_files(cache, 70)  # more than a few: SFTP lists folders rather than asking
    there = files[::2]
    store = tmp_path / "remote"
    for oid in there:
        path = store / object_key(oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(object_path(cache, oid).read_bytes())
    setenv = server_path(tmp_path / "fake-bin", find=f"#!/bin/sh\n{find}\n")
    with running_sshd(tmp_path / "odd-sshd", setenv) as server:
        trust_sshd(home, server)
        keys = [object_key(oid) for oid in files]
        for prepared in (False, True):
            remote = open_ssh(store)
            try:
                if prepared:
                    remote.prepare_put()
                found = remote.exists(keys)
            finally:
                remote.close()
            if find.startswith("exit"):
                assert found == {object_key(oid) for oid in there}  # SFTP's answer
            else:
                assert found == set()  # nothing of ours listed: the push sends them again
        remote = open_ssh(store)
        try:
            pushed = Transfer(remote, cache, progress=False).push(files)
        finally:
            remote.close()
    assert pushed.ok and pushed.transferred + pushed.already_present == 70
    assert all((store / key).read_bytes() for key in keys)


@pytest.mark.parametrize("cp_links", [True, False], ids=["busybox", "no cp -l, no mv -T"])
def test_a_busybox_server_takes_the_same_way(home: Path, tmp_path: Path, cp_links: bool) -> None:
    """sh, tar, xargs, cp, mv and find all BusyBox's on the server (no GNU tar's -T there);
    or, as on macOS, a cp that cannot link and a mv without -T: a rename per object."""
    busybox = shutil.which("busybox")
    assert busybox, "no busybox: run scripts/ensure-tools.sh busybox"
    userland = tmp_path / "busybox-bin"
    userland.mkdir()
    for tool in ("sh", "tar", "xargs", "cp", "mv", "find", "mkdir", "rm", "sleep", "cat"):
        (userland / tool).symlink_to(busybox)
    if not cp_links:
        for tool, refused in (("cp", "*l*"), ("mv", "-T")):
            (userland / tool).unlink()
            (userland / tool).write_text(
                f'#!{busybox} sh\ncase "$1" in {refused}) exit 1;; esac\n'
                f'exec {busybox} {tool} "$@"\n'
            )
            (userland / tool).chmod(0o755)
    with running_sshd(tmp_path / "sshd", f"SetEnv PATH={userland}\n") as server:
        trust_sshd(home, server)
        cache, other = tmp_path / "cache", tmp_path / "other"
        files = many_files(cache, 200)
        store = tmp_path / "remote"
        # The first push makes the layout; the second adds to folders that exist.
        first, _fetched, _way = push_and_fetch(store, cache, tmp_path / "first", files[:50])
        pushed, fetched, openssh_way = push_and_fetch(store, cache, other, files)
    assert openssh_way == (True, True)
    assert (first.transferred, pushed.transferred, pushed.already_present) == (50, 150, 50)
    assert (fetched.transferred, fetched.failed) == (200, ())
    assert same_objects(cache, other, files)
    assert [p.name for p in store.iterdir()] == ["files"]  # no staging folder left


def test_a_push_killed_midway_names_no_partial_object_and_its_leftovers_go_after_a_day(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    store = tmp_path / "remote"
    store.mkdir()
    stale = store / f"{PUSH_STAGING}stale"
    (stale / "files").mkdir(parents=True)
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    recent = store / f"{PUSH_STAGING}recent"  # perhaps another push's, still running
    recent.mkdir()
    cache = tmp_path / "cache"
    files = [add_file(cache, os.urandom(256 << 10)) for _ in range(64)]
    remote = open_ssh(store)
    script = remote._tar._placing_script()
    argv = openssh.command_line(remote.target, f"sh -c {shlex.quote(script)}")
    assert argv is not None
    command = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert command.stdin is not None
    for oid in files[:10]:
        source = str(object_path(cache, oid))
        tarstream.write_member(command.stdin, object_key(oid), source, 0, lambda _n: None)
    # The eleventh object's header, then less than half of its bytes.
    command.stdin.write(tarstream.header(object_key(files[10]), 256 << 10, 0) + bytes(100 << 10))
    command.stdin.flush()
    time.sleep(0.5)
    command.kill()  # the client dies mid-object, as on a lost connection
    command.wait()
    time.sleep(0.5)
    assert not (store / "files").exists()  # nothing took a name, not even the whole ten
    try:
        pushed = Transfer(remote, cache, progress=False).push(files)
    finally:
        remote.close()
    assert pushed.transferred == 64
    assert not stale.exists() and recent.exists()


# -- when that way is missing or hostile ---------------------------------------------------------
@pytest.mark.parametrize("lacking", ["a server running no commands", "a host without ssh"])
def test_where_that_way_is_missing_paramiko_moves_objects_one_by_one(
    home: Path, tmp_path: Path, lacking: str, request: pytest.FixtureRequest
) -> None:
    config = "ForceCommand internal-sftp\n" if "server" in lacking else ""
    if "host" in lacking:
        request.getfixturevalue("no_openssh_client")
    with running_sshd(tmp_path / "sshd", config) as server:
        trust_sshd(home, server)
        cache, other = tmp_path / "cache", tmp_path / "other"
        files = many_files(cache, 50)
        pushed, fetched, openssh_way = push_and_fetch(tmp_path / "remote", cache, other, files)
    assert openssh_way == (False, False)
    assert (pushed.transferred, fetched.transferred) == (50, 50)
    assert same_objects(cache, other, files)


def test_a_root_no_login_shell_could_be_trusted_with_goes_over_sftp(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """fish reads \\' inside single quotes, csh a !: such a root (a cloned config may name
    one) never goes on a command line; SFTP takes it as it is."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 20) + [add_file(cache, os.urandom(2 << 20))]  # streamed, else
    store = tmp_path / "it's a \\ root!"
    pushed, fetched, ways = push_and_fetch(store, cache, other, files)
    assert ways == (False, False)
    assert (pushed.transferred, fetched.transferred) == (21, 21)
    assert (store / object_key(files[0])).exists()
    assert same_objects(cache, other, files)


HOSTILE_TAR = """#!{python}
import io, sys, tarfile, time
kind = {kind!r}
names = sys.stdin.read().split() if sys.argv[1:2] != ["-xof"] else []
names += [a for a in sys.argv[1:] if a.startswith("files/")]  # xargs passes them as arguments
out = sys.stdout.buffer
def member(name, data, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), kind
    out.write(info.tobuf(tarfile.GNU_FORMAT))
    out.write(data + bytes(-len(data) % 512))
if kind == "garbage":
    out.write(b"this is no tar stream " * 100)
elif kind == "escaping":
    member("../../escaped", b"owned")
    member({outside!r}, b"owned")
    for name in names:
        member(name, b"", tarfile.SYMTYPE)
elif kind == "lying":
    for name in names:
        member(name, b"forged bytes")
elif kind == "cut":
    info = tarfile.TarInfo(names[0])
    info.size = 4096
    out.write(info.tobuf(tarfile.GNU_FORMAT) + b"only a part")
elif kind == "silent":
    out.flush()
    time.sleep(30)
out.flush()
"""


def pushed_store(tmp_path: Path, cache: Path, files: list[str]) -> Path:
    """A store on the server (its honest tar), holding ``files``."""
    store = tmp_path / "remote"
    remote = open_ssh(store)
    try:
        assert Transfer(remote, cache, progress=False).push(files).ok
    finally:
        remote.close()
    return store


def hostile_server(tmp_path: Path, kind: str) -> str:
    """The sshd line that puts first on the PATH of every session a ``tar`` that answers as
    ``kind`` says."""
    script = HOSTILE_TAR.format(python=sys.executable, kind=kind, outside=str(tmp_path / "abs"))
    return server_path(tmp_path / "fake-bin", tar=script)


@pytest.mark.parametrize("kind", ["garbage", "escaping", "cut", "silent"])
def test_a_hostile_tar_on_the_server_hands_over_to_paramiko(
    home: Path, tmp_path: Path, sshd: SshServer, kind: str
) -> None:
    """The objects are sound on the server; its tar lies about them. Nothing it says is
    written anywhere but a temp file of ours, and paramiko's way then fetches them."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 40)
    store = pushed_store(tmp_path, cache, files)
    setenv = hostile_server(tmp_path, kind)
    timeout = 2.0
    with running_sshd(tmp_path / "hostile-sshd", setenv) as server:
        trust_sshd(home, server)
        remote = open_ssh(store, {"timeout": str(timeout)})
        started = time.monotonic()
        try:
            fetched = Transfer(remote, other, progress=False).fetch(files)
        finally:
            remote.close()
        took = time.monotonic() - started
    assert (fetched.transferred, fetched.failed) == (40, ())
    assert same_objects(cache, other, files)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "abs").exists()
    assert not [p for p in cached_files(other) if p.name.startswith(".")]
    if kind == "silent":
        assert timeout <= took < timeout + 15  # the watchdog, then paramiko's way


def test_a_tar_whose_bytes_lie_is_refused_object_by_object(
    home: Path, tmp_path: Path, sshd: SshServer
) -> None:
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 20)
    store = pushed_store(tmp_path, cache, files)
    setenv = hostile_server(tmp_path, "lying")
    with running_sshd(tmp_path / "hostile-sshd", setenv) as server:
        trust_sshd(home, server)
        remote = open_ssh(store)
        try:
            fetched = Transfer(remote, other, progress=False).fetch(files)
        finally:
            remote.close()
    assert fetched.transferred == 0
    assert sorted(f.object_id for f in fetched.failed) == sorted(files)
    assert all(isinstance(f.error, CorruptObjectError) for f in fetched.failed)
    assert cached_files(other) == []


# -- cut or silent midway -------------------------------------------------------------------------
def _fetch_in_thread(
    remote: SshRemote, other: Path, files: list[str]
) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def fetch() -> None:
        try:
            result.append(Transfer(remote, other, progress=False).fetch(files))
        except RemoteError as exc:
            result.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    return thread, result


def _wait_for_objects(other: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len([p for p in cached_files(other) if not p.name.startswith(".")]) < count:
        assert time.monotonic() < deadline, "the fetch moved nothing in 60 s"
        time.sleep(0.01)


def test_a_stream_cut_midway_resumes_with_what_is_left(home: Path, tmp_path: Path) -> None:
    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        cache, other = tmp_path / "cache", tmp_path / "other"
        files = [add_file(cache, os.urandom(64 << 10)) for _ in range(4000)]
        remote = open_ssh(tmp_path / "remote")
        try:
            Transfer(remote, cache, progress=False).push(files)
        finally:
            remote.close()
        before = logins(server)
        remote = open_ssh(tmp_path / "remote")  # no connection of paramiko's: only the stream's
        try:
            thread, result = _fetch_in_thread(remote, other, files)
            _wait_for_objects(other, 200)
            assert cut_connections(server) > 0
            cut_when = len(cached_files(other))
            thread.join(timeout=120)
            assert remote._tar.works is True  # resumed the same way, not handed over
        finally:
            remote.close()
    (fetched,) = result
    assert not isinstance(fetched, RemoteError), fetched
    assert (fetched.transferred, fetched.failed) == (4000, ())  # type: ignore[attr-defined]
    assert cut_when < 4000
    assert same_objects(cache, other, files)
    assert logins(server) - before == 2


def test_as_an_unprivileged_user_a_stream_cut_midway_resumes_though_it_writes_read_only(
    home: Path, tmp_path: Path
) -> None:
    """The stream makes each file read-only from the start (no chmod for each object), so the
    file of the object a cut interrupted must go: the resumed stream writes it again, as a
    user whom that mode binds."""
    import paramiko  # noqa: F401 - imported before the fork: nobody cannot read /root

    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        cache = tmp_path / "cache"
        files = [add_file(cache, os.urandom(64 << 10)) for _ in range(3000)]
        store = pushed_store(tmp_path, cache, files)
        public = public_dir("repro-cut-")
        try:
            nobody_home, other = nobody_ssh_home(home, server, public), public / "cache"
            other.mkdir()
            chown_tree(public, NOBODY)

            def fetch_all() -> None:
                fetched = fetch_watching(store, other, files, tar_way=True)  # resumed so
                assert (fetched.transferred, fetched.failed) == (3000, ()), fetched

            child = start_child(nobody_home, fetch_all)
            try:
                _wait_for_objects(other, 200)
                assert cut_connections(server) > 0
                cut_when = len(cached_files(other))
            finally:
                status = os.waitpid(child, 0)[1]
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            assert cut_when < 3000
            assert same_objects(cache, other, files)
            assert {oct(p.stat().st_mode)[-3:] for p in cached_files(other)} == {"444"}
        finally:
            remove_public_dir(public)


def test_a_server_stopped_midway_is_given_up_on_in_bounded_time(home: Path, tmp_path: Path) -> None:
    timeout = 1.0
    bound = (len(RETRY_DELAYS) + 1) * timeout + sum(RETRY_DELAYS)
    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        cache, other = tmp_path / "cache", tmp_path / "other"
        files = [add_file(cache, os.urandom(64 << 10)) for _ in range(1500)]
        remote = open_ssh(tmp_path / "remote", {"timeout": str(timeout)})
        try:
            Transfer(remote, cache, progress=False).push(files)
            thread, result = _fetch_in_thread(remote, other, files)
            _wait_for_objects(other, 200)
            stopped = stop_server(server)
            started = time.monotonic()
            try:
                thread.join(timeout=bound + 30)
                waited = time.monotonic() - started
            finally:
                resume(stopped)
        finally:
            remote.close()
        (error,) = result
        assert isinstance(error, RemoteError), error
        assert "did not answer" in str(error) and "run the command again" in str(error)
        assert waited < bound + 5
        assert not [p for p in cached_files(other) if p.name.startswith(".")]
        # Resumed, the server serves the next fetch, which finishes the work.
        remote = open_ssh(tmp_path / "remote")
        try:
            fetched = Transfer(remote, other, progress=False).fetch(files)
        finally:
            remote.close()
    assert fetched.failed == () and same_objects(cache, other, files)


def test_a_server_that_stops_before_it_answers_the_push_is_given_up_on_in_bounded_time(
    home: Path, tmp_path: Path
) -> None:
    """The push's session logged in, then the server stopped: its question goes unanswered.
    The watchdog ends that session, SFTP's first connection waits once more, and one line
    says the server did not answer; resumed, the next push completes."""
    timeout = 1.0
    bound = (len(RETRY_DELAYS) + 1) * timeout + sum(RETRY_DELAYS)
    with running_sshd(tmp_path / "sshd") as server:
        trust_sshd(home, server)
        cache = tmp_path / "cache"
        files = many_files(cache, 100)
        remote = open_ssh(tmp_path / "remote", {"timeout": str(timeout)})
        try:
            before = logins(server)
            remote.prepare_put()
            deadline = time.monotonic() + 30
            while logins(server) == before:
                assert time.monotonic() < deadline, "the session never logged in"
                time.sleep(0.05)
            stopped = stop_server(server)
            started = time.monotonic()
            try:
                with pytest.raises(RemoteError) as caught:
                    Transfer(remote, cache, progress=False).push(files)
                waited = time.monotonic() - started
            finally:
                resume(stopped)
        finally:
            remote.close()
        assert "did not answer" in str(caught.value) and "\n" not in str(caught.value)
        assert 2 * timeout <= waited < bound + 5
        remote = open_ssh(tmp_path / "remote")
        try:
            pushed = Transfer(remote, cache, progress=False).push(files)
        finally:
            remote.close()
    assert (pushed.transferred, pushed.failed) == (100, ())


def test_ctrl_c_mid_pull_stops_at_once_and_leaves_nothing_behind(
    project: Project, sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    store = tmp_path / "store"
    (project.root / "big.bin").write_bytes(os.urandom(1 << 20) * 400)
    project.ok("add", "big.bin")
    project.ok("remote", "add", "-d", "store", f"ssh://{SSH_ALIAS}{store}")
    project.ok("push")
    cache = project.root / ".repro" / "cache"
    shutil.rmtree(cache)
    (project.root / "big.bin").unlink()
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro", "pull"],
        cwd=project.root,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own foreground group, as in a terminal
    )
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 20 << 20 for p in cached_files(cache)):
        assert proc.poll() is None and time.monotonic() < deadline, "no bytes arrived"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    started = time.monotonic()
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - started
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    assert took < 3
    assert cached_files(cache) == []  # the part that arrived is gone
    assert not [p for p in descendants(1) if str(store) in _cmdline(p)]  # no ssh left behind
    assert cli(project.root, "pull").code == 0
    assert (project.root / "big.bin").stat().st_size == 400 << 20


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
