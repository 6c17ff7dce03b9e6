"""Checks of the values a stage file holds, shared by every field and every dependency kind.

A stage file comes from a cloned repository, so each value is checked before it is used: a
wrong one raises :class:`Malformed` with what is wrong, which the loader turns into one line
naming the file. Paths are written relative to the stage file's folder and held relative to
the project root.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from repro.errors import ReproError
from repro.fsutil import NAME_MAX
from repro.objects.ids import is_object_id
from repro.walk import RESERVED_DIRS


class Malformed(Exception):
    """A value a stage file cannot hold; the message says which and why."""


def text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} must be a non-empty string")
    return value


def optional_text(value: Any, what: str) -> str | None:
    return None if value is None else text(value, what)


def md5(value: Any, what: str) -> str | None:
    """An object id as stage files record it: 32 lowercase hex digits, ``.dir`` for a folder."""
    if value is None:
        return None
    found = text(value, what)
    if not is_object_id(found):
        raise Malformed(f"{what} is not an md5 hash")
    return found


def sequence(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{what} must be a list")
    return value


def mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} must be a mapping")
    return value


def entries(value: Any, field: str, what: str, keys: frozenset[str]) -> list[dict[str, Any]]:
    """The mappings listed under ``field``, each holding no key but ``keys``."""
    found = []
    for entry in sequence(value, field):
        entry = mapping(entry, what)
        unknown = set(entry) - keys
        if unknown:
            raise Malformed(f"unknown key {field}.{sorted(map(str, unknown))[0]}")
        found.append(entry)
    return found


def epoch(value: Any, what: str) -> int | None:
    """A time in whole seconds since 1970, as SOURCE_DATE_EPOCH holds one; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise Malformed(f"{what} must be a whole number of seconds since 1970, not {value!r}")
    return value


def drop_none(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


def to_root(stage_dir: str, path: str) -> str:
    """A path as the stage file in ``stage_dir`` writes it, relative to the project root."""
    from repro.paths import check_relative

    check_name(path, "path")
    try:
        return check_relative(posixpath.join(stage_dir, path), "path")
    except ReproError as exc:
        raise Malformed(str(exc)) from None


def to_file(stage_dir: str, path: str) -> str:
    """A path relative to the project root, as the stage file in ``stage_dir`` writes it."""
    return posixpath.relpath(path, stage_dir) if stage_dir else path


def shown(path: str) -> str:
    """A path as one printable line: undecodable bytes as \\xNN, line breaks as \\n."""
    try:
        line = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        line = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return line.replace("\n", "\\n").replace("\r", "\\r")


def is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: bytes that were not UTF-8
        return False
    return True


def check_name(path: str, what: str) -> None:
    """Refuse a path that stage files (UTF-8 YAML) or .gitignore lines cannot hold."""
    if not is_utf8(path):
        raise Malformed(
            f"{what} '{shown(path)}' is not valid UTF-8; rename it (stage files are UTF-8 text)"
        )
    if "\n" in path or "\r" in path:
        raise Malformed(
            f"{what} '{shown(path)}' has a line break in its name; rename it "
            "(.gitignore files and stage files hold one path per line)"
        )
    if any(len(part.encode("utf-8")) > NAME_MAX for part in path.split("/")):
        raise Malformed(
            f"{what} '{path}' has a name longer than {NAME_MAX} bytes, more than a file "
            "name can have; rename it to something shorter"
        )


def check_wdir(stage_dir: str, wdir: str) -> None:
    """``wdir`` (relative to the stage file's folder) must lead to a folder of the project."""
    check_name(wdir, "wdir")
    if wdir.startswith("/") or os.path.isabs(wdir):
        raise Malformed(f"wdir '{wdir}' is absolute; give a folder relative to the stage file")
    where = posixpath.normpath(posixpath.join(stage_dir, wdir))
    if where == ".." or where.startswith("../"):
        raise Malformed(f"wdir '{wdir}' leads outside the project; give a folder inside it")
    first = where.split("/", 1)[0]
    if first in RESERVED_DIRS:
        raise Malformed(f"wdir '{wdir}' leads into {first}/, where no stage runs")
