"""Run per-file work on every core, in forked worker processes.

Hashing, committing and linking tens of thousands of small files is a few syscalls per file,
each wrapped in a little Python. Threads cannot spread that over cores: they spend their time
handing the GIL to each other (measured here: two threads hash 20,000 files of 4 KiB slower
than one). Forked workers share nothing but a result pipe, and start in a few milliseconds.

Work functions run in the children with the parent's memory as it was at the fork; they must
only touch the filesystem and return picklable results. Where forking is unavailable or unsafe
(other threads are running, or there is little work), the work runs in this process instead.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from repro import host

T = TypeVar("T")
R = TypeVar("R")

Work = Callable[[Sequence[T]], list[R]]
Progress = Callable[[list[R]], object]  # called with each batch's results as they come

# Items per message from a worker: per-message overhead must stay small next to the work.
BATCH = 128
# Below this many items a fork costs more than it saves.
MIN_ITEMS = 500
_HEADER = struct.Struct("!Q")


def run_parts(
    work: Work[T, R],
    parts: Sequence[Sequence[T]],
    progress: Progress[R] | None = None,
    batch: int = BATCH,
) -> list[list[R]]:
    """``work`` over every part, each part in its own process; results in part order.

    ``work`` is called with ``batch`` items at a time: a worker reports after each call, and
    stops between calls when the parent is gone (so a large item wants a small batch). The
    parent works on the first part itself. An exception in any part is raised here after
    every worker has stopped; the first one wins.
    """
    parts = [part for part in parts if part]
    if len(parts) <= 1 or not _can_fork():
        return [_run_here(work, part, progress, batch) for part in parts]
    # Only this process holds the write end: the workers see the read end close when it dies,
    # however it dies (host.die_with_parent).
    lifeline = os.pipe()
    try:
        try:
            children = [_spawn(work, part, batch, lifeline) for part in parts[1:]]
        finally:
            os.close(lifeline[0])
        return _gather(work, parts[0], progress, batch, children)
    finally:
        os.close(lifeline[1])


def _gather(
    work: Work[T, R],
    first: Sequence[T],
    progress: Progress[R] | None,
    batch: int,
    children: list[tuple[int, int]],
) -> list[list[R]]:
    """The first part worked on here, then every worker's results, in order."""
    readers: list[_Reader[R]] = [_Reader(pid, fd, progress) for pid, fd in children]
    results: list[list[R]] = []
    failure: BaseException | None = None
    try:
        results.append(_run_here(work, first, progress, batch))
    except BaseException as exc:  # Ctrl-C included: stop the workers, then re-raise
        failure = exc
        for reader in readers:
            reader.kill()
    try:
        for reader in readers:
            reader.join()
            if failure is None and reader.error is not None:
                failure = reader.error
            results.append(reader.results)
    except BaseException:  # Ctrl-C while waiting for the workers: stop them too
        for reader in readers:
            reader.kill()
        raise
    if failure is not None:
        raise failure
    return results


def split(items: Sequence[T], count: int) -> list[Sequence[T]]:
    """``items`` in ``count`` contiguous slices of nearly equal length."""
    count = max(1, min(count, len(items) // MIN_ITEMS or 1))
    size, extra = divmod(len(items), count)
    slices: list[Sequence[T]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        slices.append(items[start:end])
        start = end
    return slices


def _can_fork() -> bool:
    # Forking while other threads run could copy a lock some thread holds (and Python 3.12+
    # warns about it): parallel stages commit their outputs from threads, so they work here.
    return hasattr(os, "fork") and threading.active_count() == 1


def _run_here(
    work: Work[T, R], items: Sequence[T], progress: Progress[R] | None, batch: int
) -> list[R]:
    results: list[R] = []
    for start in range(0, len(items), batch):
        done = work(items[start : start + batch])
        results.extend(done)
        if progress is not None:
            progress(done)
    return results


def _spawn(
    work: Work[T, R], items: Sequence[T], batch: int, lifeline: tuple[int, int]
) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        os.close(lifeline[1])
        _child(work, items, write_fd, parent, batch, lifeline[0])
    os.close(write_fd)
    return pid, read_fd


def _child(
    work: Work[T, R], items: Sequence[T], write_fd: int, parent: int, batch: int, lifeline: int
) -> None:
    code = 1
    try:
        # The parent handles Ctrl-C, SIGTERM and SIGHUP (sent to the whole process group by
        # a terminal or `timeout`) and stops the workers itself.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        # A parent killed by kill -9 mid-batch must not leave a worker that holds the project
        # lock, inherited, while it finishes the batch: the next command would be refused.
        host.die_with_parent(lifeline)
        with os.fdopen(write_fd, "wb") as pipe:
            try:
                for start in range(0, len(items), batch):
                    if os.getppid() != parent:
                        return  # the parent was killed: stop writing into the project
                    _send(pipe, ("batch", work(items[start : start + batch])))
                code = 0
            except BaseException as exc:
                _send(pipe, ("error", _picklable(exc)))
    except BaseException:
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def _send(pipe: object, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(_HEADER.pack(len(data)) + data)  # type: ignore[attr-defined]
    pipe.flush()  # type: ignore[attr-defined]


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class _Reader(Generic[R]):
    """Drains one worker's pipe on a thread, so that the worker never blocks on a full pipe."""

    def __init__(self, pid: int, read_fd: int, progress: Progress[R] | None) -> None:
        self.pid = pid
        self.results: list[R] = []
        self.error: BaseException | None = None
        self._progress = progress
        self._file = os.fdopen(read_fd, "rb")
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with self._file as pipe:
            while header := pipe.read(_HEADER.size):
                (length,) = _HEADER.unpack(header)
                kind, payload = pickle.loads(pipe.read(length))
                if kind == "error":
                    self.error = payload
                    continue
                self.results.extend(payload)
                if self._progress is not None:
                    self._progress(payload)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def join(self) -> None:
        self._thread.join()
        _, status = os.waitpid(self.pid, 0)
        if self.error is None and status != 0:
            self.error = RuntimeError(f"a worker process ended with status {status}")
