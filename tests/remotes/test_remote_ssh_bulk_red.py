"""Attacks on the ssh remote's tar-stream way that test_remote_ssh_bulk.py does not cover: a
server whose stream is slow but steady, whose tar headers are malformed in ways Python's own
parsers reject differently, and whose tar ends a push early yet has the script say the objects
were placed. Each must end in the objects moved (by this way or paramiko's) or a one-line error,
never an internal error or a transfer given up on while bytes still flowed."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest
from remotes.remote_helpers import (
    add_file,
    many_files,
    public_dir,
    remove_public_dir,
    server_path,
)
from remotes.remote_servers import SshServer, descendants, running_sshd, trust_sshd
from remotes.test_remote_ssh_bulk import open_ssh, pushed_store, same_objects

from repro.errors import RemoteError
from repro.fsutil import is_temp
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import Transfer, TransferSummary
from repro.remotes import tarstream
from repro.remotes.ssh import RETRY_DELAYS

REAL = 'exec "$TAR" "$@"'


def server_tar(tmp_path: Path, create: str = REAL, extract: str = REAL) -> str:
    """The sshd line that puts first on the server's PATH a ``tar`` that runs ``create`` or
    ``extract`` (shell text; ``$TAR`` is the real one) in place of a -c or -x."""
    real = shutil.which("tar")
    assert real
    script = (
        f'#!/bin/sh\nTAR={real}\ncase "$1" in\n  -c*) {create};;\n  -x*) {extract};;\nesac\n'
        f"{REAL}\n"
    )
    return server_path(tmp_path / "fake-bin", tar=script)


# A pipe that passes its input on in 16 KiB pieces, ten a second: a slow link, never silent.
THROTTLE = (
    "import os, sys, time\n"
    "while data := os.read(0, 16384):\n"
    "    sys.stdout.buffer.write(data); sys.stdout.buffer.flush(); time.sleep(0.1)\n"
)


def test_a_slow_but_steady_pull_is_not_taken_for_a_silent_server(
    home: Path, tmp_path: Path, sshd: SshServer
) -> None:
    """160 KiB/s with a timeout of 1 s: bytes arrive every tenth of a second, yet an object of
    600 KiB used to count as one read, its progress told only once all of it had come."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 4) + [add_file(cache, os.urandom(600 << 10))]
    store = pushed_store(tmp_path, cache, files)
    throttle = tmp_path / "throttle.py"
    throttle.write_text(THROTTLE)
    setenv = server_tar(tmp_path, create=f'"$TAR" "$@" | {sys.executable} {throttle}')
    with running_sshd(tmp_path / "slow-sshd", setenv) as server:
        trust_sshd(home, server)
        remote = open_ssh(store, {"timeout": "1"})
        try:
            fetched = Transfer(remote, other, progress=False).fetch(files)
            way = remote._tar.works
        finally:
            remote.close()
    assert (fetched.transferred, fetched.failed, way) == (5, (), True)
    assert same_objects(cache, other, files)


@pytest.mark.parametrize("size", ["\N{SUPERSCRIPT TWO}", "9" * 5000], ids=["digit", "long"])
def test_a_pax_size_python_cannot_read_is_a_malformed_stream(size: str) -> None:
    """str.isdigit takes "²" and int() does not; int() refuses more than 4300 digits. Either
    escaped the reader as a ValueError: an internal error, not the fallback to paramiko."""
    record = f"size={size}\n".encode()
    length = len(record) + 2  # "N size=...\n" counts the digits of N too
    while len(f"{length} ".encode()) + len(record) != length:
        length += 1
    data = f"{length} ".encode() + record
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(data)
    member = tarfile.TarInfo("files/md5/ab/" + "c" * 30)
    stream = pax.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)
    stream += member.tobuf(tarfile.USTAR_FORMAT) + bytes(1024)
    reader = tarstream.Reader(io.BytesIO(stream))
    with pytest.raises(tarstream.TarFormatError, match="bad size"):
        reader.next()


def test_a_push_the_server_cut_short_yet_called_placed_goes_object_by_object(
    home: Path, tmp_path: Path
) -> None:
    """The server's tar reads 4 KiB and exits 0; the script then places nothing and says it
    placed all. The client, still sending, met a closed pipe: its count of members sent fell
    short of the batch, and zip(strict=True) raised a ValueError, an internal error."""
    setenv = server_tar(tmp_path, extract="head -c 4096 >/dev/null; exit 0")
    cache = tmp_path / "cache"
    files = [add_file(cache, os.urandom(2 << 20)) for _ in range(12)]
    store = tmp_path / "remote"
    with running_sshd(tmp_path / "sshd", setenv) as server:
        trust_sshd(home, server)
        remote = open_ssh(store)
        try:
            started = time.monotonic()
            pushed = Transfer(remote, cache, progress=False).push(files)
            took = time.monotonic() - started
        finally:
            remote.close()
    assert (pushed.transferred, pushed.failed) == (12, ())
    assert all(
        (store / object_key(oid)).read_bytes() == object_path(cache, oid).read_bytes()
        for oid in files
    )
    assert took < 60


@pytest.mark.parametrize("way", ["tar stream", "paramiko alone"])
def test_a_push_into_a_full_file_system_below_the_root_names_no_partial_object(
    home: Path, tmp_path: Path, sshd: SshServer, way: str, request: pytest.FixtureRequest
) -> None:
    """``files`` is a mount of its own (a volume for the objects), and it fills up. The tar
    way's mv, as cp cannot link across mounts, copied straight into each final name; paramiko
    drops the server's answers to pipelined writes, so a refused write went unseen and the
    temp file, cut short or with holes, was renamed into place. Either way a truncated object
    took its name, the push said it succeeded, and listings called it present from then on."""
    if way == "paramiko alone":
        request.getfixturevalue("no_openssh_client")
    trust_sshd(home, sshd)
    store = tmp_path / "remote"
    (store / "files").mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(store / "files")],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"no tmpfs can be mounted here: {mounted.stderr.strip()}")
    try:
        cache = tmp_path / "cache"
        files = [add_file(cache, os.urandom(600 << 10)) for _ in range(3)]
        remote = open_ssh(store)
        try:
            with pytest.raises(RemoteError, match="disk full"):  # not all of them fit
                Transfer(remote, cache, progress=False).push(files)
        finally:
            remote.close()
        named = [p for p in (store / "files").rglob("*") if p.is_file() and not is_temp(p.name)]
        hashed = {p.parent.name + p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in named}
    finally:
        subprocess.run(["umount", str(store / "files")], check=True)
    assert all(name == md5 for name, md5 in hashed.items())


def test_a_placing_script_killed_on_the_server_leaves_no_heartbeat_to_hang_the_push(
    home: Path, tmp_path: Path
) -> None:
    """The script's shell dies by a signal (the OOM killer, an admin's kill -9): its EXIT trap
    never runs, so its heartbeat lived on, holding the session open and telling the watchdog
    the server was alive; the push waited forever. It must hand over within the bound."""
    timeout = 1.0
    bound = (len(RETRY_DELAYS) + 1) * timeout + sum(RETRY_DELAYS)
    setenv = server_tar(tmp_path, extract="kill -9 $PPID; exit 1")
    cache = tmp_path / "cache"
    files = many_files(cache, 20)
    store = tmp_path / "remote"
    with running_sshd(tmp_path / "sshd", setenv) as server:
        trust_sshd(home, server)
        remote = open_ssh(store, {"timeout": str(timeout)})
        result: list[object] = []
        pushing = threading.Thread(
            target=lambda: result.append(Transfer(remote, cache, progress=False).push(files))
        )
        started = time.monotonic()
        pushing.start()
        try:
            pushing.join(timeout=bound + 20)
            took = time.monotonic() - started
        finally:
            for pid in descendants(server.pid):  # the heartbeat, if it outlived its script
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pushing.join()
            remote.close()
    assert took < bound + 10
    (pushed,) = result
    assert (pushed.transferred, pushed.failed) == (20, ())  # type: ignore[attr-defined]


def test_a_folder_at_an_objects_name_is_refused_not_taken_for_the_object(
    home: Path, tmp_path: Path, sshd: SshServer
) -> None:
    """Someone else who writes to the remote made a folder where an object goes. The tar way
    cannot place over it and hands over; paramiko's rename onto it failed too, and the
    fallback for servers without posix-rename took whatever stood there for the object: the
    push said all was pushed, and a pull then found a folder."""
    trust_sshd(home, sshd)
    cache = tmp_path / "cache"
    files = many_files(cache, 5)
    store = tmp_path / "remote"
    (store / object_key(files[0])).mkdir(parents=True)
    remote = open_ssh(store)
    try:
        with pytest.raises(RemoteError, match="is a folder, not a regular file"):
            Transfer(remote, cache, progress=False).push(files)
    finally:
        remote.close()


def server_tools(tmp_path: Path, **bodies: str) -> str:
    """The sshd line that puts first on the server's PATH tools that run their shell text in
    ``bodies`` in place of the real ones (``$REAL`` is the real one)."""
    scripts = {
        tool: f"#!/bin/sh\nREAL={shutil.which(tool)}\n{body}\n" for tool, body in bodies.items()
    }
    return server_path(tmp_path / "odd-bin", **scripts)


# cp and mv as on macOS: no hard links, no -T; a rename per object.
NO_LINKS = {
    "cp": 'case "$1" in *l*) exit 1;; esac; exec "$REAL" "$@"',
    "mv": 'case "$1" in -T) exit 1;; esac; exec "$REAL" "$@"',
}


@pytest.mark.parametrize(
    "server",
    [
        "no find, cp cannot link",
        "no find, a symlink on the way",
        "an ls that fails",
        "no sort, cp cannot link",
    ],
)
def test_a_server_whose_find_ls_or_sort_fails_never_says_it_placed_what_it_did_not(
    home: Path, tmp_path: Path, sshd: SshServer, server: str
) -> None:
    """A server without findutils (a minimal image), or whose ls or sort fails. The placing
    script took its folders from what find, ls and sort printed, never looking at how they
    ended: the symlink check checked nothing, nothing was placed, and the script said it
    placed all. The push reported every object sent; the remote had none of them."""
    trust_sshd(home, sshd)
    cache, store, outside = tmp_path / "cache", tmp_path / "remote", tmp_path / "outside"
    files = many_files(cache, 20)
    outside.mkdir()
    tools = {"find": 'echo "find: not found" >&2; exit 127'}
    if "no sort" in server:
        tools = {"sort": 'echo "sort: not found" >&2; exit 127', **NO_LINKS}
    if "cp cannot link" in server:
        tools.update(NO_LINKS)
        pushed_store(tmp_path, cache, files[:5])  # its folders are there: a rename per object
    elif server == "no find, a symlink on the way":
        store.mkdir()
        (store / "files").symlink_to(outside)  # another user's, to where they want objects
    else:
        tools = {"ls": "exit 2"}  # a first push: a rename of the whole top folder
    with running_sshd(tmp_path / "odd-sshd", server_tools(tmp_path, **tools)) as odd:
        trust_sshd(home, odd)
        remote = open_ssh(store)
        try:
            pushed: TransferSummary | RemoteError = Transfer(remote, cache, progress=False).push(
                files
            )
        except RemoteError as exc:
            pushed = exc
        finally:
            remote.close()
    assert list(outside.iterdir()) == []
    if "symlink" in server:
        assert isinstance(pushed, RemoteError) and "symlink, not a folder" in str(pushed), pushed
        return
    assert not isinstance(pushed, RemoteError), pushed
    assert (pushed.transferred, pushed.failed) == (15 if "cp" in server else 20, ())
    assert all(
        (store / object_key(oid)).read_bytes() == object_path(cache, oid).read_bytes()
        for oid in files
    )


SHARED_GROUP = 4242  # a group of the server's users that the remote belongs to
# cp as NO_LINKS's, but the first time it runs (the script has checked its folders by then),
# another member of the group acts: adds a folder to the push's staging folder and puts a
# symlink of that name in the remote's root, to where that member may not write.
ANOTHER_MEMBER = """if [ ! -e {mark} ]; then
  : >{mark}
  setpriv --reuid=65534 --regid={group} --clear-groups /bin/sh -c \\
    'mkdir "$1/evil" && echo planted >"$1/evil/x"; ln -s "$2" evil' - "${{3%/*}}" {target}
fi
case "$1" in *l*) exit 1;; esac; exec "$REAL" "$@"
"""


def test_another_member_of_a_shared_remotes_group_cannot_have_a_push_place_their_files(
    home: Path, tmp_path: Path, sshd: SshServer
) -> None:
    """A remote shared by a group: its root setgid and group-writable, its users' umask 002.
    The staging folder took that umask, so every member of the group could write in it; and
    as the script takes what it places from what is there, not from the keys, a folder added
    after the check, with a symlink of its name in the root, had the pushing user move the
    member's files through it, wherever it led (here on a server whose cp cannot link)."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv, to act as another user")
    trust_sshd(home, sshd)
    cache, target = tmp_path / "cache", tmp_path / "pushing-users-own"
    files = many_files(cache, 20)
    target.mkdir()
    shared = public_dir("repro-shared-")
    try:
        store = shared / "remote"
        store.mkdir()
        os.chown(store, 0, SHARED_GROUP)
        store.chmod(0o2775)
        member = ANOTHER_MEMBER.format(mark=tmp_path / "acted", group=SHARED_GROUP, target=target)
        # The users' umask 002 (pam_umask's usergroups, a profile's): sshd's sessions start
        # with its own, 022, so the shell that runs the script sets it.
        umask = 'umask 002; exec "$REAL" "$@"'
        setenv = server_tools(tmp_path, cp=member, mv=NO_LINKS["mv"], sh=umask)
        with running_sshd(tmp_path / "shared-sshd", setenv) as odd:
            trust_sshd(home, odd)
            remote = open_ssh(store)
            try:
                pushed = Transfer(remote, cache, progress=False).push(files)
            finally:
                remote.close()
        assert (tmp_path / "acted").exists()  # the other member did act
        assert list(target.iterdir()) == []
        assert (pushed.transferred, pushed.failed) == (20, ())
        assert (store / "files").stat().st_gid == SHARED_GROUP  # still the group's
    finally:
        with suppress(FileNotFoundError):
            (shared / "remote" / "evil").unlink()
        remove_public_dir(shared)
