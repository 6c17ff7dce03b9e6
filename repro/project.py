"""A repro project: a git work tree with a .repro/ folder, and the parts hung off it."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from repro import stage as stage_mod
from repro import walk
from repro.config import Config
from repro.errors import ReproError
from repro.lock import ProjectLock
from repro.paths import overlaps
from repro.stage import Stage

if TYPE_CHECKING:  # imported where first used: metrics and config need none of them
    from repro.cache import Cache
    from repro.hashing import Hasher, Notify
    from repro.state import StateDB

REPRO_DIR = ".repro"
GITIGNORE = """\
# Everything here but config is per machine.
/config.local
/cache
/tmp
/state.db
/state.db-*
/lock
"""


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding .repro/."""
    found = walk.project_root(str(start))
    if found is None:
        raise ReproError(
            f"{start} is not in a repro project; run 'repro init' at the top of a git repository"
        )
    return Path(found)


def find_git_root(start: Path) -> Path | None:
    current = start.resolve()
    for folder in (current, *current.parents):
        if (folder / ".git").exists():
            return folder
    return None


class Project:
    """Paths, config, cache and state of one project; parts are built on first use."""

    def __init__(self, root: Path, notify: Notify | None = None, progress: bool = True) -> None:
        self.root = root
        self.repro_dir = root / REPRO_DIR
        self.notify = notify
        self.progress = progress
        stage_mod.keep_parsed_in(self.repro_dir / "tmp" / "parsed-stages")

    @classmethod
    def find(cls, cwd: Path, notify: Notify | None = None, progress: bool = True) -> Project:
        return cls(find_root(cwd), notify, progress)

    @cached_property
    def config(self) -> Config:
        return Config(self.repro_dir)

    @cached_property
    def cache_dir(self) -> Path:
        configured = self.config.get("cache.dir")
        if not configured:
            return self.repro_dir / "cache"
        path = Path(os.path.expanduser(configured))
        return path if path.is_absolute() else (self.repro_dir / path).resolve()

    @cached_property
    def cache(self) -> Cache:
        from repro.cache import Cache

        return Cache(self.cache_dir, self.root, self.config.get("cache.type") or "hardlink")

    @cached_property
    def state(self) -> StateDB:
        from repro.state import StateDB

        (self.repro_dir / "tmp").mkdir(exist_ok=True)
        return StateDB(self.repro_dir / "state.db")

    @cached_property
    def hasher(self) -> Hasher:
        from repro.hashing import Hasher

        return Hasher(self.state, notify=self.notify, progress=self.progress)

    @property
    def tmp_dir(self) -> Path:
        path = self.repro_dir / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def lock(self, wait: bool = False) -> ProjectLock:
        return ProjectLock(self.repro_dir / "lock", wait=wait)

    def stage_files(self) -> list[str]:
        """Every stage file in the work tree, without walking into outputs or .git/.repro."""

        def outs_of(path: str) -> list[str]:
            try:
                return stage_mod.load(self.root, path).out_paths()
            except ReproError:  # a broken stage file is reported when it is loaded for real
                return []

        return walk.stage_files(str(self.root), outs_of)

    def stages(self) -> list[Stage]:
        return [stage_mod.load(self.root, path) for path in self.stage_files()]

    def stage_for_out(self, path: str) -> Stage | None:
        for stage in self.stages():
            if any(overlaps(path, out) for out in stage.out_paths()):
                return stage
        return None

    def close(self) -> None:
        if "state" in self.__dict__:
            self.state.close()
