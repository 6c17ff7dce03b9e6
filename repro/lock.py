"""The project lock: one command that writes the project at a time; the others wait (--wait) or
are refused in one line naming the holder.

An fcntl lock on .repro/lock is released by the kernel when its holder dies, even by kill -9,
so a stale lock can never block anyone. The file also records who holds it (pid, host, a
random token, start time) so that a refused command can say who to wait for.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from repro.errors import LockedError, ReproError


class ProjectLock:
    def __init__(self, path: Path, wait: bool = False) -> None:
        self.path = path
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> ProjectLock:
        # Never through a link: a cloned repository could commit .repro/lock -> any file,
        # which truncating would destroy. A fifo or device would block or worse.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise
            raise ReproError(
                f"{self.path} is not a plain file (a symlink, fifo or folder, maybe planted "
                "by a cloned repository); remove it and retry"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ReproError(f"{self.path} is not a plain file; remove it and retry")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise LockedError(
                f"another repro command holds the project lock ({holder}); wait for it to "
                "finish, or run again with --wait"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": os.uname().nodename,
            "token": os.urandom(8).hex(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "holder unknown"
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}"
