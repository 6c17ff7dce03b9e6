"""Objects of another repository brought here whole or not at all: fetched (each verified, as
``pull`` does) into a staging store, then moved where they go, so that a failure half-way
leaves no stray object in the cache and no half-written file in the workspace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from repro.errors import ReproError
from repro.fsutil import TEMP_PREFIX, remove_dead_stagings, staging_name
from repro.objects.digest import bytes_md5
from repro.objects.ids import PREFIX, ObjectId, fanout, is_manifest, manifest_id, object_path
from repro.objects.manifest import manifest_bytes
from repro.objects.store import Cache
from repro.objects.transfer import Transfer
from repro.registry.source import Found, Source

STAGING = TEMP_PREFIX + "registry-"


@contextmanager
def staging_store(folder: Path) -> Iterator[Cache]:
    """A store in a fresh folder of ``folder`` (on its filesystem, so objects move out by
    rename), removed afterwards; those left by killed processes are removed first."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_dead_stagings(str(folder), STAGING)
    root = folder / staging_name(STAGING)
    root.mkdir()
    try:
        yield Cache(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fetch(source: Source, found: Found, store: Cache, jobs: int | None, progress: bool) -> str:
    """Put what ``found`` names into ``store``; return its object id. Data comes from the
    source's storage, a git file from its git objects; a path inside a tracked folder is the
    folder's file, or a manifest made of the entries below it."""
    if found.data is not None:
        object_id = found.object_id
        assert object_id is not None
        store.save_bytes(object_id, found.data)
        return object_id
    assert found.stored is not None
    remote = source.storage(found.stored)
    try:
        summary = Transfer(remote, store.root, jobs, progress).fetch([found.stored])
    finally:
        remote.close()
    if summary.failed:
        raise ReproError(
            f"cannot fetch '{found.path}' from {remote.url}: {summary.failed[0].error}"
        )
    if summary.missing:
        raise ReproError(
            f"{len(summary.missing)} object(s) of '{found.path}' are not on {remote.url} (e.g. "
            f"{summary.missing[0]}); ask the maintainers of {source.url} to 'repro push'"
        )
    if found.within is None:
        return found.stored
    return _part(store, found)


def _part(store: Cache, found: Found) -> ObjectId:
    """The object of a path inside a fetched folder: a file's, or a new manifest listing the
    entries below it."""
    assert found.stored is not None and found.within is not None
    entries = store.read_manifest(found.stored)
    for relpath, md5 in entries:
        if relpath == found.within:
            return md5
    prefix = found.within + "/"
    inner = [(rel[len(prefix) :], md5) for rel, md5 in entries if rel.startswith(prefix)]
    if not inner:
        raise ReproError(
            f"'{found.path}' is not in the folder its output tracks; check the path with "
            "'repro ls -R'"
        )
    data = manifest_bytes(inner)
    object_id = manifest_id(bytes_md5(data))
    store.save_bytes(object_id, data)
    return object_id


def _files_of(store: Cache, object_id: ObjectId) -> list[tuple[str, ObjectId]]:
    """(relpath, object id) of a folder's files; one ("", id) for a file."""
    if is_manifest(object_id):
        return store.read_manifest(object_id)
    return [("", object_id)]


def move_into(staged: Cache, object_id: ObjectId, cache: Cache) -> None:
    """Move ``object_id`` (a manifest with its files) from ``staged`` into ``cache``; files
    first, so a kill never leaves a manifest there without them. An object ``cache`` holds is
    kept as it is: the workspace may be linked to it."""
    files = {md5 for _rel, md5 in _files_of(staged, object_id)}
    by_folder: dict[str, list[ObjectId]] = {}
    for oid in files - cache.held(files):
        by_folder.setdefault(fanout(oid), []).append(oid)
    for folder, oids in by_folder.items():
        # A folder the cache lacks, holding just these: one rename instead of one per object.
        source, dest = staged.root / PREFIX / folder, cache.root / PREFIX / folder
        if not dest.exists() and len(os.listdir(source)) == len(oids):
            dest.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # made meanwhile: one by one, below
                os.rename(source, dest)
                continue
        for oid in oids:
            _move(staged, oid, cache)
    if is_manifest(object_id) and not cache.exists(object_id):
        _move(staged, object_id, cache)


def _move(staged: Cache, object_id: ObjectId, cache: Cache) -> None:
    dest = cache.object_path(object_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged.object_path(object_id), dest)


def place(staged: Cache, object_id: ObjectId, dest: Path) -> None:
    """Write ``object_id`` as the new file or folder ``dest`` (writable, as any download):
    built beside it under a temp name, then renamed into place."""
    if os.path.lexists(dest):
        raise ReproError(f"'{dest}' exists; remove it, or give another name with -o")
    building = dest.parent / staging_name(STAGING)
    placed: dict[ObjectId, Path] = {}
    mode = 0o666 & ~_umask()
    try:
        if not is_manifest(object_id):
            _place_file(staged, object_id, building, placed, mode)
        else:
            building.mkdir()
            for relpath, md5 in staged.read_manifest(object_id):
                target = building / relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                _place_file(staged, md5, target, placed, mode)
        os.rename(building, dest)
    except BaseException:
        if building.is_dir():
            shutil.rmtree(building, ignore_errors=True)
        else:
            building.unlink(missing_ok=True)
        raise


def _place_file(
    staged: Cache, md5: ObjectId, target: Path, placed: dict[ObjectId, Path], mode: int
) -> None:
    """The staged object moved to ``target`` the first time, copied from there after."""
    first = placed.get(md5)
    if first is None:
        os.replace(object_path(staged.root, md5), target)
        placed[md5] = target
    else:
        shutil.copyfile(first, target)
    os.chmod(target, mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
