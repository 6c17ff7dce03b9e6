"""A hostile remote: whoever controls it may plant a FIFO, a socket, a device or a symlink
where an object or a folder of the layout belongs, store bytes that lie about their size, or a
manifest that leads out of the project.

repro never hangs on such an entry and never opens one for reading: it refuses it with one
line (exit 1), which stops the command, and lets nothing unverified into the cache. Listings
do not count it as an object, so a push replaces it. A symlinked folder is never written
through (nor, on a folder remote, read through). Each CLI test runs repro with a deadline: a
hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import Project, Result, cli, make_tree, run_as
from remotes.remote_helpers import NOBODY, Backend, add_file, chown_tree, public_dir
from remotes.remote_helpers import remove_public_dir as remove_public
from remotes.remote_servers import SSH_ALIAS, SshServer, trust_sshd

from repro.errors import CorruptObjectError, RemoteError
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import Transfer, verify_remote
from repro.remotes.local import VET_AFTER, LocalRemote

KINDS = ["fifo", "socket", "symlink", "character device"]
DEADLINE = 60  # seconds: far above what any of these commands takes


# -- helpers -----------------------------------------------------------------------------------
def plant(path: Path, kind: str, target: Path | None = None) -> None:
    """Replace whatever is at ``path`` by an entry of ``kind`` (a symlink leads to ``target``)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        os.mknod(path, stat.S_IFSOCK | 0o644)
    elif kind == "character device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # a /dev/null
        except PermissionError:
            pytest.skip("no CAP_MKNOD here to make a device")
    else:
        assert target is not None
        path.symlink_to(target)


@contextmanager
def no_hang(seconds: float = 10) -> Iterator[None]:
    """Fail, rather than wait forever, if the body blocks (on a FIFO, say)."""

    def hung(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(result: Result) -> str:
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def objects_with_fanout(count: int, fanout: str = "ab") -> list[bytes]:
    """Contents whose objects all fall in the fan-out folder ``fanout``."""
    found: list[bytes] = []
    number = 0
    while len(found) < count:
        content = f"object {number}\n".encode()
        if hashlib.md5(content).hexdigest().startswith(fanout):
            found.append(content)
        number += 1
    return found


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def cache_entries(project: Project) -> list[str]:
    cache = project.root / ".repro" / "cache"
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if not p.is_dir())


def remote_root(backend: Backend) -> Path:
    return Path(urlsplit(backend.url).path if "://" in backend.url else backend.url)


# -- the folder remote, one object at a time -----------------------------------------------------
@pytest.mark.parametrize("listed_first", [False, True], ids=["vetted-alone", "vetted-by-listing"])
@pytest.mark.parametrize("kind", KINDS)
def test_folder_get_refuses_what_is_no_regular_file(
    tmp_path: Path, kind: str, listed_first: bool
) -> None:
    """The first objects of a folder are vetted through a handle that opens nothing; later
    ones by the folder's listing. Either way the planted entry is refused, unopened."""
    root = tmp_path / "remote"
    contents = objects_with_fanout(VET_AFTER + 2)
    keys = [object_key(md5(content)) for content in contents]
    for key, content in zip(keys, contents, strict=True):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(content)
    outside = tmp_path / "outside"
    outside.write_bytes(contents[-1])  # the right bytes: only refusing the symlink stops it
    plant(root / keys[-1], kind, outside)
    remote = LocalRemote(root)
    if listed_first:
        for key in keys[:-1]:
            remote.get(key, tmp_path / "copy")

    dest = tmp_path / "dest"
    with no_hang(), pytest.raises(RemoteError) as caught:
        remote.get(keys[-1], dest)

    message = str(caught.value)
    assert f"object {root / keys[-1]} is a {kind}, not a regular file" in message
    assert "remove it there" in message and "\n" not in message
    assert not dest.exists()
    remote.close()


def test_folder_get_refuses_to_read_through_a_symlinked_folder(tmp_path: Path) -> None:
    content = b"the real bytes"
    key = object_key(md5(content))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / key.rpartition("/")[2]).parent.mkdir(parents=True)
    (elsewhere / key.rpartition("/")[2]).write_bytes(content)  # it would verify
    root = tmp_path / "remote"
    plant(root / key.rpartition("/")[0], "symlink", elsewhere)
    remote = LocalRemote(root)
    with pytest.raises(RemoteError, match="is a symlink, not a folder"):
        remote.get(key, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# -- listings, on the folder and ssh remotes ----------------------------------------------------
@pytest.mark.parametrize("many", [False, True], ids=["asked-one-by-one", "listed"])
def test_non_regular_entries_are_no_objects(backend: Backend, tmp_path: Path, many: bool) -> None:
    if backend.name == "s3":
        pytest.skip("S3 has no such entries")
    root = remote_root(backend)
    real = add_file(tmp_path / "cache", b"a real object")
    Transfer(backend.remote, tmp_path / "cache", progress=False).push([real])
    planted = [object_key(f"{i:x}" * 32) for i in range(1, 5)]
    (tmp_path / "outside").write_bytes(b"x")
    for key, kind in zip(planted, KINDS, strict=True):
        plant(root / key, kind, tmp_path / "outside")
    plant(root / "files" / "md5" / "ee", "symlink", root / "files" / "md5" / "11")
    others = [object_key(f"{i:032x}") for i in range(100)] if many else []

    with no_hang():
        assert backend.remote.exists([object_key(real), *planted, *others]) == {object_key(real)}
        assert list(backend.remote.list("files/md5/")) == [object_key(real)]
        assert [k for k, _ in backend.remote.list_sizes("files/")] == [object_key(real)]
        assert verify_remote(backend.remote, progress=False) == []


def test_a_tree_nested_deeper_than_any_key_is_no_internal_error(
    backend: Backend, tmp_path: Path
) -> None:
    """A thousand folders inside one another under files/md5: walked to the bottom, each a
    level of recursion, the listing overflowed Python's stack (an internal error)."""
    if backend.name == "s3":
        pytest.skip("S3 listings are flat")
    root = remote_root(backend)
    real = add_file(tmp_path / "cache", b"a real object")
    Transfer(backend.remote, tmp_path / "cache", progress=False).push([real])
    depth = sys.getrecursionlimit() + 100
    folder = os.open(root / "files" / "md5", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=folder)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
            os.close(folder)
            folder = inner
        os.close(os.open("deep", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder))
    finally:
        os.close(folder)
    many = [object_key(f"{i:032x}") for i in range(100)]  # listed, not asked one by one

    try:
        with no_hang():
            assert backend.remote.exists([object_key(real), *many]) == {object_key(real)}
            assert list(backend.remote.list("files/md5/")) == [object_key(real)]
            assert verify_remote(backend.remote, progress=False) == []
    finally:
        # shutil.rmtree recurses too: pytest could not remove the tree. Innermost first.
        objects = root / "files" / "md5"
        (objects / ("d/" * depth) / "deep").unlink()
        for level in range(depth, 0, -1):
            os.rmdir(objects / ("d/" * level))


@pytest.mark.parametrize("level", ["files", "files/md5", "files/md5/FAN"])
def test_a_symlinked_folder_is_not_written_through(
    backend: Backend, tmp_path: Path, level: str
) -> None:
    if backend.name == "s3":
        pytest.skip("S3 has no folders")
    object_id = add_file(tmp_path / "cache", b"pushed object")
    level = level.replace("FAN", object_id[:2])
    victim = tmp_path / "victim"  # stands for /etc
    victim.mkdir()
    plant(remote_root(backend) / level, "symlink", victim)

    with pytest.raises(RemoteError) as caught:
        backend.remote.put(object_path(tmp_path / "cache", object_id), object_key(object_id))

    assert f"{remote_root(backend) / level} " in str(caught.value)
    assert "is a symlink, not a folder" in str(caught.value)
    assert list(victim.rglob("*")) == []


# -- through the CLI -----------------------------------------------------------------------------
def pushed_project(project: Project, remote_url: str) -> dict[str, bytes]:
    """Data pushed to the remote, then gone from the cache and workspace, as in a fresh
    clone. Returns each object's key and bytes."""
    make_tree(project.root / "data", 12, folders=2, size=200, seed=3)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", remote_url)
    project.commit("data")
    project.ok("push")
    cache = project.root / ".repro" / "cache"
    stored = {
        str(p.relative_to(cache)): p.read_bytes()
        for p in cache.rglob("*")
        if p.is_file() and not p.name.endswith(".dir")
    }
    shutil.rmtree(cache)
    shutil.rmtree(project.root / "data")
    return stored


@pytest.mark.parametrize("kind", KINDS)
def test_pull_refuses_a_planted_object_in_one_line(
    project: Project, tmp_path: Path, kind: str
) -> None:
    remote = tmp_path / "store"
    stored = pushed_project(project, str(remote))
    key = sorted(stored)[5]
    (tmp_path / "outside").write_bytes(stored[key])
    plant(remote / key, kind, tmp_path / "outside")

    line = one_line(cli(project.root, "pull", timeout=DEADLINE))

    assert f"object {remote / key} is a {kind}, not a regular file" in line
    assert key.replace("files/md5/", "").replace("/", "") not in "".join(cache_entries(project))
    assert not any(".repro-tmp" in name for name in cache_entries(project))
    assert cli(project.root, "fsck").code == 0
    (remote / key).unlink()  # the fix: the good object back in place
    (remote / key).write_bytes(stored[key])
    done = cli(project.root, "pull", timeout=DEADLINE)
    assert done.code == 0, done.err
    assert len(list((project.root / "data").rglob("f*"))) == 12


def test_pull_as_an_ordinary_user_refuses_a_fifo(public_project: Project) -> None:
    """As nobody, whom file modes bind (root's pull is tested above)."""
    store = public_dir("repro-hostile-")
    try:
        (store / "home").mkdir()
        stored = pushed_project(public_project, str(store / "remote"))
        key = sorted(stored)[0]
        plant(store / "remote" / key, "fifo")
        chown_tree(store, NOBODY)
        chown_tree(public_project.root, NOBODY)

        line = one_line(run_as_nobody(public_project.root, store / "home", "pull"))

        assert f"object {store / 'remote' / key} is a fifo, not a regular file" in line
        assert key.rpartition("/")[2] not in "".join(cache_entries(public_project))
    finally:
        remove_public(store)


def run_as_nobody(cwd: Path, home: Path, *args: str) -> Result:
    """The CLI as nobody, killed by SIGALRM if it outlives the deadline."""
    return run_as(NOBODY, cwd, home, *args, deadline=DEADLINE)


def test_push_replaces_a_fifo_planted_at_an_object_name(project: Project, tmp_path: Path) -> None:
    remote = tmp_path / "store"
    make_tree(project.root / "data", 12, folders=2, size=200, seed=3)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", str(remote))
    project.ok("push")
    victim = next(p for p in sorted((remote / "files").rglob("*")) if p.is_file())
    content = victim.read_bytes()
    plant(victim, "fifo")

    assert cli(project.root, "status", "-c", timeout=DEADLINE).code == 1  # not on the remote
    pushed = cli(project.root, "push", timeout=DEADLINE)

    assert pushed.code == 0, pushed.err
    assert "Pushed 1 object" in pushed.out
    assert victim.is_file() and victim.read_bytes() == content
    assert cli(project.root, "fsck", "-r", "store", timeout=DEADLINE).code == 0


@pytest.mark.parametrize("level", ["files", "files/md5", "files/md5/FAN"])
def test_push_refuses_a_symlinked_folder_in_one_line(
    project: Project, tmp_path: Path, level: str
) -> None:
    remote = tmp_path / "store"
    level, line, victim = _push_through_a_symlinked_folder(
        project,
        tmp_path,
        300,
        str(remote),
        remote,
        level,  # 300 files: push uses put_group
    )
    assert f"{remote / level} is a symlink, not a folder" in line
    assert list(victim.rglob("*")) == []


def _push_through_a_symlinked_folder(
    project: Project, tmp_path: Path, files: int, url: str, remote: Path, level: str
) -> tuple[str, str, Path]:
    """Data added, a remote at ``url`` whose folder ``level`` (FAN: the first fan-out folder
    of the cache) is a symlink to an empty folder; (that level, push's one line, the folder)."""
    make_tree(project.root / "data", files, folders=3, size=100, seed=4)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", url)
    fanout = sorted((project.root / ".repro" / "cache" / "files" / "md5").iterdir())[0].name
    level = level.replace("FAN", fanout)
    victim = tmp_path / "etc"
    victim.mkdir()
    plant(remote / level, "symlink", victim)
    return level, one_line(cli(project.root, "push", timeout=DEADLINE)), victim


# -- ssh -------------------------------------------------------------------------------------------
def ssh_project(project: Project, remote: Path) -> dict[str, bytes]:
    return pushed_project(project, f"ssh://{SSH_ALIAS}{remote}")


@pytest.mark.parametrize("kind", ["fifo", "socket", "symlink"])
def test_ssh_pull_refuses_a_planted_object_in_one_line(
    project: Project, tmp_path: Path, sshd: SshServer, home: Path, kind: str
) -> None:
    trust_sshd(home, sshd)
    remote = tmp_path / "ssh-store"
    stored = ssh_project(project, remote)
    key = sorted(stored)[3]
    (tmp_path / "outside").write_bytes(stored[key])
    plant(remote / key, kind, tmp_path / "outside")

    line = one_line(cli(project.root, "pull", timeout=DEADLINE))

    assert f"object {remote / key} on ssh://" in line
    assert f"is a {kind}, not a regular file" in line
    assert key.rpartition("/")[2] not in "".join(cache_entries(project))


def test_ssh_pull_as_nobody_refuses_a_fifo(
    project: Project,
    nobody_sshd: tuple[SshServer, Path],
) -> None:
    _, public = nobody_sshd
    remote = public / "remote"
    remote.mkdir()
    os.chown(remote, NOBODY, NOBODY)
    stored = ssh_project(project, remote)
    key = sorted(stored)[0]
    plant(remote / key, "fifo")
    os.lchown(remote / key, NOBODY, NOBODY)

    line = one_line(cli(project.root, "pull", timeout=DEADLINE))

    assert "is a fifo, not a regular file" in line


@pytest.mark.parametrize("level", ["files/md5", "files/md5/FAN"])
def test_ssh_push_refuses_a_symlinked_folder_in_one_line(
    project: Project, tmp_path: Path, sshd: SshServer, home: Path, level: str
) -> None:
    trust_sshd(home, sshd)
    remote = tmp_path / "ssh-store"
    level, line, victim = _push_through_a_symlinked_folder(
        project, tmp_path, 20, f"ssh://{SSH_ALIAS}{remote}", remote, level
    )
    assert f"{remote / level} on ssh://" in line and "is a symlink, not a folder" in line
    assert list(victim.rglob("*")) == []


# -- objects whose bytes lie, on every backend (S3 included) -------------------------------------
@pytest.mark.parametrize("planted", [b"", b"short", b"longer than the listed original " * 64])
def test_an_object_of_another_size_is_verified_and_refused(
    backend: Backend, tmp_path: Path, planted: bytes
) -> None:
    cache, other = tmp_path / "cache", tmp_path / "other"
    object_id = add_file(cache, b"the original object, 42 bytes long ......")
    Transfer(backend.remote, cache, progress=False).push([object_id])
    backend.write_raw(object_key(object_id), planted)

    summary = Transfer(backend.remote, other, progress=False).fetch([object_id])

    assert [f.object_id for f in summary.failed] == [object_id]
    assert isinstance(summary.failed[0].error, CorruptObjectError)
    assert not other.exists() or [p for p in other.rglob("*") if p.is_file()] == []
    problems = verify_remote(backend.remote, progress=False)
    assert len(problems) == 1 and object_id in problems[0]


def test_a_manifest_stored_as_a_file_object_stays_a_file(backend: Backend, tmp_path: Path) -> None:
    """Bytes shaped like a manifest under a file object's name are just a file: verified by
    their md5, and nothing they list is fetched."""
    cache, other = tmp_path / "cache", tmp_path / "other"
    listed = add_file(cache, b"listed")
    manifest = json.dumps([{"md5": listed, "relpath": "x"}]).encode()
    object_id = add_file(cache, manifest)
    Transfer(backend.remote, cache, progress=False).push([object_id, listed])

    summary = Transfer(backend.remote, other, progress=False).fetch([object_id])

    assert summary.transferred == 1 and not summary.failed
    assert object_path(other, object_id).read_bytes() == manifest
    assert not object_path(other, listed).exists()


def test_a_verified_dir_object_that_is_no_manifest_is_refused(
    backend: Backend, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    content = b"not json at all"
    object_id = md5(content) + ".dir"
    backend.write_raw(object_key(object_id), content)

    summary = Transfer(backend.remote, other, progress=False).fetch([object_id])

    assert [f.object_id for f in summary.failed] == [object_id]
    assert "\n" not in str(summary.failed[0].error)
    assert not other.exists() or [p for p in other.rglob("*") if p.is_file()] == []


# -- manifests that lead out of the project ------------------------------------------------------
HOSTILE_ENTRIES = {
    "dotdot": [("../../etc/x", b"owned")],
    "absolute": [("/tmp/repro-hostile-absolute", b"owned")],
    "duplicate": [("a", b"one"), ("a", b"two")],
    "file-and-folder": [("a", b"one"), ("a/b", b"two")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ENTRIES))
def test_pull_refuses_a_hostile_manifest_and_writes_nothing_outside(
    project: Project, tmp_path: Path, case: str
) -> None:
    make_tree(project.root / "data", 3, size=50, seed=9)
    project.ok("add", "data")
    remote = tmp_path / "store"
    project.ok("remote", "add", "-d", "store", str(remote))
    project.ok("push")
    project.commit("data")
    # The remote's owner crafts a manifest, and its files, that verify by their md5s, and a
    # stage file (a commit they got merged, say) that names it.
    hostile = tmp_path / "hostile-cache"
    entries = [
        {"md5": add_file(hostile, content), "relpath": relpath}
        for relpath, content in HOSTILE_ENTRIES[case]
    ]
    Transfer(LocalRemote(remote), hostile, progress=False).push([entry["md5"] for entry in entries])
    data = json.dumps(entries).encode()
    manifest_id = md5(data) + ".dir"
    (remote / object_key(manifest_id)).parent.mkdir(parents=True, exist_ok=True)
    (remote / object_key(manifest_id)).write_bytes(data)  # push would refuse to send it
    stage = project.root / "data.repro"
    old_id = next(line.split()[-1] for line in stage.read_text().splitlines() if ".dir" in line)
    stage.write_text(stage.read_text().replace(old_id, manifest_id))
    shutil.rmtree(project.root / ".repro" / "cache")
    shutil.rmtree(project.root / "data")
    before = sorted(str(p) for p in tmp_path.rglob("*") if "proj" not in p.parts)

    result = cli(project.root, "pull", timeout=DEADLINE)

    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    # One line refuses it (then the summary of the fetch): before any of its files is used.
    refusals = [line for line in result.err.splitlines() if manifest_id in line]
    assert len(refusals) == 1 and "bad entry" in refusals[0], result.err
    assert sorted(str(p) for p in tmp_path.rglob("*") if "proj" not in p.parts) == before
    assert not Path("/tmp/repro-hostile-absolute").exists()
    assert not (project.root / "data").exists()
    assert manifest_id.removesuffix(".dir") not in "".join(cache_entries(project))
