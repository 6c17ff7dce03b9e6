"""A repro project: a git work tree with a .repro/ folder, and the parts hung off it."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from repro import walk
from repro.config import Config
from repro.errors import ReproError
from repro.lock import ProjectLock
from repro.memo.parsed import PARSED
from repro.paths import check_stage_paths, is_within, overlaps, real_root
from repro.stages import stage as stage_mod
from repro.stages.stage import Stage
from repro.teardown import when_done

if TYPE_CHECKING:  # imported where first used: metrics and config need none of them
    from repro.memo.state import StateDB
    from repro.objects.store import Cache
    from repro.workspace.hashing import Hasher, Notify, Observer
    from repro.workspace.ledger import Ledger
    from repro.workspace.materialise import Materialiser

REPRO_DIR = ".repro"
# In .repro: the links ledger (workspace/ledger.py), where the hash memo's rows were kept too
# before they moved to .repro/tmp.
LEDGER_FILE = "state.db"
GITIGNORE = """\
# Everything here but config is per machine.
/config.local
/cache
/tmp
/state.db
/state.db-*
/lock
"""


# Pseudo filesystems and device nodes: a cache there would lose data or hang.
_NOT_A_DISK = ("/proc", "/sys")


def _check_cache_dir(root: Path, configured: str, path: Path) -> None:
    """Refuse a cache.dir that stages could write, or that is no folder on a disk.

    Inside the work tree (but outside .repro) the cache would be mounted read-write into
    every stage and be seen by git: refused, not hidden.
    """
    real = os.path.realpath(path)
    base = real_root(root)
    hint = "set cache.dir to a folder on a disk outside the project, or unset it"
    if is_within(real, base) and not real.startswith(os.path.join(base, REPRO_DIR) + os.sep):
        raise ReproError(
            f"cache.dir '{configured}' lies inside the project, where stages could change it "
            f"and git would see it; {hint}"
        )
    if any(is_within(real, top) for top in _NOT_A_DISK):
        raise ReproError(f"cache.dir '{configured}' is on {real}, not on a disk; {hint}")
    existing = real
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ReproError(f"cache.dir '{configured}' is not a folder ({existing} is not); {hint}")


# What repro writes in .repro: per machine, never in git, never a link. A cloned repository
# that planted one as a symlink would have repro write (or truncate, or delete) where it
# points; one planted as a file would feed repro's memos (the links ledger decides what
# checkout deletes, the parsed-stages memo what a stage file says).
PER_MACHINE = ("lock", "state.db", "state.db-journal", "tmp", "cache", "config.local")


def check_repro_dir(repro_dir: Path) -> None:
    """Refuse a .repro that is a symlink, or that holds a symlink where repro writes."""
    for path in (repro_dir, *(repro_dir / name for name in PER_MACHINE)):
        if os.path.islink(path):
            raise ReproError(
                f"{path} is a symlink (to {os.readlink(path)}); repro writes there, so it must "
                "be a plain file or folder: remove the link (a cloned repository may have "
                "planted it) and retry"
            )


def check_untracked(root: Path) -> None:
    """Refuse a repository that tracks .repro's per-machine files (planted, or committed by
    mistake with git add -f): repro would trust them as its own."""
    import subprocess

    names = [f"{REPRO_DIR}/{name}" for name in PER_MACHINE]
    done = subprocess.run(
        ["git", "ls-files", "-z", "--", *names],
        cwd=root,
        capture_output=True,
    )
    tracked = [os.fsdecode(p) for p in done.stdout.split(b"\0") if p]
    if tracked:
        raise ReproError(
            f"the repository tracks {tracked[0]}, which is per machine and may have been "
            f"planted; run 'git rm -r --cached {tracked[0]}', delete it, and retry"
        )


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

    def __init__(
        self,
        root: Path,
        notify: Notify | None = None,
        progress: bool = True,
        warn: Notify | None = None,
    ) -> None:
        self.root = root
        self.repro_dir = root / REPRO_DIR
        self.notify = notify
        self.warn = warn
        self.progress = progress
        self.observer: Observer | None = None  # told what the hasher looked at (status memo)
        check_repro_dir(self.repro_dir)
        PARSED.attach(root)

    @cached_property
    def config(self) -> Config:
        return Config(self.repro_dir)

    @cached_property
    def cache_dir(self) -> Path:
        configured = self.config.get("cache.dir")
        if not configured:
            default = self.repro_dir / "cache"
            _check_cache_dir(self.root, str(default), default)
            return default
        path = Path(os.path.expanduser(configured))
        path = path if path.is_absolute() else (self.repro_dir / path).resolve()
        _check_cache_dir(self.root, configured, path)
        return path

    @cached_property
    def link_type(self) -> str:
        """cache.type, or the default: hardlinks for ordinary users (0444 protects them),
        reflinks or else copies for root, whom 0444 does not stop from editing a linked file
        in place and so the cache object with it."""
        configured = self.config.get("cache.type")
        if configured is None:
            return "reflink" if os.geteuid() == 0 else "hardlink"
        if configured == "hardlink" and os.geteuid() == 0 and self.warn is not None:
            self.warn(
                "cache.type is hardlink and you are root: an in-place edit of a linked output "
                "changes its cache object too (repro detects it and quarantines the object); "
                "'repro config --unset cache.type' uses reflinks or copies instead"
            )
        return configured

    @cached_property
    def cache(self) -> Cache:
        from repro.objects.store import Cache

        return Cache(self.cache_dir)

    @cached_property
    def materialiser(self) -> Materialiser:
        from repro.workspace.materialise import Materialiser

        return Materialiser(self.cache, self.root, self.link_type)

    @cached_property
    def untracked(self) -> None:
        """Refuse, once, a repository that planted per-machine files. Every command that
        writes, deletes or runs in the work tree opens the hash memo or the links ledger
        first; gc asks itself."""
        check_untracked(self.root)

    @cached_property
    def state(self) -> StateDB:
        """The hash memo."""
        from repro.memo import state

        self.untracked  # noqa: B018 - checked before anything is written or deleted
        (self.repro_dir / "tmp").mkdir(exist_ok=True)
        memo = state.StateDB(self.root / state.FILE, older=self.repro_dir / LEDGER_FILE)
        when_done(memo.close)
        return memo

    @cached_property
    def ledger(self) -> Ledger:
        """Which outputs repro materialised, as which objects."""
        from repro.workspace import ledger

        self.untracked  # noqa: B018 - checked before anything is written or deleted
        links = ledger.Ledger(self.repro_dir / LEDGER_FILE)
        when_done(links.close)
        return links

    @cached_property
    def hasher(self) -> Hasher:
        from repro.workspace.hashing import Hasher

        return Hasher(
            self.state,
            notify=self.notify,
            progress=self.progress,
            materialised=lambda label: label in self.ledger.linked(),
            observer=self.observer,
        )

    @property
    def tmp_dir(self) -> Path:
        path = self.repro_dir / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def current_md5(self, path: str) -> str | None:
        """The content id of a workspace path now (what dependencies ask: stages/deps)."""
        from repro.workspace.outputs import current_md5

        return current_md5(self, path)

    def lock(self, wait: bool = False) -> ProjectLock:
        return ProjectLock(self.repro_dir / "lock", wait=wait)

    def stage_files(self, loaded: dict[str, list[Stage]] | None = None) -> list[str]:
        """Every stage file in the work tree, without walking into outputs or .git/.repro;
        the stages of each file that loads go to ``loaded``."""
        found = {} if loaded is None else loaded

        def outs_of(path: str) -> list[str]:
            try:
                found[path] = stage_mod.load_file(self.root, path)
            except ReproError:  # a broken stage file is reported when it is loaded for real
                return []
            return [out for stage in found[path] for out in stage.out_paths()]

        return walk.stage_files(str(self.root), outs_of)

    def stages(self) -> list[Stage]:
        """Every stage of the work tree (of its ``*.repro`` files and repro.yaml files), each
        refused when a path it names leads through a symlink out of the project or into
        .git/.repro (targeted commands load them all)."""
        loaded: dict[str, list[Stage]] = {}  # each file read once, by the walk that finds it
        stages = [
            stage
            for path in self.stage_files(loaded)
            for stage in (loaded[path] if path in loaded else stage_mod.load_file(self.root, path))
        ]
        for stage in stages:
            try:
                self.check_paths(stage)
            except ReproError as exc:
                raise ReproError(f"stage '{stage.address}' refused: {exc}") from None
        return stages

    def check_paths(self, stage: Stage) -> None:
        """Refuse ``stage`` when a path it names leads through a symlink out of the project
        or into .git/.repro (paths.inside, for each)."""
        check_stage_paths(self.root, _paths_of(stage))

    def stage_for_out(self, path: str) -> Stage | None:
        for stage in self.stages():
            if any(overlaps(path, out) for out in stage.out_paths()):
                return stage
        return None


def _paths_of(stage: Stage) -> list[tuple[str, str, bool]]:
    """Every workspace path a stage names, with what it is (for messages) and whether it must
    be named by its real path (what repro writes: a dependency may go through a link)."""
    return [
        (stage.path, "stage file", True),
        (stage.record_path, "lock file", True),
        (stage.work_dir, "working directory", False),
        *((dep.path, "dependency", False) for dep in stage.deps),
        *((out.path, "output", True) for out in stage.outs),
    ]
