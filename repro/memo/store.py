"""Memos under .repro/tmp: what a command worked out, kept for the next one (marshal files).

A memo is only a cache. One that is missing, torn, written by another version or unreadable
reads as None, and one that cannot be written is skipped: the command then works it out again.
Each is written whole (temp + rename), so commands running at once see an old or a new memo.
Only os and marshal are imported: status_memo reads its memo before the rest of repro loads.
"""

from __future__ import annotations

import marshal
import os

from repro import fsutil

# What a quick answer from a memo returns when the full command must run instead.
NOT_ANSWERED = -1

TYPE_CHECKING = False  # typing itself costs status_memo's quick path an import
if TYPE_CHECKING:
    from typing import Any


def load(path: str | os.PathLike[str], magic: str) -> Any:
    """The value stored at ``path`` under ``magic``; None when there is none to trust."""
    try:
        with open(path, "rb") as file:
            stored = marshal.loads(file.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(stored, tuple) or len(stored) != 2 or stored[0] != magic:
        return None
    return stored[1]


def store(path: str | os.PathLike[str], magic: str, value: Any) -> None:
    """Keep ``value`` (of marshal's types) at ``path`` under ``magic``, if the disk lets us."""
    try:  # noqa: SIM105 - contextlib would cost the quick path an import
        fsutil.write_atomic(path, marshal.dumps((magic, value)))
    except OSError:  # a read-only project still works, only slower
        pass
