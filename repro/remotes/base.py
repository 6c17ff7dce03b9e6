"""What every remote backend offers: a flat key → bytes store under one root.

Keys are POSIX relative paths under the remote's root, e.g. ``files/md5/ab/cdef…`` (the DVC 3
layout), ``images/sha256/…`` or ``runs/…``. Higher layers map object ids to keys.

Errors: a missing key raises ``FileNotFoundError`` (from ``get``); anything else that goes wrong
on the remote side raises ``repro.errors.RemoteError`` with a one-line message. A backend
retries, a bounded number of times, only what may pass (a dropped connection, a stale network
file handle); a refusal such as permission denied is raised at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Protocol


class Remote(Protocol):
    """A storage backend. Implementations must be safe to call from several threads."""

    url: str
    # True when transfers may run in forked worker processes: the backend holds no connection
    # or thread that a fork would share (a folder). Network backends overlap in threads.
    forkable: bool

    def exists(self, keys: Iterable[str]) -> set[str]:
        """Return the subset of ``keys`` present.

        Lists by prefix when many, asks one by one when few."""

    def list(self, prefix: str) -> Iterator[str]:
        """Yield every key under ``prefix`` (a folder-like prefix such as ``files/md5/``)."""

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Like ``list``, with each key's size in bytes (free in every store's listing)."""

    def put(self, source: Path, key: str) -> None:
        """Upload ``source`` (opened with ``source.open("rb")``; a folder copies from its
        descriptor in the kernel) atomically: the key never names partial bytes."""

    def get(self, key: str, dest: str | PathLike[str]) -> str:
        """Download ``key`` into the file ``dest`` and return the md5 of the bytes written,
        hashed on the way (the caller compares it with the object id and moves the file).

        Raises ``FileNotFoundError`` when the key is absent."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""

    def close(self) -> None:
        """Release connections."""


class ManyAtOnce(Protocol):
    """What a backend may add when it moves many objects faster together than one by one
    (ssh: one ``tar`` stream instead of round trips per object). Optional: the transfer layer
    looks for these methods; whatever they do not yield, it moves one by one with ``get`` and
    ``put``, so a backend may yield nothing where its way does not work."""

    def get_many(
        self, items: Sequence[tuple[str, str]], more: bool = False
    ) -> Iterator[tuple[str, str]]:
        """Download each (key, dest file) pair's key into its file (new files, which it may
        make read-only); yield (key, md5 of the bytes written) for each, as ``get`` returns
        it. A dest not yielded may hold a part.
        ``more`` says another call follows soon, which the backend may prepare for."""

    def put_many(
        self,
        items: Sequence[tuple[str, str]],
        sent: Callable[[int, int], None] | None = None,
        more: bool = False,
    ) -> Iterator[tuple[str, int]]:
        """Upload each (source file, key) pair, atomically as ``put`` does; yield (key, bytes
        sent) once it is in place. ``sent(objects, bytes)`` hears of what has left meanwhile.
        ``more`` says another call follows (a push's manifests), which it may prepare for."""

    def prepare_put(self) -> None:
        """A ``put_many`` follows soon (the caller first asks what the remote has): the backend
        may connect meanwhile. Whatever it starts, ``close`` ends if no put_many came."""


class Cancellable(Protocol):
    """What a backend whose single transfers run long (S3's large objects, in parts) may add:
    the transfer layer calls it at Ctrl-C, before it waits for the running transfers."""

    def cancel(self) -> None:
        """Make every running transfer stop at its next chunk, and refuse new ones."""
