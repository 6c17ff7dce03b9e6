"""A remote that is a folder: another disk, a network mount, a docker volume.

Whoever can write the folder may plant anything in it. So the folders of the layout
(``files``, ``files/md5``, ``files/md5/ab``) are reached from the root by descriptors that
never follow a symlink (a symlinked fan-out folder would take pushed objects wherever it
leads), and an object is read only once it is known to be a regular file (reading a FIFO
blocks forever; opening a device may act). Anything else at an object's name is refused with
one line, which stops the command, and is never listed as an object.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit

from repro import host
from repro.errors import RemoteError
from repro.fsutil import (
    build_aside,
    copy_fd,
    copy_into,
    copy_new,
    is_temp,
    temp_name,
    write_all,
)
from repro.objects.digest import copy_md5
from repro.remotes import common

CHUNK = 1 << 20
# A folder of the layout, held without read access and never through a symlink.
_FOLDER = host.HANDLE_FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A handle on whatever stands at a name: opening it neither opens a device nor waits on a FIFO.
_HANDLE = host.HANDLE_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC
# An object its folder's listing showed as a regular file. O_NONBLOCK: if a FIFO replaced it
# since, the open still returns, and the fstat that always follows refuses it.
_OBJECT = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Objects read from a folder one by one (through a handle first, two more syscalls each)
# before its listing is taken to vet the rest: a few objects from a huge remote do not pay
# for listing their folders, many from one folder pay for one listing.
VET_AFTER = 8
# What a network filesystem (NFS, SMB) may report for a moment: a stale handle after the
# server restarted, a timeout, a busy resource. Python itself already retries EINTR.
# Anything else (permission denied, a full disk, a missing folder) fails at once.
TRANSIENT_ERRNOS = frozenset({errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN, errno.EINTR})
# Seconds to wait before each retry: four attempts in all, 3.5 s of waiting at most.
RETRY_DELAYS = (0.5, 1.0, 2.0)


def open_remote(url: str, options: Mapping[str, str]) -> LocalRemote:
    """Open a plain path or ``file://`` URL; a folder needs no options."""
    del options
    root = Path(unquote(urlsplit(url).path)) if "://" in url else Path(url)
    return LocalRemote(root.expanduser().absolute())


def _transient(exc: Exception) -> bool:
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry, as in some containers
        return f"uid {os.geteuid()}"


def _remote_error(action: str, path: Path, exc: OSError) -> RemoteError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _permission_error(action, path, exc)
    if exc.errno == errno.EROFS:
        hint = "it is on a read-only filesystem; remount it read-write or choose another remote"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space there, or choose another remote"
    elif exc.errno in TRANSIENT_ERRNOS:
        hint = (
            f"it still failed after {len(RETRY_DELAYS) + 1} attempts; check that the folder is "
            "mounted and reachable, then run the command again"
        )
    else:
        hint = "check that the folder is mounted and reachable"
    return RemoteError(f"cannot {action} {path}: {exc.strerror or exc}; {hint}")


def _permission_error(action: str, path: Path, exc: OSError) -> RemoteError:
    user = _user_name()
    if action in ("write", "delete"):
        # exc.filename is what the call touched (a folder being made, a temp file, the
        # object): the folder to fix is the one that holds it.
        folder = Path(exc.filename).parent if exc.filename else path.parent
        return RemoteError(
            f"cannot {action} in the remote folder {folder}: permission denied for user "
            f"{user}; give {user} write permission there (owner or mode), or choose another "
            "remote"
        )
    if exc.filename:
        path = Path(exc.filename)  # the file itself, or a folder on its way
    return RemoteError(
        f"cannot {action} {path} on the remote: permission denied for user {user}; give "
        f"{user} read permission on it and its folders (owner or mode), or choose another remote"
    )


def _copy_hashing(src: int, size: int, dest: str | os.PathLike[str]) -> str:
    """Copy the open object ``src`` of ``size`` bytes over ``dest`` (truncated first, so a
    retry starts afresh); the md5 of the bytes written, read once.

    A small file goes through one buffer, hashed on the way. A large one goes through two,
    one hashed while the other is written and the next read: md5 (the slower part, 1.4 s a
    GiB here) and the copy overlap on two cores. Measured on 1 GiB, best of four: 1.5 s,
    against 1.9 s for a kernel copy read back to hash it and for ``cp`` then ``md5sum``
    (buffers of 1 MiB beat 2 and 8 MiB: they stay in the CPU's caches between read, hash
    and write).
    """
    dest = os.fspath(dest)
    return copy_into(src, dest, os.O_TRUNC, copy_md5 if size <= CHUNK else _copy_md5_overlapped)


def _copy_md5_overlapped(src: int, dst: int) -> str:
    """``copy_md5`` with the hashing in a thread of its own (hashlib lets go of the GIL)."""
    digest = hashlib.md5()
    buffers = [bytearray(CHUNK), bytearray(CHUNK)]
    hashed: list[Future[None] | None] = [None, None]
    turn = 0
    with ThreadPoolExecutor(max_workers=1) as hasher:  # one thread: chunks hashed in order
        while True:
            previous = hashed[turn]
            if previous is not None:
                previous.result()  # this buffer's last chunk is hashed: it may be refilled
            count = os.readv(src, [buffers[turn]])
            if not count:
                break
            chunk = memoryview(buffers[turn])[:count]
            hashed[turn] = hasher.submit(digest.update, chunk)
            write_all(dst, chunk)
            turn ^= 1
    return digest.hexdigest()


class _Folder:
    """A folder of the remote held open, and what its listing says about its entries."""

    __slots__ = ("fd", "reads", "suspects")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reads = 0
        # Names the listing did not show as regular files; None until listed (or unlistable).
        self.suspects: frozenset[str] | None = None


class LocalRemote:
    """Objects are plain files under ``root``; uploads go to a temp name, then ``os.replace``."""

    forkable = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        # Folders held open, by key ("" for the root): one open per folder, not per object.
        # Keys name few folders (256 fan-out folders per prefix), so none is ever dropped.
        self._folders: dict[str, _Folder] = {}
        self._lock = threading.Lock()

    def _folder(self, folder: str, create: bool = False) -> _Folder:
        """The folder ``folder`` ("files/md5/ab"; "" for the root) held open. Raises
        FileNotFoundError when it is absent (unless ``create``), and refuses anything but a
        folder there."""
        held = self._folders.get(folder)
        if held is not None:
            return held
        with self._lock:
            return self._open_folder(folder, create)

    def _open_folder(self, folder: str, create: bool, wanted: str = "") -> _Folder:
        held = self._folders.get(folder)
        if held is not None:
            return held
        if not folder:
            fd = self._open_root(create)
        else:
            wanted = wanted or folder
            parent, _, name = folder.rpartition("/")
            parent_fd = self._open_folder(parent, create, wanted).fd
            fd = self._open_below(parent_fd, name, folder, create, wanted)
        held = self._folders[folder] = _Folder(fd)
        return held

    def _open_root(self, create: bool) -> int:
        # The root may be a symlink: it is the path the user chose.
        try:
            return os.open(self.url, host.HANDLE_FLAGS | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
        os.makedirs(self.url, exist_ok=True)
        return os.open(self.url, host.HANDLE_FLAGS | os.O_DIRECTORY | os.O_CLOEXEC)

    def _open_below(self, parent: int, name: str, folder: str, create: bool, wanted: str) -> int:
        path = f"{self.url}/{folder}"
        try:
            try:
                return os.open(name, _FOLDER, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
            with suppress(FileExistsError):
                os.mkdir(name, dir_fd=parent)
            return os.open(name, _FOLDER, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # a symlink or a file stands there
                mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                raise common.not_a_folder(path, mode, f"{self.url}/{wanted}") from None
            exc.filename = path  # the call was given the last name only
            raise

    def _exists_one(self, key: str) -> bool:
        folder, _, name = common.check_key(key).rpartition("/")
        path = f"{self.url}/{key}"

        def is_file() -> bool:
            try:
                held = self._folder(folder)
                return stat.S_ISREG(os.stat(name, dir_fd=held.fd, follow_symlinks=False).st_mode)
            except FileNotFoundError:
                return False

        try:
            return common.retrying(is_file, _transient, RETRY_DELAYS)
        except OSError as exc:
            raise _remote_error("check", Path(path), exc) from exc

    def exists(self, keys: Iterable[str]) -> set[str]:
        return common.bulk_exists(keys, self._exists_one, self.list)

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self._list(prefix, sizes=False))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        return self._list(prefix, sizes=True)

    def _list(self, prefix: str, sizes: bool) -> Iterator[tuple[str, int]]:
        """Every regular file under ``prefix``: a symlink, FIFO, socket or device is no
        object. A folder of ``prefix`` itself that is something else is refused."""
        start = common.folder_prefix(prefix)
        base = f"{self.url}/{start}"
        try:
            try:
                held = self._folder(start.rstrip("/"))
            except (FileNotFoundError, NotADirectoryError):
                return
            yield from self._walk(held.fd, start, sizes, common.MAX_DEPTH)
        except OSError as exc:
            raise _remote_error("list", Path(base), exc) from exc

    def _walk(
        self, folder_fd: int, key_prefix: str, sizes: bool, depth: int
    ) -> Iterator[tuple[str, int]]:
        """The regular files of the folder, and of its folders ``depth`` levels down."""

        def scan() -> list[tuple[str, bool, int]]:
            listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder_fd)
            try:
                found = []
                # The entries' types come with the listing (d_type): no stat per entry, and
                # stat only inside the scan, while its descriptor is open.
                with os.scandir(listing) as entries:
                    for entry in entries:
                        if is_temp(entry.name):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            found.append((entry.name, True, 0))
                        elif entry.is_file(follow_symlinks=False):
                            size = entry.stat(follow_symlinks=False).st_size if sizes else 0
                            found.append((entry.name, False, size))
                return sorted(found)
            finally:
                os.close(listing)

        for name, is_dir, size in common.retrying(scan, _transient, RETRY_DELAYS):
            if not is_dir:
                yield f"{key_prefix}{name}", size
                continue
            if not depth:
                continue
            try:
                sub = os.open(name, _FOLDER, dir_fd=folder_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # gone, or no folder any more, since the listing
                raise
            try:
                yield from self._walk(sub, f"{key_prefix}{name}/", sizes, depth - 1)
            finally:
                os.close(sub)

    def put(self, source: Path, key: str) -> None:
        folder, _, name = common.check_key(key).rpartition("/")
        # Opened first, so that a problem with the local file is not blamed on the remote;
        # its bytes are then copied from the descriptor, inside the kernel.
        src = os.open(source, os.O_RDONLY)
        try:
            common.retrying(lambda: self._put_once(src, folder, name), _transient, RETRY_DELAYS)
        except OSError as exc:
            raise _remote_error("write", Path(f"{self.url}/{key}"), exc) from exc
        finally:
            os.close(src)

    def _put_once(self, src: int, folder: str, name: str) -> None:
        held = self._folder(folder, create=True)
        tmp = temp_name(name)
        placed = False
        try:
            copy_into(src, tmp, os.O_EXCL, copy_fd, dir_fd=held.fd)
            os.replace(tmp, name, src_dir_fd=held.fd, dst_dir_fd=held.fd)
            placed = True
        except OSError as exc:
            exc.filename = f"{self.url}/{folder}/{tmp}"  # not the bare name it went by
            raise
        finally:
            if not placed:  # the copy or the rename failed
                with suppress(OSError):
                    os.unlink(tmp, dir_fd=held.fd)

    def put_group(self, items: Sequence[tuple[str, str]]) -> None:
        """``put`` of (source, key) pairs whose keys share one folder.

        A folder that does not exist yet is built aside, under a temp name in the remote's
        root, and renamed into place: one rename instead of one per object, and still no
        key ever names partial bytes. Where the folder exists (or appears meanwhile), each
        object takes its name on its own.
        """
        if not items:
            return
        folder = common.check_key(items[0][1]).rpartition("/")[0]
        if any(common.check_key(key).rpartition("/")[0] != folder for _source, key in items):
            raise ValueError("put_group: keys of more than one folder")
        try:
            self._folder(folder)
            exists = True
        except FileNotFoundError:
            exists = False
        except OSError as exc:
            raise _remote_error("write", Path(f"{self.url}/{folder}"), exc) from exc
        if exists:
            for source, key in items:
                self.put(Path(source), key)
            return
        try:
            placed = common.retrying(
                lambda: self._put_aside(items, folder), _transient, RETRY_DELAYS
            )
        except FileNotFoundError:
            raise  # a source went missing: the caller puts the others one by one
        except OSError as exc:
            raise _remote_error("write", Path(f"{self.url}/{folder}"), exc) from exc
        if not placed:
            for source, key in items:
                self.put(Path(source), key)

    def _put_aside(self, items: Sequence[tuple[str, str]], folder: str) -> bool:
        """Build ``folder`` aside and rename it into place; False where that cannot be done
        (it exists by now, or lies on another filesystem), with nothing left behind."""
        parent_key, _, name = folder.rpartition("/")
        parent = self._folder(parent_key, create=True)

        def fill(staging: str) -> None:
            for source, key in items:
                copy_new(source, f"{staging}/{key.rpartition('/')[2]}", copy_fd)

        # Renamed into the parent held open: a symlink planted at the name makes the rename
        # fail (a folder never replaces one), it is not followed.
        return build_aside(f"{self.url}/{temp_name('folder')}", name, fill, dest_dir_fd=parent.fd)

    def get(self, key: str, dest: str | os.PathLike[str]) -> str:
        folder, _, name = common.check_key(key).rpartition("/")
        path = f"{self.url}/{key}"

        def attempt() -> str:
            src, size = self._open_object(folder, name, path)
            try:
                return _copy_hashing(src, size, dest)
            finally:
                os.close(src)

        try:
            return common.retrying(attempt, _transient, RETRY_DELAYS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _remote_error("read", Path(path), exc) from exc

    def _open_object(self, folder: str, name: str, path: str) -> tuple[int, int]:
        """The object ``name`` of ``folder`` open for reading, and its size; a refusal when it
        is no regular file, decided before it is opened for reading."""
        held = self._folder(folder)
        held.reads += 1
        if held.suspects is None and held.reads == VET_AFTER + 1:
            held.suspects = _suspects(held.fd)
        try:
            if held.suspects is None or name in held.suspects:
                src = _open_vetted(held.fd, name, path)
            else:
                src = os.open(name, _OBJECT, dir_fd=held.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink, a socket
                mode = os.stat(name, dir_fd=held.fd, follow_symlinks=False).st_mode
                raise common.not_a_file(path, mode) from None
            exc.filename = path
            raise
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            os.close(src)
            raise common.not_a_file(path, info.st_mode)
        return src, info.st_size

    def delete(self, key: str) -> None:
        folder, _, name = common.check_key(key).rpartition("/")
        path = f"{self.url}/{key}"

        def unlink() -> None:
            try:
                os.unlink(name, dir_fd=self._folder(folder).fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                exc.filename = path
                raise

        try:
            common.retrying(unlink, _transient, RETRY_DELAYS)
        except OSError as exc:
            raise _remote_error("delete", Path(path), exc) from exc

    def close(self) -> None:
        """Close the folders held open."""
        with self._lock:
            for held in self._folders.values():
                os.close(held.fd)
            self._folders.clear()


def _suspects(folder_fd: int) -> frozenset[str] | None:
    """The names in the folder that its listing does not show as regular files; None if it
    cannot be listed (a folder one may enter but not list), then every object is vetted."""
    try:
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError:
        return None
    try:
        with os.scandir(listing) as entries:
            return frozenset(e.name for e in entries if not e.is_file(follow_symlinks=False))
    except OSError:
        return None
    finally:
        os.close(listing)


def _open_vetted(folder_fd: int, name: str, path: str) -> int:
    """Open ``name`` for reading only after a handle on it, which opens nothing, showed a
    regular file; the reopen goes through that handle, so nothing swapped in meanwhile.
    Without O_PATH (macOS) the handle was opened for reading already, and is the answer."""
    handle = os.open(name, _HANDLE, dir_fd=folder_fd)
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            raise common.not_a_file(path, mode)
        if host.O_PATH is None:
            readable, handle = handle, -1
            return readable
        return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        if handle >= 0:
            os.close(handle)
