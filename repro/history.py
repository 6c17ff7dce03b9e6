"""Stage files and tracked files at any revision, read from git objects (GitPython).

Nothing here checks out or touches the work tree: metrics of every tag and gc's view of every
revision come straight from the object database.
"""

from __future__ import annotations

import os
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
            for name, sha in self._refs("refs/heads"):
                found[name] = Revision(name, sha)
        if tags:
            for name, sha in self._refs("refs/tags"):
                found[name] = Revision(name, sha)
        if commits:
            return list(found.values())
        return sorted(found.values(), key=lambda r: _natural(r.label))

    def _refs(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(short name, commit sha) of every ref under ``prefix``, from one git call.

        Refs of trees or blobs are skipped: they have no stage files.
        """
        # %(*objectname) is the object an annotated tag points at; empty for other refs.
        listing = self.repo.git.for_each_ref(
            "--format=%(refname:short)%00%(objectname)%00%(objecttype)%00"
            "%(*objectname)%00%(*objecttype)",
            prefix,
        )
        for line in listing.splitlines():
            name, sha, kind, target, target_kind = line.split("\0")
            if kind == "commit":
                yield name, sha
            elif target_kind == "commit":
                yield name, target
            elif target_kind == "tag":  # a tag of a tag: rare, let git peel it
                yield name, self.repo.commit(name).hexsha

    def stages_at(self, revision: Revision) -> list[Stage]:
        """Every stage file of a revision; a malformed one at an old revision is skipped."""
        if revision.sha is None:
            from repro.project import Project

            return Project(self.root).stages()
        stages = []
        for path, blob in self._files(self._root_tree(revision.sha), ""):
            if not path.endswith(STAGE_SUFFIX):
                continue
            key = (path, blob)
            if key not in self._stages:
                try:
                    text = self._object(blob).decode("utf-8")
                    self._stages[key] = stage_mod.parse(path, text)
                except (ReproError, UnicodeDecodeError):
                    self._stages[key] = None
            parsed = self._stages[key]
            if parsed is not None:
                stages.append(parsed)
        return stages

    def read(self, revision: Revision, path: str) -> bytes | None:
        """A file's bytes at a revision (the work tree for the workspace); None when absent."""
        if revision.sha is None:
            try:
                return (self.root / path).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                return None
        tree = self._root_tree(revision.sha)
        *folders, name = path.split("/")
        for folder in folders:
            entry = self._tree(tree).get(folder)
            if entry is None or not entry[0]:
                return None
            tree = entry[1]
        entry = self._tree(tree).get(name)
        if entry is None or entry[0]:
            return None
        return self._object(entry[1])

    # -- the object database, read with a tree cache ------------------------------------------
    # Tags of one project share most of their trees and all unchanged stage files: each tree
    # is parsed once and each stage file version once, however many revisions hold them.

    @cached_property
    def _trees(self) -> dict[bytes, dict[str, tuple[bool, bytes]]]:
        return {}

    @cached_property
    def _stages(self) -> dict[tuple[str, bytes], Stage | None]:
        return {}

    def _object(self, binsha: bytes) -> bytes:
        return bytes(self.repo.odb.stream(binsha).read())

    def _root_tree(self, commit_sha: str) -> bytes:
        header = self._object(bytes.fromhex(commit_sha)).split(b"\n", 1)[0]
        return bytes.fromhex(header.removeprefix(b"tree ").decode("ascii"))

    def _tree(self, binsha: bytes) -> dict[str, tuple[bool, bytes]]:
        """A tree's entries: name -> (is a folder, object sha); submodules are left out."""
        if binsha not in self._trees:
            entries: dict[str, tuple[bool, bytes]] = {}
            data = self._object(binsha)
            at = 0
            while at < len(data):
                space = data.index(b" ", at)
                nul = data.index(b"\0", space)
                mode = data[at:space]
                sha = data[nul + 1 : nul + 21]
                if mode != b"160000":
                    entries[os.fsdecode(data[space + 1 : nul])] = (mode == b"40000", sha)
                at = nul + 21
            self._trees[binsha] = entries
        return self._trees[binsha]

    def _files(self, tree: bytes, prefix: str) -> Iterator[tuple[str, bytes]]:
        """(path, blob sha) of every file below ``tree``."""
        for name, (is_folder, sha) in sorted(self._tree(tree).items()):
            if is_folder:
                yield from self._files(sha, f"{prefix}{name}/")
            else:
                yield f"{prefix}{name}", sha
