"""Another repository that tracks data with repro, at one revision: its stage files, its git
files and where its data is stored, read from its git objects without a checkout.

A folder on this machine is read in place; any other URL is fetched, that one commit alone
(``git fetch --depth 1``), into a scratch repository. Only the source's tracked config is read:
its ``config.local`` (secrets, machine paths) never is, and the credentials for its data remote
come from this machine's standard places.
"""

from __future__ import annotations

import configparser
import os
import posixpath
import subprocess
from pathlib import Path
from typing import NamedTuple

from repro.config import PRIVATE_OPTIONS
from repro.errors import ReproError
from repro.history.revisions import History, Revision
from repro.objects.digest import bytes_md5
from repro.objects.ids import is_manifest
from repro.objects.store import Cache
from repro.paths import check_relative
from repro.remotes import known_options, open_remote
from repro.remotes.base import Remote
from repro.stages.deps.imported import git_env, resolve
from repro.stages.stage import Stage

CONFIG = ".repro/config"
DEFAULT_CACHE = ".repro/cache"


class Found(NamedTuple):
    """What a path of the source is: tracked data (``stored`` is the output holding it, and
    ``within`` its place in that folder, if it is not the whole output) or a git file."""

    path: str
    stored: str | None = None  # the object id of the output holding it
    within: str | None = None  # relative to that output's folder
    data: bytes | None = None  # a git file's bytes

    @property
    def object_id(self) -> str | None:
        """The object that the path is, when known without reading a manifest."""
        if self.data is not None:
            return bytes_md5(self.data)
        return self.stored if self.within is None else None


def local_root(url: str) -> Path | None:
    """The work tree of a repository at ``url`` when it is a folder here; None otherwise."""
    path = url.removeprefix("file://") if url.startswith("file://") else url
    if "://" in path or not os.path.isdir(os.path.join(path, ".git")):
        return None
    return Path(os.path.abspath(path))


def as_recorded(url: str) -> str:
    """The URL as an import records it: a folder here by its absolute path (the stage file is
    read from anywhere in the project), anything else as given."""
    if "://" in url or ":" in url.split("/", 1)[0]:  # a URL, or scp-like host:path
        return url
    return os.path.abspath(url)


class Source:
    """A revision of the repository at ``url``, its git objects under ``scratch`` unless it is
    a folder here."""

    def __init__(self, url: str, rev: str | None, scratch: Path) -> None:
        self.url = url
        self.rev = rev
        self.commit = resolve(url, rev)
        self.root = local_root(url)
        repo = self.root or self._fetch(scratch / "git")
        self.repo = repo
        self.history = History(repo)
        self.revision = Revision(rev or "HEAD", self.commit)
        self.label = f"{url}@{rev or 'HEAD'}"
        text = self.history.read(self.revision, CONFIG)
        if text is None:
            raise ReproError(
                f"'{url}' is not a repro repository (no {CONFIG} at {rev or 'HEAD'}); "
                "name a repository made with 'repro init'"
            )
        self.config = configparser.RawConfigParser()
        self.config.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            self.config.read_string(text.decode("utf-8"))
        except (configparser.Error, UnicodeDecodeError):
            raise ReproError(
                f"{CONFIG} of {self.label} is malformed; ask its maintainers to fix it"
            ) from None
        self._stages: list[Stage] | None = None

    def _fetch(self, repo: Path) -> Path:
        """The one commit, fetched into a fresh repository at ``repo``."""
        repo.mkdir(parents=True)
        for args in (
            ["init", "-q"],
            ["fetch", "-q", "--depth", "1", "--no-tags", "--", self.url, self.commit],
        ):
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, env=git_env())
            if done.returncode != 0:
                lines = done.stderr.decode(errors="replace").strip().splitlines()
                reason = lines[-1].removeprefix("fatal: ") if lines else "no reason given"
                raise ReproError(f"cannot fetch {self.commit[:7]} from '{self.url}' ({reason})")
        return repo

    def stages(self) -> list[Stage]:
        if self._stages is None:
            self._stages = self.history.stages_at(self.revision)
        return self._stages

    def find(self, path: str) -> Found:
        """What ``path`` (relative to the source's root) is at this revision."""
        rel = check_relative(path.strip("/") or ".", "path")
        for stage in self.stages():
            for out in stage.outs:
                if not out.cache:  # in git, read below
                    continue
                if rel == out.path or (rel.startswith(out.path + "/") and out.md5):
                    if out.md5 is None:
                        raise ReproError(
                            f"'{rel}' has no recorded version in {self.label}; its maintainers "
                            "must run and commit the stage that makes it"
                        )
                    if rel != out.path and not is_manifest(out.md5):
                        break
                    within = None if rel == out.path else rel[len(out.path) + 1 :]
                    return Found(rel, out.md5, within)
        data = self.history.read(self.revision, rel)
        if data is None:
            raise ReproError(
                f"'{rel}' is neither data repro tracks nor a file git tracks in {self.label}; "
                f"'repro ls {self.url}' lists what is there"
            )
        return Found(rel, data=data)

    def storage(self, object_id: str) -> Remote:
        """Where the source keeps ``object_id``: its cache when it is a folder here that holds
        it whole, else its default remote."""
        if self.root is not None:
            cache_dir = self.root / DEFAULT_CACHE
            if self.config.has_option("cache", "dir"):
                cache_dir = self.root / ".repro" / self.config.get("cache", "dir")
            if cache_dir.is_dir() and not Cache(cache_dir).missing(object_id):
                return open_remote(str(cache_dir), {})
        return self.remote()

    def remote(self) -> Remote:
        """The source's default remote, as its tracked config names it."""
        name = self.config.get("core", "remote", fallback=None)
        section = f'remote "{name}"'
        if name is None or not self.config.has_option(section, "url"):
            raise ReproError(
                f"{self.label} names no default remote in {CONFIG}, so its data cannot be "
                "fetched; ask its maintainers to add one ('repro remote add -d') and push"
            )
        options = dict(self.config.items(section))
        url = options.pop("url")
        if "://" not in url and not os.path.isabs(url):
            if self.root is None:
                raise ReproError(
                    f"the default remote of {self.label} is the folder '{url}', relative to a "
                    "clone of it: clone it and import from the clone's folder"
                )
            url = os.path.normpath(self.root / ".repro" / url)
        allowed = known_options(url) - PRIVATE_OPTIONS
        return open_remote(url, {k: v for k, v in options.items() if k in allowed})

    def git_files(self, prefix: str, recursive: bool) -> list[tuple[str, bool, int | None]]:
        """(path, is a folder, size) of what git tracks under ``prefix`` ("" for the root)."""
        args = ["ls-tree", "-l", "-z", *(["-r"] if recursive else []), self.commit]
        if prefix:
            args += ["--", prefix + "/"]
        done = subprocess.run(["git", *args], cwd=self.repo, capture_output=True, env=git_env())
        if done.returncode != 0:
            raise ReproError(f"cannot list '{prefix}' in {self.label}; check the path")
        found = []
        for line in done.stdout.split(b"\0"):
            if not line:
                continue
            meta, _, name = line.partition(b"\t")
            _mode, kind, _oid, size = meta.split()
            if kind == b"commit":  # a submodule: its files live elsewhere
                continue
            path = os.fsdecode(name)
            is_folder = kind == b"tree"
            found.append((path, is_folder, None if is_folder else int(size)))
        return found


def below(path: str, prefix: str) -> str | None:
    """``path`` relative to the folder ``prefix`` ("" for the root); None if not below it."""
    if not prefix:
        return path
    if path.startswith(prefix + "/"):
        return path[len(prefix) + 1 :]
    return None


def name_of(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))
