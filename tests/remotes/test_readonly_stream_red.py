"""Attacks on the ssh tar stream that writes each object read-only from the start, removes the
file a failed member was writing, and widens the ssh client's pipes (``TarStreams._get_session``,
``Transfer._place``, ``host.widen_pipe``): odd umasks as root and as an unprivileged user, a
member past the threaded-hashing size cut midway (once, and every time), a full disk (bytes and
inodes), the ``verify_remote`` path, a user over ``pipe-user-pages-soft``, and a Ctrl-C that
leaves the hashing-aside writer running after its descriptor was closed. No object may
take its name unless its bytes hash to it, nothing half-written may be left, a retry must work
as a user whom file modes bind, and every failure must end in one line."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Project, cli
from remotes.remote_helpers import (
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
from remotes.remote_servers import SSH_ALIAS, SshServer, logins, running_sshd, trust_sshd
from remotes.test_remote_ssh_bulk import fetch_watching, open_ssh, pushed_store, same_objects

from repro import fsutil
from repro.objects.ids import object_path
from repro.objects.transfer import verify_remote
from repro.remotes import openssh

# Another unprivileged user than nobody: the pipe test fills this user's pipe quota, which
# must not slow down tests running as nobody meanwhile.
USER = pwd.getpwnam("games").pw_uid if "games" in {p.pw_name for p in pwd.getpwall()} else 65534
BIG = openssh._HASH_ASIDE + (1 << 20)  # hashed in a thread of its own while written
_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032


def _exit_code(pid: int) -> int:
    status = os.waitpid(pid, 0)[1]
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


def _in_child(work: Callable[[], object], umask: int, uid: int | None, home: Path) -> int:
    """``work`` run by ``start_child`` as ``uid`` (None: root) under ``umask``; its exit
    code."""
    return _exit_code(start_child(home, work, uid, umask))


@contextlib.contextmanager
def _workplace(home: Path, server: SshServer, uid: int | None) -> Iterator[tuple[Path, Path]]:
    """A cache folder and a HOME (ssh settings and key) that ``uid`` owns: (home, cache)."""
    import paramiko  # noqa: F401 - imported before the fork: nobody cannot read /root

    public = public_dir("repro-ro-red-")
    try:
        user_home, cache = nobody_ssh_home(home, server, public), public / "cache"
        cache.mkdir()
        if uid is not None:
            chown_tree(public, uid)
        yield user_home, cache
    finally:
        remove_public_dir(public)


def _leftovers(cache: Path) -> list[str]:
    return [str(p) for p in [*cache.iterdir(), *cached_files(cache)] if p.name.startswith(".")]


def _all_sound_and_read_only(cache: Path) -> None:
    for path in cached_files(cache / "files" / "md5"):
        assert not path.name.startswith("."), path
        oid = path.parent.name + path.name
        assert hashlib.md5(path.read_bytes()).hexdigest() == oid.removesuffix(".dir"), path
        assert oct(path.stat().st_mode)[-3:] == "444", (path, oct(path.stat().st_mode))


def _objects(cache: Path) -> list[str]:
    """Small objects, one past the threaded-hashing size, and a directory (its manifest goes
    through a pending temp name, not a folder built aside)."""
    return [
        *many_files(cache, 40),
        add_file(cache, os.urandom(BIG)),
        add_directory(cache, {f"d/{i}": f"in a directory {i}\n".encode() for i in range(5)}),
    ]


# Umasks that leave its owner rwx on a folder: one without (0o222, 0o137) makes folders
# their own user cannot write in or enter, which stops any tool; root alone ignores that.
KIND_UMASKS = [0o077, 0o027, 0o000, 0o002, 0o037, 0o026, 0o055, 0o073]


@pytest.mark.parametrize(
    ("umask", "uid"),
    [(umask, uid) for umask in KIND_UMASKS for uid in (None, USER)]
    + [(umask, None) for umask in (0o222, 0o333, 0o137, 0o777)],
    ids=lambda value: "root" if value is None else "user" if value == USER else f"umask{value:03o}",
)
def test_fetched_objects_are_read_only_whatever_the_umask(
    sshd: SshServer, home: Path, tmp_path: Path, umask: int, uid: int | None
) -> None:
    """Created 0444 & ~umask: what _place must bring to 0444 (0400 under 077, 0440 under 137),
    whether the object was written aside, under a temp name beside its final one (its folder
    there already), or is a manifest waiting for its files."""
    trust_sshd(home, sshd)
    source = tmp_path / "cache"
    files = _objects(source)
    store = pushed_store(tmp_path, source, files)
    with _workplace(home, sshd, uid) as (user_home, cache):
        existing = object_path(cache, files[0]).parent
        existing.mkdir(parents=True)
        if uid is not None:
            chown_tree(cache, uid)

        def fetch() -> None:
            fetched = fetch_watching(store, cache, files, tar_way=True)
            assert fetched.ok and fetched.transferred == len(files) + 5, fetched

        assert _in_child(fetch, umask, uid, user_home) == 0
        _all_sound_and_read_only(cache)
        assert _leftovers(cache) == []
        assert same_objects(source, cache, files)


CUT_TAR = """#!{python}
import os, signal, sys, tarfile, time
names = [a for a in sys.argv[1:] if a.startswith("files/")]  # from xargs
runs = {runs!r}
with open(runs, "a") as counted:
    counted.write(".")
cut_once = runs + "-cut"
names.sort(key=os.path.getsize)  # the small ones first: the stream moves them before the cut
out = sys.stdout.buffer
for name in names:
    data = open(name, "rb").read()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    out.write(info.tobuf(tarfile.GNU_FORMAT))
    if len(data) >= {big} and ({always!r} or not os.path.exists(cut_once)):
        open(cut_once, "w").close()
        out.write(data[: len(data) // 2])
        out.flush()
        if {stall!r}:
            with open(runs + "-stalled", "w") as stalled:  # the test ends it
                stalled.write(str(os.getpid()))
            time.sleep(60)
        # The connection drops: every sshd process serving this session, up to the listener.
        pid = os.getppid()
        while pid not in (0, 1, {listener}):
            comm = open(f"/proc/{{pid}}/comm").read().strip()
            parent = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
            if comm.startswith("sshd"):
                os.kill(pid, signal.SIGKILL)
            pid = parent
        sys.exit(1)
    out.write(data + bytes(-len(data) % 512))
out.write(bytes(1024))
out.flush()
"""


@contextlib.contextmanager
def _cutting_server(
    tmp_path: Path, home: Path, always: bool, stall: bool = False
) -> Iterator[SshServer]:
    """An sshd whose tar hands over the small objects, then half of the big one, and drops the
    connection (or first stalls, with ``stall``): the first time only, or ``always``."""
    fake = tmp_path / "cut-bin"
    # Its tar is written once the server runs: it names the listener.
    with running_sshd(tmp_path / "cut-sshd", server_path(fake)) as server:
        script = CUT_TAR.format(
            python=sys.executable,
            runs=str(fake / "runs"),
            always=always,
            stall=stall,
            big=openssh._HASH_ASIDE,
            listener=server.pid,
        )
        (fake / "tar").write_text(script)
        (fake / "tar").chmod(0o755)
        trust_sshd(home, server)
        try:
            yield server
        finally:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                os.kill(int((fake / "runs-stalled").read_text()), signal.SIGKILL)


@pytest.mark.parametrize("uid", [None, USER], ids=["root", "unprivileged"])
def test_a_big_object_cut_midway_while_hashed_aside_is_written_again_by_the_resumed_stream(
    sshd: SshServer, home: Path, tmp_path: Path, uid: int | None
) -> None:
    """The threaded-hashing path (``_write_hashing_aside``) gets half of an object when the
    connection drops: its read-only file must go, so that the resumed stream, as a user whom
    0400 (umask 077) binds, opens it again; the object ends up whole and read-only."""
    trust_sshd(home, sshd)
    source = tmp_path / "cache"
    files = _objects(source)
    store = pushed_store(tmp_path, source, files)
    with _cutting_server(tmp_path, home, always=False) as server:
        before = logins(server)
        with _workplace(home, server, uid) as (user_home, cache):

            def fetch() -> None:
                fetched = fetch_watching(store, cache, files, tar_way=True)  # resumed so
                assert fetched.ok and fetched.transferred == len(files) + 5, fetched

            assert _in_child(fetch, 0o077, uid, user_home) == 0
            _all_sound_and_read_only(cache)
            assert _leftovers(cache) == []
            assert same_objects(source, cache, files)
        assert (tmp_path / "cut-bin" / "runs").read_text() == "..."  # manifests, cut, resumed
        assert logins(server) - before == 3


@pytest.mark.parametrize("uid", [None, USER], ids=["root", "unprivileged"])
def test_verify_over_a_stream_cut_midway_finds_no_problem_and_leaves_no_scratch(
    sshd: SshServer, home: Path, tmp_path: Path, uid: int | None
) -> None:
    """``verify_remote`` takes the same stream (``_verify_many``): a cut in the big object's
    middle is resumed, as root and as a user whom the scratch file's mode binds."""
    trust_sshd(home, sshd)
    source = tmp_path / "cache"
    files = _objects(source)
    store = pushed_store(tmp_path, source, files)
    with _cutting_server(tmp_path, home, always=False) as server:
        with _workplace(home, server, uid) as (user_home, _cache):
            scratch = Path(tempfile.mkdtemp(prefix="repro-ro-red-tmp-"))
            scratch.chmod(0o1777)

            def verify() -> None:
                tempfile.tempdir = str(scratch)
                remote = open_ssh(store)
                try:
                    assert verify_remote(remote, progress=False) == []
                    assert remote._tar.works is True
                finally:
                    remote.close()

            try:
                assert _in_child(verify, 0o077, uid, user_home) == 0
                assert list(scratch.iterdir()) == []
            finally:
                shutil.rmtree(scratch)
        assert (tmp_path / "cut-bin" / "runs").read_text() == ".."


def test_ctrl_c_while_a_big_object_is_hashed_aside_leaves_nothing_and_the_next_fetch_works(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """As a user whom modes bind (umask 077), Ctrl-C comes while the stream stalls in the
    middle of the big object (its file read-only, half-written, in a folder built aside): the
    verified objects go in, the half-written one goes, and the next fetch gets all."""
    trust_sshd(home, sshd)
    source = tmp_path / "cache"
    files = _objects(source)
    store = pushed_store(tmp_path, source, files)
    stalled = tmp_path / "cut-bin" / "runs-stalled"
    with (
        _cutting_server(tmp_path, home, always=False, stall=True) as server,
        _workplace(home, server, USER) as (user_home, cache),
    ):

        def fetch() -> None:
            with contextlib.suppress(KeyboardInterrupt):
                fetch_watching(store, cache, files)
                raise AssertionError("no Ctrl-C came")

        child = start_child(user_home, fetch, USER, 0o077)
        try:
            deadline = time.monotonic() + 15
            while not stalled.exists():  # its tar writes it once it stalls
                assert time.monotonic() < deadline, "the stream never stalled"
                time.sleep(0.01)
            # What the tar sent before it stalled may still be in the pipes: wait for our side
            # to have written it.
            while not (half := [p for p in cached_files(cache) if p.stat().st_size >= BIG // 4]):
                assert time.monotonic() < deadline, "half of the big object never arrived"
                time.sleep(0.01)
            assert all(p.stat().st_mode & 0o777 == 0o400 for p in half), half
        finally:
            os.kill(child, signal.SIGINT)
            code = _exit_code(child)
        assert code == 0
        assert _leftovers(cache) == []
        _all_sound_and_read_only(cache)
        assert len(cached_files(cache)) >= 40  # the small ones, verified before the stall

        def fetch_all() -> None:
            assert fetch_watching(store, cache, files).ok

        assert _in_child(fetch_all, 0o077, USER, user_home) == 0
        _all_sound_and_read_only(cache)
        assert same_objects(source, cache, files)


@pytest.mark.parametrize("forged_first", [False, True])
def test_an_object_handed_over_twice_to_an_unprivileged_user_is_taken_once_and_only_if_sound(
    sshd: SshServer, home: Path, tmp_path: Path, forged_first: bool
) -> None:
    """The server's tar sends every object twice, once forged. As a user whom modes bind, the
    second copy must never be opened (its file, read-only, would refuse it: a traceback), and
    no forged byte reaches the cache."""
    from remotes.test_fetch_aside_red import TWICE_TAR

    trust_sshd(home, sshd)
    source = tmp_path / "cache"
    files = many_files(source, 30)
    store = pushed_store(tmp_path, source, files)
    script = TWICE_TAR.format(python=sys.executable, forged_first=forged_first)
    setenv = server_path(tmp_path / "fake-bin", tar=script)
    with running_sshd(tmp_path / "twice-sshd", setenv) as server:
        trust_sshd(home, server)
        with _workplace(home, server, USER) as (user_home, cache):

            def fetch() -> None:
                fetched = fetch_watching(store, cache, files)
                if forged_first:
                    assert {f.object_id for f in fetched.failed} == set(files), fetched
                else:
                    assert (fetched.transferred, fetched.failed) == (30, ()), fetched

            assert _in_child(fetch, 0o077, USER, user_home) == 0
            _all_sound_and_read_only(cache)
            assert _leftovers(cache) == []
            assert len(cached_files(cache)) == (0 if forged_first else 30)


def _pull_project(
    project: Project,
    home: Path,
    server: SshServer,
    tmp_path: Path,
    big: bool = True,
    one_folder: bool = False,
) -> Path:
    """A project whose data (small files and one big) is pushed to an ssh remote on ``server``,
    its cache and workspace then removed; its cache's path."""
    trust_sshd(home, server)
    data = project.root / "data"
    data.mkdir()
    for i in range(60):
        content = os.urandom(64 << 10)
        while one_folder and not hashlib.md5(content).hexdigest().startswith("00"):
            content = os.urandom(512)  # all in one cache folder: its files use up the inodes
        (data / f"f{i}.txt").write_bytes(content)
    if big:
        (data / "big.bin").write_bytes(os.urandom(BIG))
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", f"ssh://{SSH_ALIAS}{tmp_path / 'store'}")
    project.ok("push")
    cache = project.root / ".repro" / "cache"
    shutil.rmtree(cache)
    shutil.rmtree(data)
    return cache


def test_a_stream_cut_every_time_ends_in_one_line_and_keeps_only_sound_objects(
    project: Project, sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """Every stream drops in the middle of the big object: the pull gives up after its
    retries with a one-line error, and the cache holds only whole, checked, read-only objects
    and nothing half-written (nor the files of retried streams)."""
    cache = _pull_project(project, home, sshd, tmp_path)
    with _cutting_server(tmp_path, home, always=True):
        result = cli(project.root, "pull")
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    _all_sound_and_read_only(cache)
    assert _leftovers(cache) == []
    trust_sshd(home, sshd)
    assert cli(project.root, "pull").code == 0
    _all_sound_and_read_only(cache)


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[None]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.mark.parametrize(
    ("options", "big"),
    [("size=6m", True), ("size=2m", False), ("nr_inodes=30,size=64m", False)],
    ids=["big", "small", "inodes"],
)
def test_a_full_disk_mid_stream_ends_in_one_line_and_the_next_pull_works(
    project: Project, sshd: SshServer, home: Path, tmp_path: Path, options: str, big: bool
) -> None:
    """The cache is a tmpfs that fills in the middle of the stream: amid the big object while
    it is hashed aside, amid small objects, or out of inodes when a file is made. One line,
    exit 1, nothing half-written; once there is room, a pull works."""
    cache = _pull_project(project, home, sshd, tmp_path, big, one_folder="inodes" in options)
    with _tmpfs(cache, options):
        result = cli(project.root, "pull")
        assert result.code == 1, result
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: no space left"), result.err
        _all_sound_and_read_only(cache)
        assert _leftovers(cache) == []
        subprocess.run(["mount", "-o", "remount,size=128m,nr_inodes=10000", str(cache)], check=True)
        assert cli(project.root, "pull").code == 0
        _all_sound_and_read_only(cache)
        assert len(list((project.root / "data").iterdir())) == 60 + big


def test_a_user_over_the_soft_pipe_quota_still_fetches(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """An unprivileged user whose pipes already hold pipe-user-pages-soft: F_SETPIPE_SZ fails
    (EPERM) and new pipes get a page or two. The ssh client's pipes then stay small, and the
    fetch, big object included, still works."""
    trust_sshd(home, sshd)
    source = tmp_path / "cache"
    files = _objects(source)
    store = pushed_store(tmp_path, source, files)
    with _workplace(home, sshd, USER) as (user_home, cache):

        def fetch() -> None:
            held: list[int] = []
            try:
                for _ in range(1000):
                    read, write = os.pipe()
                    held += [read, write]
                    try:
                        fcntl.fcntl(write, _F_SETPIPE_SZ, 1 << 20)
                    except PermissionError:
                        break
                else:
                    raise AssertionError("no quota on pipes here")
                session = openssh.Session(["cat"], 5.0)
                try:
                    pipes = (session.stdin.fileno(), session.stdout.fileno())
                    sizes = {fcntl.fcntl(p, _F_GETPIPE_SZ) for p in pipes}
                finally:
                    session.close()
                assert max(sizes) < 1 << 20, sizes
                fetched = fetch_watching(store, cache, files, tar_way=True)
                assert fetched.ok and fetched.transferred == len(files) + 5, fetched
            finally:
                for fd in held:
                    os.close(fd)

        assert _in_child(fetch, 0o022, USER, user_home) == 0
        _all_sound_and_read_only(cache)
        assert same_objects(source, cache, files)


def test_ctrl_c_while_a_big_object_is_hashed_aside_writes_nothing_into_the_next_file_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C comes while ``_write_hashing_aside`` waits for its writer thread (a slow disk:
    up to 64 chunks queued). The stream's caller closes the object's descriptor and goes on;
    the writer, still running, must not write the queued chunks into whatever file takes that
    descriptor's number next (the next object's, in a program that catches the Ctrl-C: its
    md5 is the stream's, so those bytes would reach the cache under its name)."""
    release, written, all_given = threading.Event(), threading.Event(), threading.Event()
    tries: list[int] = []
    real_write_all = fsutil.write_all

    def slow_write_all(fd: int, data: bytes | memoryview) -> None:
        tries.append(fd)
        try:
            if len(tries) == 1:
                assert all_given.wait(10)
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the stream waits for it
                release.wait(10)
            real_write_all(fd, data)
        finally:
            if len(tries) == 5:
                written.set()

    monkeypatch.setattr(openssh, "write_all", slow_write_all)

    def chunks() -> Iterator[bytes]:
        yield from (bytes([65 + i]) * 65536 for i in range(5))
        all_given.set()  # the stream now waits for its writer

    out = os.open(tmp_path / "object", os.O_WRONLY | os.O_CREAT, 0o444)
    try:
        with pytest.raises(KeyboardInterrupt):
            openssh._write_hashing_aside(chunks(), out)
    finally:
        os.close(out)
    next_file = os.open(tmp_path / "next", os.O_WRONLY | os.O_CREAT, 0o444)
    try:
        assert next_file == out  # the lowest free number: the one just closed
        release.set()
        assert written.wait(10)  # the writer tried all it had been given
    finally:
        os.close(next_file)
    assert (tmp_path / "next").read_bytes() == b""
