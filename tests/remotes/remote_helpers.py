"""Small helpers for the remote tests: a local cache filled with objects, a call-counting
remote, a backend with raw access to its storage, folders an ordinary user can reach."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from helpers import Project, make_tree
from remotes.remote_servers import SSH_ALIAS, SshServer, trust_sshd

from repro.objects.ids import object_path
from repro.remotes import open_remote
from repro.remotes.base import Remote


def add_file(cache_dir: Path, content: bytes) -> str:
    """Store ``content`` in the cache as a read-only object; return its id."""
    object_id = hashlib.md5(content).hexdigest()
    path = object_path(cache_dir, object_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(content)
        os.chmod(path, 0o444)
    return object_id


def add_directory(cache_dir: Path, files: Mapping[str, bytes]) -> str:
    """Store the files and their manifest (the spec's format); return the manifest's id."""
    entries = sorted(
        ({"md5": add_file(cache_dir, data), "relpath": relpath} for relpath, data in files.items()),
        key=lambda entry: entry["relpath"],
    )
    manifest = json.dumps(entries, sort_keys=True).encode()
    object_id = hashlib.md5(manifest).hexdigest() + ".dir"
    path = object_path(cache_dir, object_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(manifest)
    return object_id


def many_files(cache_dir: Path, count: int, tag: str = "") -> list[str]:
    return [add_file(cache_dir, f"object {tag}{i}\n".encode()) for i in range(count)]


def files_under(root: Path) -> list[Path]:
    """Every file below ``root``. Read while a transfer runs: a folder it renames or removes
    meanwhile (a staging folder) is passed over, where ``rglob`` would raise."""
    return sorted(Path(folder, name) for folder, _subs, names in os.walk(root) for name in names)


def cached_files(cache_dir: Path) -> list[Path]:
    """Every file under the cache, temp files included."""
    return files_under(cache_dir)


class CountingRemote:
    """Wraps a remote and counts calls (and keys asked about) per method."""

    forkable = False  # the counts live in this process: no forked workers

    def __init__(self, inner: Remote) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: Counter[str] = Counter()
        self.keys_asked = 0
        self.put_order: list[str] = []

    def exists(self, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)
        self.calls["exists"] += 1
        self.keys_asked += len(wanted)
        return self.inner.exists(wanted)

    def list(self, prefix: str) -> Iterator[str]:
        self.calls["list"] += 1
        return self.inner.list(prefix)

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        self.calls["list_sizes"] += 1
        return self.inner.list_sizes(prefix)

    def put(self, source: Path, key: str) -> None:
        self.calls["put"] += 1
        self.inner.put(source, key)
        self.put_order.append(key)

    def get(self, key: str, dest: str | os.PathLike[str]) -> str:
        self.calls["get"] += 1
        return self.inner.get(key, dest)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Backend:
    """A remote under test, plus raw access to its storage that bypasses the backend."""

    name: str
    url: str
    options: dict[str, str]
    write_raw: Callable[[str, bytes], None]  # key -> bytes, e.g. to corrupt an object
    stored_names: Callable[[], list[str]]  # every stored name, temp files included
    remote: Remote = field(init=False)

    def __post_init__(self) -> None:
        self.remote = open_remote(self.url, self.options)


def folder_access(root: Path) -> tuple[Callable[[str, bytes], None], Callable[[], list[str]]]:
    def write_raw(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def stored_names() -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    return write_raw, stored_names


def s3_access(
    endpoint: str, bucket: str, prefix: str
) -> tuple[Callable[[str, bytes], None], Callable[[], list[str]]]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)

    def write_raw(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=prefix + key, Body=data)

    def stored_names() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    return write_raw, stored_names


# An ordinary user who owns nothing here (the tests run as root, whom no mode stops).
NOBODY = 65534


def public_dir(prefix: str) -> Path:
    """A new folder in /tmp that every user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def remove_public_dir(path: Path) -> None:
    for folder in [path, *path.rglob("*")]:
        if folder.is_dir() and not folder.is_symlink():
            folder.chmod(0o755)  # a test may have left a folder unwritable, even for rm
    shutil.rmtree(path)


def chown_tree(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.lchown(path, uid, uid)


def start_child(
    home: Path, work: Callable[[], object], uid: int | None = NOBODY, umask: int | None = None
) -> int:
    """``work`` in a forked child with ``home`` as its HOME, running as ``uid`` (None: as we
    are) under ``umask`` if given (the Python install lives under /root, which nobody cannot
    enter: a fork, with everything imported); its pid. The child exits 0 once ``work``
    returns, 3 if it raised (printing why)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.environ["HOME"] = str(home)
            if umask is not None:
                os.umask(umask)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def as_nobody(home: Path, work: Callable[[], object]) -> int:
    """``work`` run by ``start_child`` as nobody; its wait status."""
    return os.waitpid(start_child(home, work), 0)[1]


def server_path(folder: Path, **scripts: str) -> str:
    """The sshd line that puts ``folder``, holding each of ``scripts`` (name: its text) as an
    executable, first on the PATH of every session: the server's tools replaced by ours."""
    folder.mkdir()
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return f"SetEnv PATH={folder}:/usr/bin:/bin\n"


def nobody_ssh_home(home: Path, server: SshServer, folder: Path) -> Path:
    """``folder``/home: a copy of ``home``'s ~/.ssh (which names ``server``) with a copy of
    its key that nobody may read, once the caller chowns ``folder`` to nobody."""
    nobody_home = folder / "home"
    shutil.copytree(home / ".ssh", nobody_home / ".ssh")
    key = nobody_home / ".ssh" / "key"
    shutil.copy(server.user_key, key)
    config = nobody_home / ".ssh" / "config"
    config.write_text(config.read_text().replace(str(server.user_key), str(key)))
    return nobody_home


def objects_in(remote: Path) -> int:
    """Objects under their final name (temp names start with a dot)."""
    return sum(1 for p in files_under(remote) if not p.name.startswith("."))


def start_push(project: Project, begun: Callable[[], bool]) -> subprocess.Popen[str]:
    """``repro push`` in its own process, once ``begun`` says it has begun to upload."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro", "push"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not begun():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the push uploaded nothing in 60 s"
        time.sleep(0.01)
    return proc


def ssh_project(project: Project, home: Path, server: SshServer, remote: Path, files: int) -> None:
    """A project tracking ``files`` files (and their manifest), whose default remote is
    ``remote`` on ``server``."""
    trust_sshd(home, server)
    make_tree(project.root / "data", files, folders=10, size=2048, seed=21)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", f"ssh://{SSH_ALIAS}{remote}")
