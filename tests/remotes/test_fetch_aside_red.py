"""Attacks on a fetch that builds the cache folders it lacks aside (``Transfer._fetch_many``):
Ctrl-C while an object is checked, a folder's name taken meanwhile by something that is no
folder, and a server whose tar hands over an object twice. No object may take its name unless
its bytes hash to it, and nothing the fetch began may be left behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import Project, cli
from remotes.remote_helpers import (
    NOBODY,
    as_nobody,
    cached_files,
    chown_tree,
    many_files,
    nobody_ssh_home,
    public_dir,
    remove_public_dir,
    server_path,
)
from remotes.remote_servers import SSH_ALIAS, SshServer, running_sshd, trust_sshd
from remotes.test_remote_ssh_bulk import fetch_watching, pushed_store, same_objects

from repro.objects import transfer
from repro.objects.ids import content_md5, object_key, object_path
from repro.objects.transfer import TransferSummary
from repro.remotes.base import Remote


def _leftovers(cache: Path) -> list[str]:
    """Stagings and temp files: what a fetch began and did not finish."""
    return [
        str(path)
        for path in [*cache.iterdir(), *cached_files(cache)]
        if path.name.startswith(".repro")
    ]


def _corrupt(store: Path, object_id: str) -> None:
    stored = store / object_key(object_id)
    stored.chmod(0o644)
    stored.write_bytes(b"rotten bytes on the remote")


@pytest.mark.parametrize("folder_exists", [False, True])
def test_ctrl_c_while_a_corrupt_object_is_checked_never_lets_it_take_its_name(
    sshd: SshServer,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    folder_exists: bool,
) -> None:
    """The remote holds a rotten copy of one object. Ctrl-C arrives while the fetch checks it:
    the rotten bytes must not reach the cache under the object's name (its folder built aside
    and renamed in), nor stay behind under a temp name (its folder already there)."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 20)
    store = pushed_store(tmp_path, cache, files)
    rotten = files[7]
    _corrupt(store, rotten)
    if folder_exists:
        object_path(other, rotten).parent.mkdir(parents=True)
    checked = transfer._verified

    def verified(remote: Remote, object_id: str, md5: str, path: str | Path) -> list[str]:
        if object_id == rotten:
            assert md5 != content_md5(rotten)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, at this very moment
        return checked(remote, object_id, md5, path)

    monkeypatch.setattr(transfer, "_verified", verified)
    with pytest.raises(KeyboardInterrupt):
        fetch_watching(store, other, files)
    assert not object_path(other, rotten).exists()
    assert _leftovers(other) == []
    kept = [oid for oid in files if object_path(other, oid).exists()]
    assert same_objects(cache, other, kept)


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_cache_folder_made_meanwhile_as_no_folder_leaves_no_staging_behind(
    sshd: SshServer, home: Path, tmp_path: Path, kind: str
) -> None:
    """Another process makes a file, or a symlink, at the name of a cache folder this fetch is
    building aside. That folder cannot go in, and the fetch may fail, but it must leave no
    staging behind, and the folders it built that can go in do."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 200)
    store = pushed_store(tmp_path, cache, files)
    taken = object_path(other, files[0]).parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def another_process(count: int) -> None:
        if count == 1:
            if kind == "file":
                taken.write_bytes(b"not a folder")
            else:
                taken.symlink_to(elsewhere)

    with pytest.raises(OSError):
        fetch_watching(store, other, files, another_process)
    assert _leftovers(other) == []
    assert list(elsewhere.iterdir()) == []
    kept = [oid for oid in files if object_path(other, oid).parent != taken]
    assert all(object_path(other, oid).exists() for oid in kept)
    assert same_objects(cache, other, kept)


TWICE_TAR = """#!{python}
import sys, tarfile
forged_first = {forged_first!r}
names = [a for a in sys.argv[1:] if a.startswith("files/")]  # from xargs
out = sys.stdout.buffer
def member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    out.write(info.tobuf(tarfile.GNU_FORMAT))
    out.write(data + bytes(-len(data) % 512))
for name in names:
    real = open(name, "rb").read()
    for data in ([b"forged", real] if forged_first else [real, b"forged"]):
        member(name, data)
out.write(bytes(1024))
out.flush()
"""


@pytest.mark.parametrize("forged_first", [False, True])
def test_an_object_handed_over_twice_is_taken_once_and_only_if_sound(
    home: Path, tmp_path: Path, sshd: SshServer, forged_first: bool
) -> None:
    """The server's tar sends every object twice, once with forged bytes. Whichever comes
    first, no forged byte reaches the cache (root ignores the 0444 of a verified object), and
    every object ends up sound."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 30)
    store = pushed_store(tmp_path, cache, files)
    script = TWICE_TAR.format(python=sys.executable, forged_first=forged_first)
    setenv = server_path(tmp_path / "fake-bin", tar=script)
    with running_sshd(tmp_path / "twice-sshd", setenv) as server:
        trust_sshd(home, server)
        fetched = fetch_watching(store, other, files)
    if forged_first:
        assert {f.object_id for f in fetched.failed} == set(files)
        assert not [oid for oid in files if object_path(other, oid).exists()]
    else:
        assert (fetched.transferred, fetched.failed) == (30, ())
    kept = [oid for oid in files if object_path(other, oid).exists()]
    assert same_objects(cache, other, kept)
    assert _leftovers(other) == []


def test_two_fetches_at_once_into_one_cache_build_the_same_folders_and_both_succeed(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """Both find every folder absent and build it aside: one renames each in, the other moves
    its objects in one by one. Every object ends up sound, and no staging is left."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 400)
    store = pushed_store(tmp_path, cache, files)
    summaries: list[TransferSummary] = []
    errors: list[BaseException] = []
    both_streaming = threading.Barrier(2, timeout=30)

    def fetch() -> None:
        def meet(count: int) -> None:
            if count == 1:
                both_streaming.wait()  # each holds its stagings when the other starts

        try:
            summaries.append(fetch_watching(store, other, files, meet))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(summaries) == 2
    assert all(summary.ok for summary in summaries)
    assert same_objects(cache, other, files)
    assert _leftovers(other) == []
    assert len(cached_files(other)) == len(files)


def test_a_cache_whose_objects_live_on_another_file_system_fetches_object_by_object(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """``files/md5`` is a symlink to tmpfs: no folder built in the cache's root can be renamed
    there, so none is built; the objects arrive whole, and nothing is left in either place."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no /dev/shm on a file system of its own")
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 100)
    store = pushed_store(tmp_path, cache, files)
    elsewhere = Path(tempfile.mkdtemp(dir=shm, prefix="repro-red-"))
    try:
        (other / "files").mkdir(parents=True)
        (other / "files" / "md5").symlink_to(elsewhere)
        fetched = fetch_watching(store, other, files)
        assert (fetched.transferred, fetched.failed) == (100, ())
        assert same_objects(cache, other, files)
        assert _leftovers(other) == []
        assert not [p for p in elsewhere.rglob("*") if p.name.startswith(".repro")]
    finally:
        shutil.rmtree(elsewhere)


STALLING_TAR = """#!{python}
import os, subprocess, sys, time
with open({pids!r}, "a") as pids:  # the test ends those that stall
    pids.write(f"{{os.getpid()}}\\n")
names = [a for a in sys.argv[1:] if a.startswith("files/")]
real = subprocess.Popen(["{tar}", "-cf", "-", *names], stdout=subprocess.PIPE)
out = sys.stdout.buffer
blocks = 0
while block := real.stdout.read(512):
    out.write(block)
    blocks += 1
    if len(names) > 1 and blocks == {stall_after}:
        out.flush()
        time.sleep(120)  # a stream that stalls midway: the pull is killed meanwhile
out.flush()
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_pull_stopped_mid_stream_names_no_unchecked_object_and_leaves_nothing_for_long(
    project: Project, sshd: SshServer, home: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """A real ``repro pull`` of a directory gets SIGKILL or Ctrl-C while its stream stalls
    halfway. Killed, its stagings stay (nothing could remove them) and the next pull removes
    them; stopped, it moves in what it verified and leaves nothing. Either way no object is
    under its name unchecked, and the next pull fetches everything."""
    trust_sshd(home, sshd)
    store = tmp_path / "store"
    data = project.root / "data"
    data.mkdir()
    for i in range(300):
        (data / f"f{i}.txt").write_bytes(f"object {i}\n".encode() * 20)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", f"ssh://{SSH_ALIAS}{store}")
    project.ok("push")
    cache = project.root / ".repro" / "cache"
    shutil.rmtree(cache)
    shutil.rmtree(data)
    fake = tmp_path / "fake-bin"
    # 300 objects of 2 blocks each: about half of them before the stall.
    pids = fake / "pids"
    script = STALLING_TAR.format(
        python=sys.executable, tar=shutil.which("tar"), stall_after=300, pids=str(pids)
    )
    with running_sshd(tmp_path / "stall-sshd", server_path(fake, tar=script)) as server:
        trust_sshd(home, server)
        proc = subprocess.Popen(
            [sys.executable, "-m", "repro", "pull"],
            cwd=project.root,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while sum(1 for p in cached_files(cache) if ".repro-tmp-folder-" in str(p)) < 100:
                assert proc.poll() is None and time.monotonic() < deadline, "no stream"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, sig)
            _, err = proc.communicate(timeout=30)
            for pid in pids.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)  # its ssh session, and client, end too
    stagings = [p for p in cache.iterdir() if p.name.startswith(".repro-tmp-folder-")]
    if sig == signal.SIGKILL:
        assert stagings
    else:
        assert proc.returncode == 130 and err.strip() == "interrupted", err
        assert stagings == []
        assert not [p for p in cached_files(cache) if p.name.startswith(".repro-tmp")]
        assert len(cached_files(cache / "files" / "md5")) >= 100  # what it verified went in
    objects = cache / "files" / "md5"
    for path in cached_files(objects):
        if not path.name.startswith("."):
            assert content_md5_of(path) == path.parent.name + path.name
    trust_sshd(home, sshd)
    assert cli(project.root, "pull").code == 0
    assert not [p for p in cache.iterdir() if p.name.startswith(".repro")]
    assert not [p for p in cached_files(cache) if p.name.startswith(".repro-tmp")]
    assert (data / "f7.txt").read_bytes() == b"object 7\n" * 20


def content_md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_second_ctrl_c_while_the_stagings_go_in_leaves_none_behind(
    sshd: SshServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user presses Ctrl-C again while a stopped fetch moves its verified folders in:
    each staging still goes in (or is removed), none is left in the cache's root."""
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 200)
    store = pushed_store(tmp_path, cache, files)
    move_in = transfer._move_in
    calls: list[str] = []

    def moved_in_then_ctrl_c(staging: str, folder: str) -> None:
        move_in(staging, folder)
        calls.append(folder)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(transfer, "_move_in", moved_in_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fetch_watching(store, other, files)
    assert _leftovers(other) == []
    assert same_objects(cache, other, files)


def test_as_an_unprivileged_user_a_killed_fetchs_stagings_go_at_the_next_fetch(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """As nobody, whom file modes bind: a fetch SIGKILLed mid-stream leaves its staging, its
    objects read-only; the next fetch (also nobody's) removes it and fetches all, sound."""
    import paramiko  # noqa: F401 - imported before the fork: nobody cannot read /root

    trust_sshd(home, sshd)
    cache = tmp_path / "cache"
    files = many_files(cache, 300)
    store = pushed_store(tmp_path, cache, files)
    public = public_dir("repro-red-")
    try:
        nobody_home, other = nobody_ssh_home(home, sshd, public), public / "cache"
        other.mkdir()
        chown_tree(public, NOBODY)

        def killed_at(count: int) -> None:
            if count == 150:
                os.kill(os.getpid(), signal.SIGKILL)

        status = as_nobody(nobody_home, lambda: fetch_watching(store, other, files, killed_at))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        stagings = [p for p in other.iterdir() if p.name.startswith(".repro-tmp-folder-")]
        assert stagings and all(p.stat().st_uid == NOBODY for p in stagings)
        left = [p for p in cached_files(other) if ".repro-tmp-folder-" in str(p)]
        # All checked and read-only but the one handed over as the kill came (never checked).
        assert len(left) >= 149
        assert sum(oct(p.stat().st_mode)[-3:] != "444" for p in left) <= 1

        def fetch_all() -> None:
            assert fetch_watching(store, other, files).ok

        assert as_nobody(nobody_home, fetch_all) == 0
        assert _leftovers(other) == []
        assert same_objects(cache, other, files)
    finally:
        remove_public_dir(public)
