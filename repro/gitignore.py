"""Keep cached outputs out of git: one `/name` line in the .gitignore beside each."""

from __future__ import annotations

import posixpath
from pathlib import Path

from repro.fsutil import write_atomic


def _entry(path: str) -> tuple[Path, str]:
    folder, name = posixpath.split(path)
    return Path(folder), f"/{name}"


def add(root: Path, path: str) -> bool:
    """Ignore ``path`` in the .gitignore of its folder; True when the file changed."""
    folder, line = _entry(path)
    ignore = root / folder / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
    if line in lines:
        return False
    lines.append(line)
    _write(ignore, lines)
    return True


def remove(root: Path, path: str) -> bool:
    folder, line = _entry(path)
    ignore = root / folder / ".gitignore"
    if not ignore.exists():
        return False
    lines = ignore.read_text(encoding="utf-8").splitlines()
    if line not in lines:
        return False
    lines = [existing for existing in lines if existing != line]
    if lines:
        _write(ignore, lines)
    else:
        ignore.unlink()
    return True


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
