"""Path rules: every tracked path is relative, inside the project, outside .git and .repro."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from repro.errors import ReproError
from repro.walk import RESERVED_DIRS

RESERVED = RESERVED_DIRS


def has_git_part(joined: str) -> bool:
    """True when a path (or NUL-joined paths) has a part named .git, in any case: git itself
    refuses to check such a path out, since a .git folder there would be a repository whose
    config (core.fsmonitor, hooks) runs commands."""
    return ".git" in joined.lower() and _GIT_PART.search(joined) is not None


_GIT_PART = re.compile(r"(?:^|/|\0)\.git(?:/|\0|\Z)", re.IGNORECASE)


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
    if has_git_part(norm):
        raise ReproError(f"{what} '{path}' has a part named .git, which git refuses; rename it")
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


def refuse_case_twins(new: Sequence[str], existing: Iterable[str]) -> None:
    """Refuse new outputs that are another output (or hold it, or lie in it) once case, or
    the way an accented letter is encoded, is ignored, and not before: on macOS and Windows,
    whose file systems ignore case by default, two names that differ only by case would be
    one file; on macOS so would ``café`` spelt precomposed (NFC) and decomposed (NFD), as
    macOS's file systems ignore normalization. Checked on every host: the project travels."""
    seen = list(existing)
    for path in new:
        folded = _fold(path)
        for other in seen:
            if overlaps(folded, _fold(other)) and not overlaps(path, other):
                if overlaps(path.casefold(), other.casefold()):
                    differ, where = "by case", "macOS and Windows"
                else:
                    differ, where = "in how their accents are encoded (NFC, NFD)", "macOS"
                raise ReproError(
                    f"outputs '{path}' and '{other}' differ only {differ}, and on {where} "
                    "they would be one file; rename one of them"
                )
        seen.append(path)


def _fold(path: str) -> str:
    """``path`` as a file system that ignores case and normalization compares it (Unicode's
    canonical caseless match)."""
    from unicodedata import normalize

    return normalize("NFD", normalize("NFD", path).casefold())


# -- the path-safety layer ----------------------------------------------------------------------
# Every path repro reads, writes, deletes or mounts in the workspace goes through ``inside``
# at the moment of use. Stage files, manifests, the CLI and config are checked on their text
# first (check_relative); this adds what the text cannot show: a symlink on the way that leads
# out of the project or into .git/.repro. Checking at use is race-free because nothing else
# writes the workspace meanwhile: other repro commands wait for the project lock, a serial run
# has no stage running while repro touches outputs, and parallel runs pause their running
# stages around these steps (Runner.quiet).
_REAL_ROOTS: dict[str, str] = {}


def is_within(path: str, base: str) -> bool:
    """True when the real path ``path`` is ``base`` or lies below it (both made real)."""
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def real_root(root: Path | str) -> str:
    key = os.fspath(root)
    found = _REAL_ROOTS.get(key)
    if found is None:
        found = _REAL_ROOTS[key] = os.path.realpath(key)
    return found


def inside(root: Path, rel: str, what: str, allow_root: bool = False, exact: bool = False) -> Path:
    """``root / rel``, once no symlink along it (the last component's included) leads out of
    the project or into .git/.repro; ``rel`` is a project-relative path checked on its text.
    A last component that is a symlink within the project is the caller's to refuse."""
    base = real_root(root)
    if os.path.normpath(rel) == ".":
        if not allow_root:
            raise ReproError(f"{what} '{rel}' is the project root itself; name a file or folder")
        return root
    real = os.path.realpath(os.path.join(base, rel))
    if real == base or not is_within(real, base):
        raise _escape(base, rel, what, "leads out of the project")
    first = real[len(base) + 1 :].split(os.sep, 1)[0]
    if first in RESERVED:
        raise _escape(base, rel, what, f"leads into {first}/")
    if exact and real != os.path.join(base, os.path.normpath(rel)):
        # Outputs and stage files are named by their real path: through a link they would
        # overlap another stage's output while their texts do not.
        shown = os.path.relpath(real, base)
        raise ReproError(
            f"{what} '{rel}' goes through a symlink and is really '{shown}'; name it by that path"
        )
    # realpath stops at a symlink loop and leaves the link in what it returns
    folder = os.path.dirname(real)
    while folder != base:
        if os.path.islink(folder):
            raise _escape(base, rel, what, "runs into a symlink loop")
        folder = os.path.dirname(folder)
    return root / rel


def _escape(root: str, rel: str, what: str, where: str) -> ReproError:
    """The refusal, naming the first symlink on the way and where it points."""
    parts = rel.split("/")
    for count in range(1, len(parts) + 1):
        prefix = "/".join(parts[:count])
        candidate = os.path.join(root, prefix)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            return ReproError(
                f"{what} '{rel}' {where} through the symlink '{prefix}' -> '{target}'; "
                "remove the link or name the real path inside the project"
            )
    return ReproError(f"{what} '{rel}' {where}; name a path inside the project")


def check_stage_paths(root: Path, paths: list[tuple[str, str, bool]]) -> None:
    """``inside`` for each (path, what, exact) of a stage as loaded: a stage file that names
    a path through a symlink out of the project is refused before anything runs."""
    for rel, what, exact in paths:
        inside(root, rel, what, allow_root=True, exact=exact)
