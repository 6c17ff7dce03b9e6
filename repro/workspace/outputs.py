"""Operations on one output: hash it, commit it to the cache, materialise it from the cache.

Here the workspace's records are kept up to date as outputs come and go: the links ledger
(which object repro put at which path) and the hasher's state for what checkout wrote.
"""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import time
from pathlib import Path

from repro.errors import ReproError
from repro.objects.ids import is_manifest
from repro.objects.store import ObjectsMissing
from repro.paths import has_git_part, inside
from repro.stages.stage import Out
from repro.workspace.conflicts import Conflict, may_replace
from repro.workspace.hashing import Scan, read_path_md5

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from repro.project import Project


def current_md5(project: Project, path: str) -> str | None:
    """The object id of what is at ``path`` now, or None when nothing is there."""
    full = inside(project.root, path, "path")
    now = read_path_md5(project.hasher, full, path)
    if now is not None:
        catch_in_place_edits(project, path, now)
    return now


def catch_in_place_edits(project: Project, path: str, now: str) -> None:
    """Quarantine the cache objects that an edit of ``path`` changed in place.

    With hardlinks an output shares its inode with its cache object; 0444 stops a stage and
    an ordinary user, not root (nor a user who chmods it). An output repro linked as object X
    that now hashes to something else, while still on X's inode, changed X too: X must never
    be checked out, restored or pushed again as X.
    """
    if project.link_type != "hardlink":
        return  # copies and reflinks share no inode with the cache
    was = project.ledger.linked().get(path)
    if was is None or was == now:
        return
    cache = project.cache
    full = project.root / path
    suspects: list[tuple[str, int]] = []  # (object id it was linked as, inode now)
    if is_manifest(was):
        if not is_manifest(now) or not cache.exists(was):
            return
        old = dict(cache.read_manifest(was))
        info = project.hasher.hash_dir(str(full), path)
        for entry, (rel, md5) in zip(info.files, info.entries, strict=True):
            before = old.get(rel)
            if before is not None and before != md5:
                suspects.append((before, entry.key[0]))
    elif not is_manifest(now):
        suspects.append((was, os.lstat(full).st_ino))
    for oid, inode in suspects:
        where = project.materialiser.quarantine_if_linked(oid, inode)
        if where is not None and project.warn is not None:
            project.warn(
                f"'{path}' was edited in place while hardlinked to cache object {oid}, which "
                f"changed with it; the damaged object is quarantined in {where} and will not "
                "be checked out or pushed ('repro pull' restores it from a remote that has it)"
            )


def catch_edits_before_push(project: Project) -> None:
    """Look at every linked output of the work tree (as status does, from the memo when
    nothing changed), so an object an in-place edit damaged is quarantined, not pushed."""
    if project.link_type != "hardlink":
        return
    linked = project.ledger.linked()
    for stage in project.stages():
        for out in stage.outs:
            if out.cache and out.path in linked:
                try:
                    current_md5(project, out.path)
                except ReproError:
                    continue  # reported by the commands that act on that output


def commit(project: Project, out: Out, keep_copy: bool = False) -> Out:
    """Hash ``out`` and store it in the cache (linked back); return it with its md5.

    ``keep_copy`` stores an uncached output's bytes as well (the run-cache restores them later),
    without linking or protecting the workspace file.
    """
    full = inside(project.root, out.path, "output", exact=True)
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        raise ReproError(f"output '{out.path}' does not exist") from None
    if stat_mod.S_ISLNK(st.st_mode):
        raise ReproError(
            f"output '{out.path}' is a symlink; outputs must be regular files or folders"
        )
    if not stat_mod.S_ISDIR(st.st_mode) and not stat_mod.S_ISREG(st.st_mode):
        raise ReproError(
            f"output '{out.path}' is a fifo, socket or device; outputs must be regular files "
            "or folders"
        )
    materialiser = project.materialiser
    hasher = project.hasher
    if stat_mod.S_ISDIR(st.st_mode):
        if out.cache and _already_committed(project, out.path):
            return out._replace(md5=project.ledger.linked()[out.path])
        info = hasher.hash_dir(str(full), out.path)
        if has_git_part("\0".join(rel for rel, _md5 in info.entries)):
            bad = next(rel for rel, _md5 in info.entries if has_git_part(rel))
            raise ReproError(
                f"output '{out.path}' holds '{bad}', inside a .git folder: a repository inside "
                "data would run its own config on checkout; leave it out of the output"
            )
        catch_in_place_edits(project, out.path, info.oid)
        if out.cache:
            materialiser.commit_dir(full, info, hasher.link_counts)
            project.ledger.put(out.path, info.oid)
        elif keep_copy:
            for entry, (_rel, md5) in zip(info.files, info.entries, strict=True):
                materialiser.save_copy(Path(entry.path), md5)
            project.cache.save_bytes(info.oid, info.manifest)
        return out._replace(md5=info.oid)
    md5 = hasher.hash_file(str(full), st)
    catch_in_place_edits(project, out.path, md5)
    if out.cache:
        materialiser.commit_file(full, md5, st.st_ino, st.st_nlink)
        project.ledger.put(out.path, md5)
    elif keep_copy:
        materialiser.save_copy(full, md5)
    return out._replace(md5=md5)


def _already_committed(project: Project, path: str) -> bool:
    """True when repro linked this folder from the cache and nothing in it changed since."""
    linked = project.ledger.linked().get(path)
    if linked is None:
        return False
    oid = project.hasher.dir_oid(str(project.root / path), path)
    return oid == linked and not project.cache.missing(oid)


def checkout(
    project: Project, path: str, oid: str, force: bool, cached: bool = True
) -> list[Conflict]:
    """Make ``path`` hold object ``oid``; return the paths it refused to overwrite."""
    try:
        return _checkout(project, path, oid, force, cached)
    except (FileExistsError, NotADirectoryError) as exc:
        raise in_the_way(path, exc) from None


def in_the_way(path: str, exc: OSError) -> ReproError:
    """A file where a folder on the way to ``path`` must be (or the other way round)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return ReproError(
        f"cannot create '{path}': a file stands where its path needs a folder{where}; "
        "move it away and retry"
    )


def _checkout(project: Project, path: str, oid: str, force: bool, cached: bool) -> list[Conflict]:
    full = inside(project.root, path, "output", exact=True)
    cache = project.cache
    materialiser = project.materialiser
    hasher = project.hasher
    if is_manifest(oid):
        conflicts = materialiser.checkout_dir(oid, full, hasher, path, force)
        if not conflicts and materialiser.can_link():
            # The tree now holds exactly the manifest's objects (hardlinks, whose bytes cannot
            # change without the cache noticing in fsck): remember it, not a row per file.
            tree = Scan(str(full))
            hasher.state.put_dir(path, tree.fingerprint, oid, tree.listing)
    else:
        existing = None
        if os.path.lexists(full):
            existing = current_md5(project, path) if not os.path.islink(full) else "symlink"
        if not cache.exists(oid):  # quarantined just now, by the look at what is there
            raise ObjectsMissing(full, [oid])
        if existing == oid and (not cached or _linked(project, oid, full)):
            conflicts = []
        elif existing is not None and not may_replace(cache, full, hasher, path, force):
            conflicts = [Conflict(path)]
        else:
            materialiser.checkout_file(oid, full, writable=not cached)
            st = os.stat(full)
            hasher.state.put_files([((st.st_ino, st.st_mtime_ns, st.st_size), oid)], time.time_ns())
            conflicts = []
    if not conflicts and cached:
        project.ledger.put(path, oid)
    return conflicts


def _linked(project: Project, oid: str, full: Path) -> bool:
    if not project.materialiser.can_link():
        return True  # copies are the best we can do; content already matches
    try:
        return os.stat(project.cache.object_path(oid)).st_ino == os.stat(full).st_ino
    except FileNotFoundError:
        return False


def remove(project: Project, path: str) -> None:
    """Delete an output from the workspace (the cache keeps its objects)."""
    full = inside(project.root, path, "output", exact=True)
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and stat_mod.S_ISDIR(st.st_mode):
        shutil.rmtree(full)  # never follows a symlink inside (its fd-based walk)
    elif st is not None:
        os.unlink(full)
    project.ledger.drop(path)
