"""Which stages a user's targets name: a stage file (its suffix may be left off), a stage of a
repro.yaml by name (``train``, ``prepare@en``, ``sub/repro.yaml:train``), a whole repro.yaml,
or a path that an output is, lies in, or holds, relative to the current folder."""

from __future__ import annotations

import posixpath
from pathlib import Path

from repro.errors import ReproError
from repro.paths import from_user, overlaps
from repro.project import Project
from repro.stages.stage import STAGE_SUFFIX, Stage
from repro.walk import PIPELINE_FILE


def resolve_targets(project: Project, stages: list[Stage], targets: list[str]) -> list[Stage]:
    """Stages named by stage file (its ``.repro`` may be left off), by name, by repro.yaml
    (all its stages) or by an output path, relative to the current folder."""
    if not targets:
        return stages
    chosen: dict[str, Stage] = {}
    for target in targets:
        named = stages_named(project, stages, target)
        if named:
            chosen.update((s.address, s) for s in named)
        else:
            rel = from_user(project.root, Path.cwd(), target, "target")
            _add_owners(stages, target, rel, chosen)
    return list(chosen.values())


def stages_named(project: Project, stages: list[Stage], target: str) -> list[Stage]:
    """The stages ``target`` names as a stage, stage file or repro.yaml; none for a path."""
    by_address = {s.address: s for s in stages}
    if target in by_address:  # a name in the root repro.yaml, wherever the user is
        return [by_address[target]]
    file, colon, name = target.rpartition(":")
    if colon and posixpath.basename(file) == PIPELINE_FILE:
        rel_file = from_user(project.root, Path.cwd(), file, "target")
        return [s for s in stages if s.path == rel_file and s.name == name]
    rel = from_user(project.root, Path.cwd(), target, "target")
    here = posixpath.join(posixpath.dirname(rel), PIPELINE_FILE)  # a name in this folder's
    for address in (rel, rel + STAGE_SUFFIX, f"{here}:{posixpath.basename(rel)}"):
        if address in by_address:
            return [by_address[address]]
    return [s for s in stages if s.name is not None and s.path == rel]


def _add_owners(stages: list[Stage], target: str, rel: str, chosen: dict[str, Stage]) -> None:
    """Add the stages whose outputs ``rel`` names (or lies in, or holds) to ``chosen``."""
    owners = [s for s in stages if any(overlaps(rel, o) for o in s.out_paths())]
    if not owners:
        raise ReproError(
            f"'{target}' is neither a stage file nor an output of one, nor a stage's name; "
            "'repro pipeline list' shows the stages"
        )
    for owner in owners:
        chosen[owner.address] = owner
