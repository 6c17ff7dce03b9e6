"""Memos under .repro/tmp: what a command worked out, kept for the next one.

A memo is only a cache, and every memo follows the same rules:
- It is named (its file in .repro/tmp) and versioned by the repro that wrote it and by its own
  format: one written by another version of either reads as None, as does one that is missing,
  torn or unreadable. The command then works it out again.
- One that cannot be written is skipped: a read-only project still works, only slower.
- It is written whole (temp + rename), so commands running at once see an old or a new one.
- One that grows by entries keeps its newest ``limit`` of them.
- What a command learnt in memory is written once, at its end (teardown.when_done).

The hash memo (memo/state.py) is the one exception: an sqlite db, since it is looked up file
by file across tens of thousands of rows and updated a few at a time, and versioned by its
format alone, since no repro version hashes a file differently and rebuilding it means
reading every tracked byte again.

Only os and marshal are imported: the quick status reads its memo before the rest of repro
loads.
"""

from __future__ import annotations

import marshal
import os

from repro import __version__, fsutil

# What a quick answer from a memo returns when the full command must run instead.
NOT_ANSWERED = -1

FOLDER = os.path.join(".repro", "tmp")

TYPE_CHECKING = False  # typing itself costs the quick status an import
if TYPE_CHECKING:
    from typing import Any


class Memo:
    """One named memo of a project; its value is of marshal's types."""

    def __init__(self, name: str, version: int, limit: int | None = None) -> None:
        self.file = os.path.join(FOLDER, name)  # relative to the project's root
        self.magic = f"repro {__version__} {name} {version}"
        self.limit = limit  # entries a dict value keeps, the newest

    def load(self, root: str | os.PathLike[str]) -> Any:
        """The value stored in ``root``'s project; None when there is none to trust."""
        try:
            with open(os.path.join(root, self.file), "rb") as file:
                stored = marshal.loads(file.read())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if not isinstance(stored, tuple) or len(stored) != 2 or stored[0] != self.magic:
            return None
        return stored[1]

    def store(self, root: str | os.PathLike[str], value: Any) -> None:
        """Keep ``value`` in ``root``'s project, if the disk lets us."""
        if self.limit is not None and isinstance(value, dict) and len(value) > self.limit:
            value = dict(list(value.items())[-self.limit :])
        data = marshal.dumps((self.magic, value))
        try:
            if not os.path.isdir(os.path.join(root, FOLDER)):  # deleted: all it held is a memo
                os.mkdir(os.path.join(root, FOLDER))
            fsutil.write_atomic(os.path.join(root, self.file), data)
        except OSError:
            pass
