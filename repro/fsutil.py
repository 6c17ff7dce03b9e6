"""Atomic file writes: a temp name beside the target, then rename, so a kill leaves old or new."""

from __future__ import annotations

import errno
import os

COPY_CHUNK = 1 << 30  # per kernel copy call: large, the kernel copies in its own steps
READ_CHUNK = 1 << 20
# What copy_file_range or sendfile report where the kernel or filesystem cannot use them.
NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})

TYPE_CHECKING = False  # typing and pathlib would cost status_memo's quick path an import
if TYPE_CHECKING:
    from pathlib import Path


def tmp_name(path: Path) -> Path:
    """A unique hidden name in the same folder (so the final rename stays on one filesystem)."""
    return path.with_name(_hidden(path.name))


def _hidden(name: str) -> str:
    return f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"


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


def copy_fd(src: int, dst: int) -> None:
    """Copy all of ``src`` (from its start) into ``dst`` inside the kernel.

    copy_file_range first (no bytes through user space, a server-side copy on NFS 4.2);
    sendfile where the kernel or the filesystem refuses it; plain reads and writes last.
    """
    offset = 0
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        try:
            while copied := copy_range(src, dst, COPY_CHUNK, offset):
                offset += copied
            return
        except OSError as exc:
            if offset or exc.errno not in NO_KERNEL_COPY:
                raise
    try:
        while copied := os.sendfile(dst, src, offset, COPY_CHUNK):
            offset += copied
        return
    except OSError as exc:
        if offset or exc.errno not in NO_KERNEL_COPY:
            raise
    while data := os.pread(src, READ_CHUNK, offset):
        os.write(dst, data)
        offset += len(data)
