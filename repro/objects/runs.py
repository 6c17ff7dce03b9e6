"""Where run-cache entries live: ``runs/ab/cdef…`` below the cache's root and a remote's.

A run key is an md5 (of what went into a run; pipeline/runcache.py computes it and reads and
writes the entries). Like objects, entries fan out by the key's first two hex digits, and a
name that is no run key (a temp file, anything planted on a remote) is no entry.
"""

from __future__ import annotations

import os

from repro.objects.ids import FANOUT_DIGITS, is_md5

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from pathlib import Path

RUNS = "runs"  # the folder of entries, relative to a cache's or remote's root
PREFIX = RUNS + "/"  # what every entry's key starts with


def entry_key(run_key: str) -> str:
    """The key of an entry in the cache or on a remote, ``runs/ab/cdef…``."""
    return f"{PREFIX}{run_key[:FANOUT_DIGITS]}/{run_key[FANOUT_DIGITS:]}"


def entry_path(root: Path, run_key: str) -> Path:
    """Where the cache at ``root`` keeps the entry of ``run_key``."""
    return root / entry_key(run_key)


def run_key_of(key: str) -> str | None:
    """The run key an entry's key names, or None for a key that is no entry."""
    fan, slash, name = key.removeprefix(PREFIX).partition("/")
    run_key = fan + name
    if key.startswith(PREFIX) and slash and len(fan) == FANOUT_DIGITS and is_md5(run_key):
        return run_key
    return None


def run_keys(root: Path) -> list[str]:
    """The run keys of every entry in the cache at ``root``, sorted."""
    base = root / RUNS
    if not base.is_dir():
        return []
    return sorted(
        fan + name
        for fan in os.listdir(base)
        if len(fan) == FANOUT_DIGITS
        for name in os.listdir(base / fan)
        if is_md5(fan + name)
    )
