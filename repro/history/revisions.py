"""Stage files and tracked files at any revision, read from git objects with the git CLI.

Nothing here checks out or touches the work tree: metrics of every tag and gc's view of every
revision come straight from the object database. Objects are read in rounds, one
``git cat-file --batch`` for all revisions at once (root trees, then each level of folders,
then stage files, then metric files), so a hundred tags cost a handful of git processes.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from repro.errors import ReproError
from repro.paramfiles import DEFAULT_FILE

if TYPE_CHECKING:
    from repro.stages.stage import Stage

WORKSPACE = "workspace"

# A hook or a wrapper script may export these for its own repository; the project's root alone
# says which repository to read.
_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")

Tree = dict[str, tuple[bool, str]]  # name -> (is a folder, object id)
# A stage file below a tree: (path, blob, and for a repro.yaml the blob of its repro.lock and
# the tree of its folder, where the vars files it reads are).
StageFile = tuple[str, str, str | None, str | None]


class Revision(NamedTuple):
    label: str  # what the user sees: workspace, a tag, a branch, a sha
    sha: str | None  # the commit; None for the workspace


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _parse_tree(data: bytes, id_size: int) -> Tree:
    """A raw tree object's entries; submodules are left out (their commits live elsewhere)."""
    entries: Tree = {}
    at = 0
    while at < len(data):
        space = data.index(b" ", at)
        nul = data.index(b"\0", space)
        end = nul + 1 + id_size
        mode = data[at:space]
        if mode != b"160000":
            entries[os.fsdecode(data[space + 1 : nul])] = (
                mode == b"40000",
                data[nul + 1 : end].hex(),
            )
        at = end
    return entries


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class History:
    """The revisions of the git repository at ``root`` and the files in them.

    Trees and parsed stage files are kept by object id for the life of the object: tags of one
    project share most of their folders and stage files, and each is read and parsed once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._env: dict[str, str] | None = None
        self._root_trees: dict[str, str] = {}  # commit -> its root tree
        self._trees: dict[str, Tree] = {}  # holds every tree below each tree it holds
        self._stage_files: dict[str, list[StageFile]] = {}  # tree -> the stage files below
        self._stages: dict[StageFile, list[Stage]] = {}  # none of a broken file
        self._vars: dict[str, bytes] = {}  # blob -> bytes of the default vars files read

    def resolve(self, rev: str) -> Revision:
        """The commit a user's revision name stands for (``workspace`` for the work tree)."""
        if rev == WORKSPACE:
            return Revision(WORKSPACE, None)
        # A leading dash would be read as an option; no revision name starts with one.
        if not rev.startswith("-") and "\n" not in rev and "\0" not in rev:
            found = self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
            if found.returncode == 0:
                return Revision(rev, found.stdout.decode("ascii").strip())
        raise ReproError(
            f"'{rev}' is not a revision of this repository; name a tag, branch or commit"
        )

    def revisions(
        self, branches: bool, tags: bool, commits: bool, experiments: bool = False
    ) -> list[Revision]:
        """The revisions a scope flag names, in a stable, human order; ``experiments`` adds
        every experiment and queued one (commits under refs/exps), in the same git call."""
        found: dict[str, Revision] = {}
        if commits:
            for sha in self._git("rev-list", "--all").stdout.decode("ascii").split():
                found[sha] = Revision(sha, sha)
        scopes = (("refs/heads", branches), ("refs/tags", tags), ("refs/exps", experiments))
        prefixes = [prefix for prefix, on in scopes if on]
        if prefixes:
            for name, sha in self._refs(prefixes):
                found[name] = Revision(name, sha)
        if commits:
            return list(found.values())
        return sorted(found.values(), key=lambda r: _natural(r.label))

    def _refs(self, prefixes: list[str]) -> list[tuple[str, str]]:
        """(short name, commit) of every ref under ``prefixes``; refs of trees or blobs are left
        out: they have no stage files."""
        # %(*objectname) is the object an annotated tag points at; empty for other refs.
        listing = self._git(
            "for-each-ref",
            "--format=%(refname:short)%00%(refname)%00%(objectname)%00%(objecttype)%00"
            "%(*objectname)%00%(*objecttype)",
            *prefixes,
        ).stdout
        refs: list[tuple[str, str]] = []
        tags_of_tags: list[tuple[int, str]] = []  # (where in refs, full ref name)
        for line in listing.splitlines():
            name, full, sha, kind, target, target_kind = os.fsdecode(line).split("\0")
            if kind == "commit":
                refs.append((name, sha))
            elif target_kind == "commit":
                refs.append((name, target))
            elif target_kind == "tag":  # rare: git peels them all in one more call, below
                tags_of_tags.append((len(refs), full))
                refs.append((name, ""))
        if tags_of_tags:
            peeled = self._cat([f"{full}^{{commit}}" for _, full in tags_of_tags])
            for (at, _), found in zip(tags_of_tags, peeled, strict=True):
                refs[at] = (refs[at][0], found[0] if found is not None else "")
        return [(name, sha) for name, sha in refs if sha]  # a tag of a tag of a tree: no commit

    def prefetch(self, revisions: Iterable[Revision]) -> None:
        """Read the trees and stage files of ``revisions`` in a few batched git calls."""
        shas = {r.sha for r in revisions if r.sha is not None}
        self._load_trees(shas)
        wanted = sorted(
            {key for sha in shas for key in self._stages_below(self._root_trees[sha])}
            - self._stages.keys()
        )
        blobs = {blob for _, file, lock, _ in wanted for blob in (file, lock) if blob}
        # Each repro.yaml reads the params.yaml beside it as vars; experiments differ in it
        # alone, so these are read in the same call rather than one call per revision.
        default_vars = {
            blob
            for _, _, _, folder in wanted
            if folder is not None and (blob := self._blob_in(folder, DEFAULT_FILE)) is not None
        }
        ordered = sorted(blobs | default_vars)
        contents = dict(zip(ordered, self._cat(ordered), strict=True))
        for blob in default_vars:
            if (found := contents[blob]) is not None:
                self._vars[blob] = found[1]
        for key in wanted:
            path, blob, lock, folder = key
            texts = []
            for oid in (blob, lock):
                found = contents[oid] if oid else None
                if oid and found is None:
                    raise self._missing(oid, path)
                texts.append(found[1] if found is not None else None)
            try:
                self._stages[key] = self._parse(path, texts[0] or b"", texts[1], folder)
            except (ReproError, UnicodeDecodeError):
                self._stages[key] = []  # a broken stage file at an old revision

    def _parse(self, path: str, data: bytes, lock: bytes | None, folder: str | None) -> list[Stage]:
        """The stages of a stage file's bytes (and of its repro.lock's, for a repro.yaml)."""
        from repro.stages import stage as stage_mod
        from repro.stages.pipeline_file import parse

        if folder is None:
            return [stage_mod.parse(path, data.decode("utf-8"))]

        def read_vars(name: str) -> dict[str, Any]:
            from repro.paramfiles import parse as parse_params

            blob = self._blob_in(folder, name)
            if blob is None:
                raise FileNotFoundError(name)
            data = self._vars.get(blob)
            if data is None:
                found = self._cat([blob])[0]
                if found is None:
                    raise FileNotFoundError(name)
                data = found[1]
            return parse_params(data, name)

        lock_text = lock.decode("utf-8") if lock is not None else None
        return parse(path, data.decode("utf-8"), lock_text, read_vars)

    def stages_at(self, revision: Revision) -> list[Stage]:
        """Every stage file of a revision; a malformed one at an old revision is skipped."""
        if revision.sha is None:
            from repro.project import Project

            return Project(self.root).stages()
        self.prefetch([revision])
        keys = self._stages_below(self._root_trees[revision.sha])
        return [stage for key in keys for stage in self._stages[key]]

    def read(self, revision: Revision, path: str) -> bytes | None:
        """A file's bytes at a revision (the work tree for the workspace); None when absent."""
        return self.read_many([(revision, path)])[0]

    def read_many(self, wanted: Sequence[tuple[Revision, str]]) -> list[bytes | None]:
        """Each (revision, path)'s bytes as ``read`` gives them; all blobs in one git call."""
        self._load_trees({r.sha for r, _ in wanted if r.sha is not None})
        blob_ids = [self._blob(r.sha, path) if r.sha else None for r, path in wanted]
        unique = sorted({blob for blob in blob_ids if blob is not None})
        contents = dict(zip(unique, self._cat(unique), strict=True))
        result: list[bytes | None] = []
        for (revision, path), blob in zip(wanted, blob_ids, strict=True):
            if revision.sha is None:
                result.append(_read_file(self.root / path))
            else:
                found = contents[blob] if blob is not None else None
                result.append(found[1] if found is not None else None)
        return result

    # -- trees ---------------------------------------------------------------------------------

    def _load_trees(self, shas: Iterable[str]) -> None:
        """Read the whole tree of each commit not read yet: one git call per level of folders."""
        commits = sorted(set(shas) - self._root_trees.keys())
        if not commits:
            return
        fresh: list[str] = []
        roots = self._cat([f"{sha}^{{tree}}" for sha in commits])
        for sha, found in zip(commits, roots, strict=True):
            if found is None:
                raise self._missing(sha, "a commit")
            tree, data = found
            self._root_trees[sha] = tree
            if tree not in self._trees:
                self._trees[tree] = _parse_tree(data, len(tree) // 2)
                fresh.append(tree)
        while fresh:
            below = {oid for tree in fresh for folder, oid in self._trees[tree].values() if folder}
            pending = sorted(below - self._trees.keys())
            for tree, found in zip(pending, self._cat(pending), strict=True):
                if found is None:
                    raise self._missing(tree, "a folder")
                self._trees[tree] = _parse_tree(found[1], len(tree) // 2)
            fresh = pending

    def _stages_below(self, tree: str) -> list[StageFile]:
        """Every stage file below a loaded tree, in path order."""
        from repro.walk import LOCK_FILE, PIPELINE_FILE, STAGE_SUFFIX

        listed = self._stage_files.get(tree)
        if listed is None:
            listed = []
            entries = self._trees[tree]
            for name, (is_folder, oid) in sorted(entries.items()):
                if is_folder:
                    listed += [
                        (f"{name}/{path}", blob, lock, folder)
                        for path, blob, lock, folder in self._stages_below(oid)
                    ]
                elif name.endswith(STAGE_SUFFIX):
                    listed.append((name, oid, None, None))
                elif name == PIPELINE_FILE:
                    is_lock_folder, lock = entries.get(LOCK_FILE, (True, ""))
                    listed.append((name, oid, None if is_lock_folder else lock, tree))
            self._stage_files[tree] = listed
        return listed

    def _blob(self, sha: str, path: str) -> str | None:
        """The object id of the file at ``path`` in a loaded commit; None if there is none."""
        return self._blob_in(self._root_trees[sha], path)

    def _blob_in(self, tree: str, path: str) -> str | None:
        """The object id of the file at ``path`` below a loaded tree; None if there is none."""
        *folders, name = path.split("/")
        for folder in folders:
            entry = self._trees[tree].get(folder)
            if entry is None or not entry[0]:
                return None
            tree = entry[1]
        entry = self._trees[tree].get(name)
        return entry[1] if entry is not None and not entry[0] else None

    # -- git -----------------------------------------------------------------------------------

    def _cat(self, requests: Sequence[str]) -> list[tuple[str, bytes] | None]:
        """(object id, bytes) for each object name; None where git has none. One git call."""
        if not requests:
            return []
        lines = b"".join(os.fsencode(name) + b"\n" for name in requests)
        out = self._git("cat-file", "--batch", stdin=lines).stdout
        found: list[tuple[str, bytes] | None] = []
        at = 0
        for _ in requests:
            end = out.index(b"\n", at)
            header = out[at:end]
            at = end + 1
            # "<name> missing" or "<name> ambiguous"; else "<id> <type> <size>", then the bytes.
            if header.endswith((b" missing", b" ambiguous")):
                found.append(None)
                continue
            oid, _kind, size = header.split(b" ")
            found.append((oid.decode("ascii"), out[at : at + int(size)]))
            at += int(size) + 1
        return found

    def _git(
        self, *args: str, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        # subprocess.run feeds stdin and drains stdout together: a large batch cannot deadlock.
        if self._env is None:  # the first call
            if not (self.root / ".git").exists():
                raise ReproError(f"{self.root} is not a git repository; run 'git init' there")
            self._env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
        try:
            done = subprocess.run(
                ["git", *args], cwd=self.root, env=self._env, input=stdin, capture_output=True
            )
        except FileNotFoundError:
            raise ReproError("git is not installed; install it to read past revisions") from None
        if check and done.returncode != 0:
            message = done.stderr.decode(errors="replace")
            if "not a git repository" in message:  # a broken .git, or one git does not accept
                raise ReproError(f"{self.root} is not a git repository; run 'git init' there")
            lines = message.strip().splitlines()
            reason = lines[-1] if lines else f"exit code {done.returncode}"
            raise ReproError(
                f"git {args[0]} failed in {self.root}: {reason}; check it with 'git fsck'"
            )
        return done

    def _missing(self, name: str, what: str) -> ReproError:
        return ReproError(
            f"git object {name} ({what}) is missing from {self.root}; the clone may be shallow "
            "or damaged: run 'git fetch --unshallow' or 'git fsck'"
        )
