"""Path rules: every tracked path is relative, inside the project, outside .git and .repro."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from repro.errors import ReproError
from repro.walk import RESERVED_DIRS

RESERVED = RESERVED_DIRS


def check_relative(path: str, what: str) -> str:
    """Normalise a project-relative POSIX path, refusing anything that leaves the project."""
    if not path:
        raise ReproError(f"{what} is empty")
    if os.path.isabs(path):
        raise ReproError(f"{what} '{path}' is absolute; give a path relative to the project")
    norm = posixpath.normpath(path.replace(os.sep, "/"))
    if norm == ".":
        raise ReproError(f"{what} '{path}' is the project root itself; name a file or folder in it")
    if norm == ".." or norm.startswith("../"):
        raise ReproError(f"{what} '{path}' is outside the project; keep data inside it")
    first = norm.split("/", 1)[0]
    if first in RESERVED:
        raise ReproError(f"{what} '{path}' is inside {first}/, which repro does not track")
    return norm


def from_user(root: Path, cwd: Path, path: str, what: str) -> str:
    """A path the user typed (relative to ``cwd``) as a project-relative POSIX path."""
    if os.path.isabs(path):
        raise ReproError(f"{what} '{path}' is absolute; give a path relative to the project")
    joined = os.path.normpath(os.path.join(cwd, path))
    rel = os.path.relpath(joined, root)
    return check_relative(rel, what)


def overlaps(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def escapes_via_symlink(root: Path, rel: str) -> bool:
    """True when a parent folder of ``rel`` is a symlink that leads out of the project."""
    real_root = os.path.realpath(root)
    parent = os.path.dirname(rel)
    if not parent:
        return False
    real = os.path.realpath(root / parent)
    return not (real == real_root or real.startswith(real_root + os.sep))
