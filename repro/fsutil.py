"""Atomic file writes: a temp name beside the target, then rename, so a kill leaves old or new.

Two kinds of temp name. Beside a file of the user's, ``.NAME.PID.RANDOM.tmp`` (``tmp_name``)
tells a human whose it is. Among objects (in the cache, on a folder or SSH remote), every temp
name starts with TEMP_PREFIX (``temp_name``), so that listings pass over what a killed process
left (``is_temp``).
"""

from __future__ import annotations

import errno
import itertools
import os

COPY_CHUNK = 1 << 30  # per kernel copy call: large, the kernel copies in its own steps
READ_CHUNK = 1 << 20
# What copy_file_range or sendfile report where the kernel or filesystem cannot use them.
NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})

# A folder renamed onto ``dest`` fails so where ``dest`` exists by then, or lies elsewhere.
_CANNOT_RENAME_ONTO = frozenset({errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV})

TYPE_CHECKING = False  # typing and pathlib would cost status_memo's quick path an import
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")


def tmp_name(path: Path) -> Path:
    """A unique hidden name in the same folder (so the final rename stays on one filesystem)."""
    return path.with_name(_hidden(path.name))


# The longest file name most filesystems take (ext4, xfs, btrfs, tmpfs: bytes, not characters).
NAME_MAX = 255


def _hidden(name: str) -> str:
    """``.NAME.PID.RANDOM.tmp``, with NAME cut short so that the whole fits in NAME_MAX bytes:
    a file whose own name is near the limit still gets a temp name beside it. The pid and the
    random part keep it unique; the name is only there to tell a human whose temp it is."""
    suffix = f".{os.getpid()}.{os.urandom(6).hex()}.tmp"
    raw = os.fsencode(name)
    room = NAME_MAX - 1 - len(suffix)
    if len(raw) > room:
        # A cut through a multi-byte character decodes to surrogate escapes, which encode back
        # to the same bytes: the name stays what the filesystem is given.
        name = os.fsdecode(raw[:room])
    return f".{name}{suffix}"


# What a temp name among objects starts with: no object id does.
TEMP_PREFIX = ".repro-tmp-"

_temp_tag: tuple[int, str] = (0, "")  # (pid, random tag drawn by that process)
_temp_numbers = itertools.count()


def temp_name(name: str) -> str:
    """A unique sibling name for writing ``name`` before the atomic rename.

    Unique across hosts sharing a remote and across forked workers (a random tag drawn once
    per process), and within a process (a counter): no uuid per object.
    """
    global _temp_tag
    pid = os.getpid()
    if _temp_tag[0] != pid:
        _temp_tag = (pid, os.urandom(8).hex())
    return f"{TEMP_PREFIX}{_temp_tag[1]}-{next(_temp_numbers)}-{name}"


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def staging_name(prefix: str) -> str:
    """A name for a folder of work in progress: ``prefix``, host, pid and a random tag, so
    that remove_dead_stagings can tell a dead one from one still being built."""
    return f"{prefix}{os.uname().nodename}-{os.getpid()}-{os.urandom(4).hex()}"


def remove_dead_stagings(folder: str, prefix: str) -> None:
    """Remove the staging folders in ``folder`` that a process of this host left when it was
    killed. Those of live processes, and of other hosts sharing the folder, stay."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    host = os.uname().nodename
    for name in names:
        if not name.startswith(prefix):
            continue
        made_by = name[len(prefix) :].rsplit("-", 2)
        if len(made_by) != 3 or made_by[0] != host or not made_by[1].isdigit():
            continue
        try:
            os.kill(int(made_by[1]), 0)
        except ProcessLookupError:
            import shutil

            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file at ``path``, opened without following a symlink and
    without blocking: a fifo planted in a symlink's or a file's place would otherwise hang
    repro for ever (with the project lock held). FileNotFoundError when nothing is there;
    NotRegular for a symlink, fifo, socket or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise NotRegular(os.fspath(path)) from None
        raise
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(os.fspath(path))
        chunks = []
        while chunk := os.read(fd, READ_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class NotRegular(OSError):
    """A path that is a symlink, fifo, socket, device or folder where a file must be."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", path)
        self.path = path


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, _hidden(name))
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 - contextlib would cost status_memo's quick path an import
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    """Write all of ``data``, at the file's position or at ``offset`` (which leaves the position
    alone): a write may take less than it is given (a full disk, a signal)."""
    chunk = memoryview(data)
    while chunk:
        if offset is None:
            count = os.write(fd, chunk)
        else:
            count = os.pwrite(fd, chunk, offset)
            offset += count
        chunk = chunk[count:]


def copy_fd(src: int, dst: int) -> None:
    """Copy all of ``src`` (from its start) into ``dst`` inside the kernel.

    copy_file_range first (no bytes through user space, a server-side copy on NFS 4.2);
    sendfile (Linux) where the kernel or the filesystem refuses it; plain reads and writes last.
    """
    from repro import host  # here: `repro --version` imports this module, not host

    offset = 0
    copy_range = host.COPY_FILE_RANGE
    if copy_range is not None:
        try:
            while copied := copy_range(src, dst, COPY_CHUNK, offset):
                offset += copied
            return
        except OSError as exc:
            if offset or exc.errno not in NO_KERNEL_COPY:
                raise
    if host.SENDFILE_TO_FILE:
        try:
            while copied := os.sendfile(dst, src, offset, COPY_CHUNK):
                offset += copied
            return
        except OSError as exc:
            if offset or exc.errno not in NO_KERNEL_COPY:
                raise
    while data := os.pread(src, READ_CHUNK, offset):
        write_all(dst, data)
        offset += len(data)


def copy_into(
    src: int, dest: str, flags: int, copy: Callable[[int, int], T], dir_fd: int | None = None
) -> T:
    """``copy(src, out)`` into the file ``dest`` (relative to ``dir_fd`` when given), opened
    with ``flags`` besides O_CREAT."""
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | flags, 0o666, dir_fd=dir_fd)
    try:
        return copy(src, out)
    finally:
        os.close(out)


def copy_new(source: str, dest: str, copy: Callable[[int, int], object] = copy_fd) -> None:
    """Copy the file ``source`` to ``dest``, which must not exist yet (its mode comes from
    the umask)."""
    src = os.open(source, os.O_RDONLY)
    try:
        copy_into(src, dest, os.O_EXCL, copy)
    finally:
        os.close(src)


def copy_atomic(
    source: str | os.PathLike[str],
    dest: Path,
    mode: int | None,
    copy: Callable[[int, int], object] = copy_fd,
) -> None:
    """Copy the file ``source`` over ``dest`` through a temp name beside it: ``dest`` holds
    its old bytes or all the new ones. The copy gets ``mode``, or with None the umask's."""
    tmp = tmp_name(dest)
    try:
        copy_new(os.fspath(source), str(tmp), copy)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_aside(
    staging: str, dest: str, fill: Callable[[str], None], dest_dir_fd: int | None = None
) -> bool:
    """Make the folder ``staging``, ``fill`` it, and rename it to ``dest`` (relative to
    ``dest_dir_fd`` when given): ``dest`` appears whole or not at all, with no rename per
    file. False, with nothing left behind, where ``dest`` exists by then or lies on another
    filesystem; any other failure removes ``staging`` and is raised."""
    import shutil

    os.mkdir(staging)
    try:
        fill(staging)
        try:
            os.rename(staging, dest, dst_dir_fd=dest_dir_fd)
        except OSError as exc:
            if exc.errno not in _CANNOT_RENAME_ONTO:
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return False
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True
