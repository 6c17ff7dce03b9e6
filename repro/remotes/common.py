"""Helpers the backends share: key checks, temp names and the bulk existence strategy."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

# Up to this many keys, one existence query per key beats listing folders.
FEW_KEYS = 64
# Listing runs a few folders at once: remotes are thread-safe and each listing is a round trip.
LIST_WORKERS = 8
# Interrupted uploads may leave these behind; listings never report them as keys.
TEMP_PREFIX = ".repro-tmp-"


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


def temp_name(name: str) -> str:
    """A unique sibling name for uploading ``name`` before the atomic rename."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def bulk_exists(
    keys: Iterable[str],
    exists_one: Callable[[str], bool],
    list_prefix: Callable[[str], Iterable[str]],
) -> set[str]:
    """Which ``keys`` exist: per-key queries when few, else one listing per parent folder.

    With the ``files/md5/XX/`` fan-out that is at most 256 listings however many keys we ask
    about, and listing only the folders we need stays cheap on a huge remote.
    """
    wanted = {check_key(k) for k in keys}
    if len(wanted) <= FEW_KEYS:
        return {k for k in wanted if exists_one(k)}
    folders = sorted({folder_prefix(posixpath.dirname(k)) for k in wanted})
    found: set[str] = set()
    with ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(folders))) as pool:
        for listed in pool.map(lambda folder: list(list_prefix(folder)), folders):
            found.update(listed)
    return wanted & found
