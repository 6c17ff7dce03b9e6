"""The checkout conflict policy: what repro may replace or delete in the workspace.

Nothing a user could lose goes without --force. A path may be replaced when nothing is there,
or when what is there is in the cache: a regular file whose content is cached, a folder whose
files all are. A symlink is never replaced (what it points to is not repro's). A stale output
that checkout would prune goes only while it still holds what repro linked there.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from repro.errors import CheckoutError

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from repro.objects.store import Cache
    from repro.workspace.hashing import Hasher

# How many conflicting paths the refusal names.
SHOWN = 5


class Conflict(NamedTuple):
    """A workspace path whose content is not in the cache: replacing it would lose data."""

    path: str


def is_safe_to_replace(store: Cache, path: Path, hasher: Hasher, label: str) -> bool:
    """True when nothing at ``path`` would be lost: it is absent or its content is cached."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if stat_mod.S_ISDIR(st.st_mode):
        info = hasher.hash_dir(str(path), label)
        return all(store.exists(md5) for _rel, md5 in info.entries)
    if stat_mod.S_ISLNK(st.st_mode):
        return False
    return store.exists(hasher.hash_file(str(path), st))


def may_replace(store: Cache, path: Path, hasher: Hasher, label: str, force: bool) -> bool:
    return force or is_safe_to_replace(store, path, hasher, label)


def unsaved(
    store: Cache,
    current: Iterable[tuple[str, str]],
    wanted: Mapping[str, str],
    label: str,
    force: bool,
) -> list[Conflict]:
    """The files of the folder ``label`` that a checkout of ``wanted`` would change or delete
    and whose content the cache lacks; ``current`` is what the folder holds, (relpath, md5)."""
    if force:
        return []
    return [
        Conflict(f"{label}/{rel}")
        for rel, md5 in current
        if wanted.get(rel) != md5 and not store.exists(md5)
    ]


def may_prune(now: str | None, linked: str, force: bool) -> bool:
    """True when a stale output, linked by repro as ``linked`` and now ``now``, may go."""
    return now == linked or force


def refusal(conflicts: Sequence[str]) -> CheckoutError:
    """The error that stops a checkout which would overwrite ``conflicts``."""
    shown = ", ".join(conflicts[:SHOWN]) + (" …" if len(conflicts) > SHOWN else "")
    return CheckoutError(
        f"checkout would overwrite changes that are not in the cache: {shown}; "
        "commit them with 'repro add'/'repro commit', move them away, or use --force",
        list(conflicts),
    )
