"""``repro import`` and ``repro update``: data of another repository tracked here, in a stage
file that records where it came from (stages/deps/imported.py), its objects in this project's
cache, so that ``push`` sends them to this project's remote and a clone pulls them from there.

Nothing is written until everything has arrived: the objects are fetched into a staging store,
then moved into the cache, then checked out, and the stage file is written last.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path
from typing import NamedTuple

from repro.errors import ReproError
from repro.paths import inside, overlaps
from repro.pipeline.reproduce import record
from repro.project import Project
from repro.registry.download import fetch, move_into, staging_store
from repro.registry.source import Source, as_recorded
from repro.stages import stage as stage_mod
from repro.stages.deps.imported import ImportDep, short
from repro.stages.stage import STAGE_SUFFIX, Out, Stage
from repro.workspace import outputs


class Options(NamedTuple):
    jobs: int | None = None
    progress: bool = True


def import_data(
    project: Project, url: str, path: str, out: str, rev: str | None, options: Options
) -> Stage:
    """Track ``path`` of the repository at ``url`` (at ``rev``) as ``out`` here (relative to
    the project's root)."""
    stage_path = out + STAGE_SUFFIX
    dep = ImportDep(as_recorded(url), path.strip("/"), rev)
    stage = Stage(path=stage_path, deps=(dep,), outs=(Out(out),))
    stage_mod.check(stage)  # before any byte moves: names a stage file cannot hold
    for other in project.stages():
        if other.path == stage_path:
            raise ReproError(
                f"'{stage_path}' exists; 'repro update {stage_path}' brings a newer version"
            )
        clash = [o for o in other.out_paths() if overlaps(out, o)]
        if clash:
            raise ReproError(
                f"'{out}' overlaps output '{clash[0]}' of '{other.address}'; an output belongs "
                "to one stage: choose another with -o"
            )
    if os.path.lexists(inside(project.root, out, "output", exact=True)):
        raise ReproError(f"'{out}' exists; remove it, or choose another name with -o")
    return _bring(project, stage, dep, options)


def update(project: Project, stage: Stage, rev: str | None, options: Options) -> Stage | None:
    """Bring the version of an import's source that its rev (or ``rev``) names now; None when
    it has it already."""
    dep = import_of(stage)
    if rev is not None:
        dep = dep._replace(rev=rev)
    out = stage.outs[0]
    same_rev = dep.rev == import_of(stage).rev and out.md5 is not None
    if same_rev and dep.current(project) == dep.rev_lock:  # the source did not move
        in_place = outputs.current_md5(project, out.path) == out.md5
        return None if in_place else _bring(project, stage, dep, options)
    return _bring(project, stage._replace(deps=(dep,)), dep, options)


def import_of(stage: Stage) -> ImportDep:
    """The import a stage records; an error naming the stage when it is no import."""
    found = [d for d in stage.deps if isinstance(d, ImportDep)]
    if len(found) != 1 or len(stage.outs) != 1 or stage.cmd is not None:
        raise ReproError(
            f"'{stage.address}' is not an import; 'repro update' takes the stage files that "
            "'repro import' wrote"
        )
    return found[0]


def _bring(project: Project, stage: Stage, dep: ImportDep, options: Options) -> Stage:
    """Fetch what ``dep`` names, put it at the stage's output and record the stage."""
    out = stage.outs[0]
    with tempfile.TemporaryDirectory(prefix="repro-source-", dir=project.tmp_dir) as scratch:
        source = Source(dep.url, dep.rev, Path(scratch))
        found = source.find(dep.source)
        with staging_store(project.cache_dir) as staged:
            object_id = fetch(source, found, staged, options.jobs, options.progress)
            move_into(staged, object_id, project.cache)
    # An older version is in the cache and may be replaced; a change of the user's is not.
    conflicts = outputs.checkout(project, out.path, object_id, force=False)
    if conflicts:
        raise ReproError(
            f"'{conflicts[0].path}' has changes that are not in the cache; move it away (or "
            "'repro commit' it elsewhere) and run the command again"
        )
    return record(project, stage, None, {dep.name: source.commit}, (out._replace(md5=object_id),))


def describe(stage: Stage) -> str:
    """One line on where an import's data came from."""
    dep = import_of(stage)
    where = posixpath.join(dep.url, dep.source) if "://" in dep.url else f"{dep.url}:{dep.source}"
    return f"'{stage.outs[0].path}' from {where} at {dep.rev or 'HEAD'} ({short(dep.rev_lock)})"
