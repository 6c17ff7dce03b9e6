"""Stage files and tracked files at any revision, read from git objects (GitPython).

Nothing here checks out or touches the work tree: metrics of every tag and gc's view of every
revision come straight from the object database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from repro import stage as stage_mod
from repro.errors import ReproError
from repro.stage import STAGE_SUFFIX, Stage

WORKSPACE = "workspace"


@dataclass(frozen=True)
class Revision:
    label: str  # what the user sees: workspace, a tag, a branch, a sha
    sha: str | None  # None for the workspace


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


class History:
    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def repo(self) -> Any:
        import git

        try:
            return git.Repo(self.root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise ReproError(f"{self.root} is not a git repository") from None

    def resolve(self, rev: str) -> Revision:
        import git

        if rev == WORKSPACE:
            return Revision(WORKSPACE, None)
        try:
            return Revision(rev, self.repo.commit(rev).hexsha)
        except (git.BadName, ValueError, git.GitCommandError):
            raise ReproError(f"'{rev}' is not a revision of this repository") from None

    def revisions(self, branches: bool, tags: bool, commits: bool) -> list[Revision]:
        """The revisions a scope flag names, in a stable, human order."""
        found: dict[str, Revision] = {}
        if commits:
            try:
                for commit in self.repo.iter_commits("--all"):
                    found[commit.hexsha] = Revision(commit.hexsha, commit.hexsha)
            except ValueError:
                pass  # no commits yet
        if branches:
            for head in self.repo.heads:
                found[head.name] = Revision(head.name, head.commit.hexsha)
        if tags:
            for tag in self.repo.tags:
                try:
                    found[tag.name] = Revision(tag.name, tag.commit.hexsha)
                except ValueError:
                    continue  # a tag of a tree or blob has no stage files
        if commits:
            return list(found.values())
        return sorted(found.values(), key=lambda r: _natural(r.label))

    def stages_at(self, revision: Revision) -> list[Stage]:
        """Every stage file of a revision; a malformed one at an old revision is skipped."""
        if revision.sha is None:
            from repro.project import Project

            return Project(self.root).stages()
        stages = []
        for path, data in self._stage_blobs(revision.sha):
            try:
                stages.append(stage_mod.parse(path, data.decode("utf-8")))
            except (ReproError, UnicodeDecodeError):
                continue
        return stages

    def _stage_blobs(self, sha: str) -> Iterator[tuple[str, bytes]]:
        tree = self.repo.commit(sha).tree
        for item in tree.traverse(
            predicate=lambda i, _d: i.type == "blob" and i.path.endswith(STAGE_SUFFIX)
        ):
            yield item.path, item.data_stream.read()

    def read(self, revision: Revision, path: str) -> bytes | None:
        """A file's bytes at a revision (the work tree for the workspace); None when absent."""
        if revision.sha is None:
            try:
                return (self.root / path).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                return None
        try:
            blob = self.repo.commit(revision.sha).tree / path
        except KeyError:
            return None
        if blob.type != "blob":
            return None
        return bytes(blob.data_stream.read())
