"""``repro repro --check``: run a stage again and compare what it makes with what its stage
file records, replacing nothing (as ``nix-build --check`` does).

Where the outputs go: the stage runs in a scratch copy of the project under .repro/tmp, which
the runner shows it at the canonical path instead of the project (RunSpec.scratch); its
dependencies, .git, .repro and every other stage's outputs are mounted read-only from the
project itself, as in any run, so only what they leave out is copied. The project is never
written, so no kill, not even kill -9, can lose or half-replace a file of the user's: what a
killed check leaves is scratch, which the next one removes. (Moving the outputs aside and back
would leave them aside after a kill -9.) Nothing is hashed through the hash memo, committed,
remembered in the run-cache or recorded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from repro.errors import ReproError, StageFailed
from repro.fsutil import remove_dead_stagings, staging_name
from repro.objects.digest import bytes_md5, file_md5
from repro.objects.ids import is_manifest, manifest_id
from repro.objects.manifest import manifest_bytes
from repro.paths import inside, is_within
from repro.pipeline import differences
from repro.pipeline.reproduce import (
    Reproduction,
    changes_of,
    ensure_image,
    read_only_paths,
)
from repro.stages.stage import Out, Stage
from repro.workspace.hashing import walk_files

SCRATCH = "check"  # under .repro/tmp
PREFIX = "check-"


def prepare(reproduction: Reproduction, names: set[str], targets: list[str]) -> None:
    """Refuse to check what is out of date, and remove what killed checks left. A check
    compares with results of the same inputs: every target, and (unless -s) every stage
    upstream of one, must be up to date; else say which is not, and stop."""
    project, runner, pinned = reproduction.project, reproduction.runner, reproduction.options.pinned
    for name in reproduction.graph.order(names):
        changes = changes_of(project, reproduction.graph.stages[name], runner, pinned)
        if changes:
            first = targets[0] if name in targets else name
            raise ReproError(
                f"cannot check '{name}': {changes[0].message.rstrip('.')}; reproduce it first "
                f"('repro repro {first}'), commit the result, then check"
            )
    remove_dead_stagings(str(_scratch_root(reproduction)), PREFIX)


def check(reproduction: Reproduction, name: str) -> None:
    """Run the stage ``name`` in scratch and compare its outputs with those recorded; each
    that differs is reported and joins ``outcome.differing``."""
    project, runner, events = reproduction.project, reproduction.runner, reproduction.events
    stage = reproduction.graph.stages[name]
    if stage.is_data_source or stage.image is None or stage.image.id is None:
        events.info(f"Stage '{name}' has no command run before: nothing to check.")
        return
    assert runner is not None
    image = ensure_image(project, runner, stage.image, True, events)  # the ID that made them
    scratch = _scratch_root(reproduction) / staging_name(PREFIX)
    try:
        with runner.quiet():
            read_only = read_only_paths(project, stage, reproduction.graph)
            _copy_project(project.root, scratch, stage, read_only)
            workdir = inside(project.root, stage.work_dir, "working directory", allow_root=True)
        events.info(f"Checking '{name}'")
        # Up to date (prepare): the SOURCE_DATE_EPOCH its run had, when that was recorded.
        epoch = stage.source_date_epoch
        if epoch is None:
            epoch = reproduction.source_date_epoch
        spec = reproduction.spec(stage, image, workdir, read_only, epoch, scratch)
        code, tail = reproduction.launch(stage, spec)
        if code != 0:
            raise StageFailed(stage.address, code, tail.text())
        found = [_difference(reproduction, stage, out, scratch) for out in stage.outs]
    finally:
        _discard(scratch)
    differing = [(out, where) for out, where in zip(stage.outs, found, strict=True) if where]
    for out, where in differing:
        events.info(f"Output '{out.path}' of '{name}' differs from what is recorded: {where}")
        reproduction.outcome.differing.append(out.path)
    if not differing:
        events.info(f"Stage '{name}' made its outputs exactly as recorded.")
    reproduction.outcome.ran.append(name)


def _scratch_root(reproduction: Reproduction) -> Path:
    root = reproduction.project.tmp_dir / SCRATCH
    root.mkdir(exist_ok=True)
    return root


def _copy_project(root: Path, scratch: Path, stage: Stage, read_only: tuple[Path, ...]) -> None:
    """Copy into ``scratch`` what a run of ``stage`` sees of the project and may write: all
    but .git, .repro, its outputs (a run starts without them) and the read-only paths, which
    get an empty stand-in of their kind for the runner to mount them over."""
    skipped = {root / ".git", root / ".repro", *(root / o.path for o in stage.outs)}
    mounted = set(read_only)

    def ignore(folder: str, names: list[str]) -> set[str]:
        left_out = set()
        for name in names:
            path = Path(folder) / name
            kind = os.lstat(path).st_mode
            if path in skipped or path in mounted:
                left_out.add(name)
            elif not (stat.S_ISREG(kind) or stat.S_ISDIR(kind) or stat.S_ISLNK(kind)):
                left_out.add(name)  # a fifo, socket or device: never reached by a stage
        return left_out

    shutil.copytree(root, scratch, symlinks=True, ignore=ignore)
    for path in (root / ".git", root / ".repro", *read_only):
        stand_in = scratch / path.relative_to(root)
        if not _within(stand_in.parent, scratch):
            continue  # through a copied symlink: the runner refuses to mount it
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            stand_in.mkdir(exist_ok=True)
        else:
            stand_in.touch()
    for out in stage.outs:
        parent = (scratch / out.path).parent
        # Blocked by a file: as in a run, the stage finds the way blocked and fails.
        if _within(parent, scratch):
            with contextlib.suppress(FileExistsError, NotADirectoryError):
                parent.mkdir(parents=True, exist_ok=True)


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it once every symlink on the way is followed."""
    return is_within(os.path.realpath(path), os.path.realpath(folder))


def _difference(reproduction: Reproduction, stage: Stage, out: Out, scratch: Path) -> str:
    """Where the output ``out``, made again in ``scratch``, differs from what is recorded;
    empty when it does not."""
    made = scratch / out.path
    if not os.path.lexists(made):
        return "the stage did not make it this time"
    # The stage made it: never follow it, nor a folder on its way, out of the scratch copy.
    if not _within(made.parent, scratch):
        return "it lies through a symlink out of the project now; outputs are files or folders"
    kind = os.lstat(made).st_mode
    if stat.S_ISLNK(kind):
        return f"it is a symlink now (to {os.readlink(made)}), not a file or folder"
    if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
        return "it is a fifo, socket or device now, not a file or folder"
    if out.md5 is None:
        return "nothing is recorded for it"
    if stat.S_ISDIR(kind):
        entries = [(f.relpath, file_md5(f.path)) for f in walk_files(str(made))]
        if manifest_id(bytes_md5(manifest_bytes(entries))) == out.md5:
            return ""
        return _folder_difference(reproduction, out, entries, made)
    if file_md5(str(made)) == out.md5:
        return ""
    if is_manifest(out.md5):
        return "a folder is recorded; it is a file now"
    recorded = _recorded_bytes(reproduction, out)
    if recorded is None:
        return "its recorded version is in neither the cache nor the workspace ('repro pull')"
    return differences.between_files(recorded, made)


def _folder_difference(
    reproduction: Reproduction, out: Out, entries: list[tuple[str, str]], made: Path
) -> str:
    assert out.md5 is not None
    if not is_manifest(out.md5):
        return "a file is recorded; it is a folder now"
    cache = reproduction.project.cache
    try:
        recorded = cache.read_manifest(out.md5)
    except ReproError:
        return "its recorded file list is not in the cache ('repro pull' to see which files)"
    where = differences.between_folders(recorded, entries)
    now = dict(entries)
    first = next(((rel, md5) for rel, md5 in recorded if now.get(rel) not in (None, md5)), None)
    if first is not None and cache.exists(first[1]):
        where += f"; in '{first[0]}', " + differences.between_files(
            cache.object_path(first[1]), made / first[0]
        )
    return where


def _recorded_bytes(reproduction: Reproduction, out: Out) -> Path | None:
    """A file holding the recorded version of ``out``: its cache object, else the workspace
    copy (an output not kept in the cache) when it still has the recorded hash."""
    assert out.md5 is not None
    project = reproduction.project
    if project.cache.exists(out.md5):
        return project.cache.object_path(out.md5)
    path = project.root / out.path
    if path.is_file() and not path.is_symlink() and file_md5(str(path)) == out.md5:
        return path
    return None


def _discard(scratch: Path) -> None:
    """Remove a scratch copy, including folders the stage made read-only."""
    if not scratch.exists():
        return
    for folder, dirs, _files in os.walk(scratch):
        for name in dirs:  # before the walk lists them; never through a link
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(scratch, ignore_errors=True)
