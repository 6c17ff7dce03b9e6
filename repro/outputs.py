"""Operations on one output: hash it, commit it to the cache, materialise it from the cache."""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import time
from pathlib import Path

from repro.cache import Conflict
from repro.errors import ReproError
from repro.hashing import read_path_md5
from repro.paths import escapes_via_symlink
from repro.project import Project
from repro.stage import Out


def current_md5(project: Project, path: str) -> str | None:
    """The object id of what is at ``path`` now, or None when nothing is there."""
    if escapes_via_symlink(project.root, path):
        raise ReproError(f"'{path}' lies behind a symlink that leads out of the project")
    return read_path_md5(project.hasher, project.root / path, path)


def commit(project: Project, out: Out, keep_copy: bool = False) -> Out:
    """Hash ``out`` and store it in the cache (linked back); return it with its md5.

    ``keep_copy`` stores an uncached output's bytes as well (the run-cache restores them later),
    without linking or protecting the workspace file.
    """
    full = project.root / out.path
    if escapes_via_symlink(project.root, out.path):
        raise ReproError(f"output '{out.path}' lies behind a symlink that leads out of the project")
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        raise ReproError(f"output '{out.path}' does not exist") from None
    if stat_mod.S_ISLNK(st.st_mode):
        raise ReproError(
            f"output '{out.path}' is a symlink; outputs must be regular files or folders"
        )
    cache = project.cache
    hasher = project.hasher
    if stat_mod.S_ISDIR(st.st_mode):
        if out.cache and _already_committed(project, out.path):
            return out._replace(md5=project.state.linked()[out.path])
        info = hasher.hash_dir(str(full), out.path)
        if out.cache:
            cache.commit_dir(full, info)
            project.state.put_link(out.path, info.oid)
        elif keep_copy:
            for entry, (_rel, md5) in zip(info.files, info.entries, strict=True):
                cache.save_copy(Path(entry.path), md5)
            cache.save_bytes(info.oid, info.manifest)
        return out._replace(md5=info.oid)
    md5 = hasher.hash_file(str(full), st)
    if out.cache:
        cache.commit_file(full, md5, st.st_ino)
        project.state.put_link(out.path, md5)
    elif keep_copy:
        cache.save_copy(full, md5)
    return out._replace(md5=md5)


def _already_committed(project: Project, path: str) -> bool:
    """True when repro linked this folder from the cache and nothing in it changed since."""
    linked = project.state.linked().get(path)
    if linked is None:
        return False
    oid = project.hasher.dir_oid(str(project.root / path), path)
    return oid == linked and not project.cache.missing(oid)


def checkout(
    project: Project, path: str, oid: str, force: bool, cached: bool = True
) -> list[Conflict]:
    """Make ``path`` hold object ``oid``; return the paths it refused to overwrite."""
    full = project.root / path
    if escapes_via_symlink(project.root, path):
        raise ReproError(f"'{path}' lies behind a symlink that leads out of the project")
    cache = project.cache
    hasher = project.hasher
    if oid.endswith(".dir"):
        conflicts = cache.checkout_dir(oid, full, hasher, path, force)
    else:
        existing = None
        if os.path.lexists(full):
            existing = current_md5(project, path) if not os.path.islink(full) else "symlink"
        if existing == oid and (not cached or _linked(project, oid, full)):
            conflicts = []
        elif (
            existing is not None and not force and not cache.is_safe_to_replace(full, hasher, path)
        ):
            conflicts = [Conflict(path)]
        else:
            cache.checkout_file(oid, full, writable=not cached)
            st = os.stat(full)
            hasher.state.put_files([((st.st_ino, st.st_mtime_ns, st.st_size), oid)], time.time_ns())
            conflicts = []
    if not conflicts and cached:
        project.state.put_link(path, oid)
    return conflicts


def _linked(project: Project, oid: str, full: Path) -> bool:
    if not project.cache.can_link():
        return True  # copies are the best we can do; content already matches
    try:
        return os.stat(project.cache.object_path(oid)).st_ino == os.stat(full).st_ino
    except FileNotFoundError:
        return False


def remove(project: Project, path: str) -> None:
    """Delete an output from the workspace (the cache keeps its objects)."""
    full = project.root / path
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    elif os.path.lexists(full):
        os.unlink(full)
    project.state.drop_link(path)
