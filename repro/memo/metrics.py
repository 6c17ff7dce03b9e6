"""``metrics show -T`` (or ``-a``) answered from a memo when nothing it reads can have changed.

What that command prints follows from: the refs and the commits they name (a commit never
changes), the workspace's stage files (they say how each metric is read), the project config,
and which cache objects exist (a cached metric is read from the cache). After a full run, the
memo keeps the output with all of those: every file under .git/refs, packed-refs and
.git/config byte for byte, the stage files byte for byte, and whether each cache object it
looked for was there. The next run, asked the same way, with the same inputs, prints the same
output without starting git or loading the rest of repro. Anything else runs in full.
"""

from __future__ import annotations

import os
import sys

from repro.memo.store import NOT_ANSWERED, Memo
from repro.walk import project_root, same_stage_files

TYPE_CHECKING = False  # typing itself costs the quick path an import
if TYPE_CHECKING:
    from collections.abc import Sequence

    from repro.project import Project
    from repro.stages.stage import Stage

MEMO = Memo("metrics-shown", 1)
_SCOPES = {"-T": 0, "--all-tags": 0, "-a": 1, "--all-branches": 1, "--json": 2}
_QUIET = ("-q", "--quiet")

# (tags, branches, json): how the command was asked.
Asked = tuple[bool, bool, bool]
GitState = tuple[tuple[str, bytes], ...]  # (file below .git, its bytes)
# (git refs and config, repro config, stage file -> bytes, stage file -> outputs)
Inputs = tuple[GitState, tuple[bytes, ...], dict[str, bytes], dict[str, list[str]]]


def eligible(argv: Sequence[str]) -> Asked | None:
    """How ``metrics show`` was asked, when the memo may answer it: only -T/-a/--json (and
    -q) were given; None otherwise."""
    if [word for word in argv if not word.startswith("-")] != ["metrics", "show"]:
        return None
    flags = [False, False, False]
    for word in argv:
        if word.startswith("-") and word not in _QUIET:
            if word not in _SCOPES:
                return None
            flags[_SCOPES[word]] = True
    return (flags[0], flags[1], flags[2]) if flags[0] or flags[1] else None


def answer(how: Asked) -> int:
    """Print what the last run asked the same way printed, when none of its inputs changed;
    NOT_ANSWERED when the full command must run."""
    root = project_root(os.getcwd())
    if root is None:
        return NOT_ANSWERED
    remembered = MEMO.load(root)
    if not isinstance(remembered, dict) or how not in remembered:
        return NOT_ANSWERED
    (git_state, config, stage_bytes, outs), objects, output = remembered[how]
    if (
        _git_state(root) != git_state
        or _config(root) != config
        or any(os.path.exists(path) != found for path, found in objects)
        or not same_stage_files(root, stage_bytes, outs)
    ):
        return NOT_ANSWERED
    sys.stdout.write(output + "\n")
    sys.stdout.flush()
    return 0


class Recorder:
    """Watches a full ``metrics show`` for what the memo needs: its inputs before it read
    anything, and each cache object it looked for."""

    def __init__(self, project: Project, how: Asked | None) -> None:
        self.project = project
        self.how = how
        self.objects: dict[str, bool] = {}
        self.before = None if how is None else _inputs(project)

    def object_bytes(self, md5: str) -> bytes | None:
        """The bytes of a cache object, or None when the cache lacks it; remembered as seen."""
        path = str(self.project.cache.object_path(md5))
        try:
            with open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            self.objects[path] = False
            return None
        self.objects[path] = True
        return data

    def remember(self, output: str) -> None:
        """Keep ``output`` for the next run asked the same way, unless an input moved
        while the command ran."""
        if self.how is None or self.before is None or _inputs(self.project) != self.before:
            return
        remembered = MEMO.load(self.project.root)
        if not isinstance(remembered, dict):
            remembered = {}
        remembered[self.how] = (self.before, tuple(self.objects.items()), output)
        MEMO.store(self.project.root, remembered)


def _inputs(project: Project) -> Inputs | None:
    root = str(project.root)
    git_state = _git_state(root)
    if git_state is None:
        return None
    loaded: dict[str, list[Stage]] = {}
    stage_bytes: dict[str, bytes] = {}
    outs: dict[str, list[str]] = {}
    for path in project.stage_files(loaded):  # with repro.lock files: stages read those too
        try:
            stage_bytes[path] = (project.root / path).read_bytes()
        except OSError:
            return None
        outs[path] = [out for stage in loaded.get(path, []) for out in stage.out_paths()]
    return (git_state, _config(root), stage_bytes, outs)


def _git_state(root: str) -> GitState | None:
    """Every ref file and the git config, byte for byte; None where that does not tell the
    refs (a worktree's .git file, reftable) or a ref is being written (a .lock)."""
    git = os.path.join(root, ".git")
    if not os.path.isdir(git) or os.path.exists(os.path.join(git, "reftable")):
        return None
    if os.path.exists(os.path.join(git, "packed-refs.lock")):
        return None
    found = [(name, _read(os.path.join(git, name))) for name in ("config", "packed-refs")]
    refs = os.path.join(git, "refs")
    for folder, dirs, files in os.walk(refs):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".lock"):
                return None
            path = os.path.join(folder, name)
            found.append((os.path.relpath(path, git), _read(path)))
    return tuple(found)


def _config(root: str) -> tuple[bytes, ...]:
    return tuple(_read(os.path.join(root, ".repro", name)) for name in ("config", "config.local"))


def _read(path: str) -> bytes:
    """A file's bytes; empty when there is none."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return b""
