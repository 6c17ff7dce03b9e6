"""Keep cached outputs out of git: one `/name` line in the .gitignore beside each."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from repro.errors import ReproError
from repro.fsutil import write_atomic


def _entry(path: str) -> tuple[Path, str]:
    folder, name = posixpath.split(path)
    return Path(folder), f"/{escape(name)}"


def escape(name: str) -> str:
    """``name`` as a gitignore pattern that matches that one name: git reads \\, *, ? and [
    as pattern characters and drops trailing spaces unless each is escaped by a backslash.
    (# and ! are special only first on a line, and the line starts with /.)"""
    for special in "\\*?[":
        name = name.replace(special, "\\" + special)
    stripped = name.rstrip(" ")
    return stripped + "\\ " * (len(name) - len(stripped))


def add(root: Path, path: str) -> bool:
    """Ignore ``path`` in the .gitignore of its folder; True when the file changed."""
    if "\n" in path or "\r" in path:  # stage checks refuse these first; a line is a pattern
        raise ReproError(f"{path!r} has a line break in its name; rename it")
    folder, line = _entry(path)
    ignore = _ignore_file(root, folder)
    lines = _read(ignore) if os.path.lexists(ignore) else []
    if line in lines:
        return False
    lines.append(line)
    _write(ignore, lines)
    return True


def remove(root: Path, path: str) -> bool:
    folder, line = _entry(path)
    ignore = _ignore_file(root, folder)
    if not os.path.lexists(ignore):
        return False
    # Older versions wrote the name unescaped: that line goes too.
    gone = {line, f"/{posixpath.basename(path)}"}
    lines = _read(ignore)
    if gone.isdisjoint(lines):
        return False
    lines = [existing for existing in lines if existing not in gone]
    if lines:
        _write(ignore, lines)
    else:
        ignore.unlink()
    return True


def _ignore_file(root: Path, folder: Path) -> Path:
    """The .gitignore of ``folder``, refused when a symlink on its way leaves the project
    (a folder linked to .git would have repro write .git/.gitignore)."""
    from repro.paths import inside

    return inside(root, (folder / ".gitignore").as_posix(), ".gitignore")


def _read(path: Path) -> list[str]:
    """The lines as git splits them: at \\n only (str.splitlines would split a name at \\f)."""
    from repro.fsutil import NotRegular, read_regular

    try:
        data = read_regular(path)  # a fifo or a link there (planted by a stage) must not hang
    except NotRegular:
        raise ReproError(f"{path} is a symlink, fifo or device, not a file; remove it") from None
    text = data.decode("utf-8", "surrogateescape")  # the user's lines, as they are
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")] if text else []


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
