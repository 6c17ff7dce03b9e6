"""Stage files' loaded YAML, keyed by their text, kept between commands.

A quick command such as ``status`` reads a few unchanged stage files; importing PyYAML and
compiling its patterns would cost more than the rest of its work. The key is the whole text,
so an edited file is parsed afresh whatever its mtime says.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable
from typing import Any

from repro.memo.store import Memo
from repro.teardown import when_done

MEMO = Memo("parsed-stages", 1, limit=1024)


class NotYaml(Exception):
    """Text that is not YAML; the message says where, when the parser knows."""


class ParsedYaml:
    """Loaded YAML by text: in memory, and in one project's memo from :meth:`attach` on."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.root: str | None = None
        self.dirty = False  # entries not in the memo yet

    def attach(self, root: str | os.PathLike[str]) -> None:
        """Keep entries in the memo of the project at ``root``, starting from those it holds."""
        if self.root == os.fspath(root):
            return
        self.save()  # the previous project's new entries
        self.root = os.fspath(root)
        stored = MEMO.load(self.root)
        self.entries = stored if isinstance(stored, dict) else {}

    def load(self, text: str, strict: Callable[[str], Any] | None = None) -> Any:
        """The YAML data of ``text``; raises NotYaml when it is not YAML. ``strict`` parses
        instead, refusing what plain YAML allows (a repro.yaml's duplicate keys); what it
        gives is kept apart, so a text the plain parser took is still checked by it."""
        key: Any = text if strict is None else ("strict", text)
        if key in self.entries:
            return self.entries[key]
        import yaml

        try:
            if strict is not None:
                data = strict(text)
            else:
                data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise NotYaml(f" at line {mark.line + 1}" if mark is not None else "") from None
        try:
            marshal.dumps(data)  # YAML timestamps and the like cannot be kept: parse each time
        except ValueError:
            return data
        self.entries[key] = data
        self.dirty = True
        when_done(self.save)
        return data

    def save(self) -> None:
        """Write the entries out, if this process learnt any since the last save."""
        if self.root is None or not self.dirty:
            return
        self.dirty = False
        MEMO.store(self.root, self.entries)


# One per process: what one project's command parsed serves every later parse of the same text.
PARSED = ParsedYaml()
