"""Data imported from another repository: a dependency on a revision of that repository, so
that ``status`` says when the source moved and ``repro update`` knows where to look.

A stage file made by ``repro import`` lists one entry, before ``outs``::

    import:
    - url: ssh://host/srv/registry.git    # any URL git can clone, or a local path
      path: data/images                   # in that repository
      rev: main                           # what the user asked for; absent: its HEAD
      rev_lock: 3f2a…                     # the commit the data came from

The value is the commit ``rev`` names now (one ``git ls-remote``; none when ``rev`` is a full
commit id): the source moved when it differs from ``rev_lock``. Only url, path and rev define
the stage, so a newer commit makes it changed through its dependency, not a new stage. An
import reads no workspace path: its ``path`` is empty, so the graph gives it no upstream stage
and the quick status memo, told that no file decides its value, never answers for it.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, NamedTuple

from repro.errors import ReproError
from repro.stages import fields
from repro.stages.deps.base import Absent, Dependency, Probe

_COMMIT = re.compile(r"[0-9a-f]{40}")
# Long enough for a slow link, short enough that a dead host does not hang `status` for ever.
LS_REMOTE_TIMEOUT = 120
# A hook or a wrapper script may export these for its own repository; they must not redirect
# git's look at another one.
_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")


def git_env() -> dict[str, str]:
    """The environment for git calls on a source repository: never a password prompt (the
    credentials come from this machine's ssh agent, ssh config or credential helper)."""
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def resolve(url: str, rev: str | None) -> str:
    """The commit ``rev`` (a branch, a tag, a full commit id; None: HEAD) names in the
    repository at ``url`` now."""
    if rev is not None and _COMMIT.fullmatch(rev):
        return rev
    wanted = rev or "HEAD"
    if wanted.startswith("-") or "\n" in wanted:
        raise ReproError(f"'{wanted}' is not a revision name; name a branch, tag or commit")
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--", url, wanted],
            capture_output=True,
            env=git_env(),
            timeout=LS_REMOTE_TIMEOUT,
        )
    except FileNotFoundError:
        raise ReproError("git is not installed; install it to use other repositories") from None
    except subprocess.TimeoutExpired:
        raise ReproError(
            f"'{url}' did not answer in {LS_REMOTE_TIMEOUT} s; check the URL and the network"
        ) from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[0].removeprefix("fatal: ") if lines else f"exit code {done.returncode}"
        raise ReproError(f"cannot read the git repository '{url}' ({reason}); check the URL")
    refs = {}
    for line in done.stdout.decode(errors="replace").splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    # A branch before a tag of the same name (as git checkout does); a tag's commit, not itself.
    for name in (f"refs/heads/{wanted}", f"refs/tags/{wanted}^{{}}", f"refs/tags/{wanted}", wanted):
        if name in refs:
            return refs[name]
    raise ReproError(
        f"'{wanted}' is not a branch or tag of '{url}'; name one, or a full 40-digit commit id"
    )


def short(commit: str | None) -> str:
    return (commit or "nothing")[:7]


class ImportDep(NamedTuple):
    url: str
    source: str  # the path in the source repository, POSIX
    rev: str | None = None  # what was asked for; None: the source's HEAD
    rev_lock: str | None = None  # the commit imported; None before the first import

    @property
    def path(self) -> str:
        return ""  # no workspace path: see the module's docstring

    @property
    def name(self) -> str:
        return f"{self.url}#{self.source}"

    @property
    def recorded(self) -> str | None:
        return self.rev_lock

    def current(self, probe: Probe) -> str:
        try:
            return resolve(self.url, self.rev)
        except ReproError as exc:
            raise Absent(
                f"Source of import '{self.source}' is unreachable: {exc}",
                "retry when it can be reached",
            ) from None

    def change(self, stage: str, now: Any) -> str | None:
        if now == self.rev_lock:
            return None
        return (
            f"Import '{self.source}' of '{stage}' moved: {self.rev or 'HEAD'} of {self.url} is "
            f"now {short(now)}, imported {short(self.rev_lock)}; run 'repro update {stage}'"
        )

    def recorded_as(self, value: Any) -> ImportDep:
        return self._replace(rev_lock=value)

    def watched(self) -> None:
        return None


_ENTRY_KEYS = frozenset(("url", "path", "rev", "rev_lock"))


class Imports:
    """How stage files list an import: ``import: [{url, path, rev, rev_lock}]``."""

    FIELD: str = "import"
    TYPE: type = ImportDep

    def load(self, stage_dir: str, raw: Any) -> tuple[Dependency, ...]:
        deps = []
        for entry in fields.entries(raw, "import", "an import", _ENTRY_KEYS):
            rev_lock = fields.optional_text(entry.get("rev_lock"), "import rev_lock")
            if rev_lock is not None and not _COMMIT.fullmatch(rev_lock):
                raise fields.Malformed("import rev_lock must be a 40-digit commit id")
            deps.append(
                ImportDep(
                    fields.text(entry.get("url"), "import url"),
                    fields.text(entry.get("path"), "import path"),
                    fields.optional_text(entry.get("rev"), "import rev"),
                    rev_lock,
                )
            )
        return tuple(deps)

    def dump(self, stage_dir: str, deps: tuple[Dependency, ...]) -> list[Any]:
        entries = []
        for dep in deps:
            assert isinstance(dep, ImportDep)
            entry = {"url": dep.url, "path": dep.source, "rev": dep.rev, "rev_lock": dep.rev_lock}
            entries.append(fields.drop_none(entry))
        return entries

    def defines(self, deps: tuple[Dependency, ...]) -> Any:
        return [[d.url, d.source, d.rev] for d in deps if isinstance(d, ImportDep)]
