"""Helpers the backends share: key checks, refusals, retries and the bulk existence
strategy. Temp names for uploads are fsutil's (``temp_name``, ``is_temp``)."""

from __future__ import annotations

import posixpath
import re
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from time import sleep
from typing import TypeVar

from repro.errors import RemoteError
from repro.objects.ids import FANOUT_DIGITS

T = TypeVar("T")

# Up to this many keys, one existence query per key beats listing folders.
FEW_KEYS = 64
# Listing runs a few folders at once: remotes are thread-safe and each listing is a round trip.
LIST_WORKERS = 8
# Folders of a fan-out (files/md5/XX/): one per value of an id's leading hex digits.
FANOUT = 16**FANOUT_DIGITS
# Folders a listing enters below the folder it lists. repro's keys lie at most two below
# (files/md5/ab/cdef…, runs/ab/…); a deeper tree is someone else's, and walked to its end
# (a thousand nested folders on a hostile remote) it would overflow Python's stack.
MAX_DEPTH = 8
# The longest a remote's ``timeout`` option may be, in seconds: a day. Sockets refuse waits
# beyond what time_t holds (about 1e11 s), and no answer is worth waiting for longer.
MAX_TIMEOUT = 86400.0


# Paths the server's login shell reads the same inside single quotes, whichever it is: fish
# reads \' there, csh a ! and a newline, so a path with those never goes on a command line.
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./~@%+=:, -]+")


def shell_safe(path: str) -> bool:
    """Whether ``path``, quoted, may go into a command the server's login shell runs."""
    return _SHELL_SAFE.fullmatch(path) is not None


def silence(timeout: float) -> str:
    """Why a server that stopped answering was given up on."""
    return f"the server did not answer for {timeout:g} s (the remote's timeout option)"


def check_key(key: str) -> str:
    """Return ``key`` if it is a clean relative POSIX path; a bug in the caller otherwise."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid remote key: {key!r}")
    return key


def folder_prefix(prefix: str) -> str:
    """Normalise a listing prefix to ``""`` or ``"a/b/"`` (a folder, never a name fragment)."""
    stripped = prefix.strip("/")
    if stripped:
        check_key(stripped)
        return stripped + "/"
    return ""


_KINDS = (
    (stat.S_ISREG, "regular file"),
    (stat.S_ISDIR, "folder"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, in words: "fifo", "symlink", "folder", …"""
    return next((kind for test, kind in _KINDS if test(mode)), "special file")


def not_a_file(where: str, mode: int) -> RemoteError:
    """The refusal of an object that is no regular file (read, it could block or act)."""
    return RemoteError(
        f"object {where} is a {file_kind(mode)}, not a regular file (repro never stores one): "
        "remove it there, then push the object again from a copy that has it"
    )


def not_a_folder(where: str, mode: int, wanted: str) -> RemoteError:
    """The refusal of a folder of the layout, ``where`` on the way to ``wanted``, that is
    something else, a symlink above all (written through, it would put objects wherever it
    leads)."""
    way = f"cannot reach {wanted}: " if wanted != where else ""
    return RemoteError(
        f"{way}{where} is a {file_kind(mode)}, not a folder (repro never makes one): remove "
        "it there, then run the command again"
    )


def retrying(
    attempt: Callable[[], T],
    is_transient: Callable[[Exception], bool],
    delays: Iterable[float],
) -> T:
    """Return ``attempt()``; after a transient failure wait each of ``delays`` in turn and try
    again. Any other failure, or the last transient one, propagates.

    Only for idempotent operations: every backend write goes to a temp name and is renamed
    into place, so repeating one that may or may not have happened is safe.
    """
    for delay in delays:
        try:
            return attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
        sleep(delay)
    return attempt()


def bulk_exists(
    keys: Iterable[str],
    exists_one: Callable[[str], bool],
    list_prefix: Callable[[str], Iterable[str]],
    page_size: int | None = None,
    query_cost: float | None = None,
) -> set[str]:
    """Which ``keys`` exist: per-key queries when few, else listings.

    Listing one folder per parent folder of the keys costs at most 256 listings with the
    ``files/md5/XX/`` fan-out however many keys we ask about, and stays cheap on a huge
    remote. A store whose listing is paginated (``page_size`` keys per request, as on S3)
    may do better listing the whole parent at once when the remote is small, and better
    asking key by key when it holds far more keys than we ask about (``query_cost``: what
    one query costs, in keys listed): one folder is listed first to estimate its size.
    """
    wanted = {check_key(k) for k in keys}
    if len(wanted) <= FEW_KEYS:
        return _ask_each(wanted, exists_one)
    folders = sorted({folder_prefix(posixpath.dirname(k)) for k in wanted})
    found: set[str] = set()
    parents = {posixpath.dirname(folder.rstrip("/")) for folder in folders}
    if page_size and len(parents) == 1 and len(folders) > LIST_WORKERS:
        sample = list(list_prefix(folders[0]))
        # Keys spread evenly over the 2-hex-digit fan-out, so one folder predicts the rest.
        on_remote = len(sample) * FANOUT
        unlisted = {k for k in wanted if not k.startswith(folders[0])}
        if query_cost is not None and len(unlisted) * query_cost < on_remote:
            return (wanted & set(sample)) | _ask_each(unlisted, exists_one)
        if on_remote / page_size < len(folders) / LIST_WORKERS:
            return wanted & set(list_prefix(folder_prefix(parents.pop())))
        found.update(sample)
        folders = folders[1:]
    with ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(folders))) as pool:
        for listed in pool.map(lambda folder: list(list_prefix(folder)), folders):
            found.update(listed)
    return wanted & found


def _ask_each(keys: Iterable[str], exists_one: Callable[[str], bool]) -> set[str]:
    """The ``keys`` that ``exists_one`` finds, asked LIST_WORKERS at a time (each question a
    round trip on a network remote)."""
    asked = sorted(keys)
    if len(asked) <= 1:
        return {k for k in asked if exists_one(k)}
    with ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(asked))) as pool:
        return {k for k, there in zip(asked, pool.map(exists_one, asked), strict=True) if there}
