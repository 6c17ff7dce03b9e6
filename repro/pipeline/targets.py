"""Which stages a user's targets name: a stage file (its suffix may be left off) or a path
that an output is, lies in, or holds, relative to the current folder."""

from __future__ import annotations

from pathlib import Path

from repro.errors import ReproError
from repro.paths import from_user, overlaps
from repro.project import Project
from repro.stages.stage import STAGE_SUFFIX, Stage


def resolve_targets(project: Project, stages: list[Stage], targets: list[str]) -> list[Stage]:
    """Stages named by stage file (its ``.repro`` may be left off) or by an output path,
    relative to the current folder."""
    if not targets:
        return stages
    by_path = {s.path: s for s in stages}
    chosen: dict[str, Stage] = {}
    for target in targets:
        rel = from_user(project.root, Path.cwd(), target, "target")
        for name in (rel, rel + STAGE_SUFFIX):
            if name in by_path:
                chosen[name] = by_path[name]
                break
        else:
            _add_owners(stages, target, rel, chosen)
    return list(chosen.values())


def _add_owners(stages: list[Stage], target: str, rel: str, chosen: dict[str, Stage]) -> None:
    """Add the stages whose outputs ``rel`` names (or lies in, or holds) to ``chosen``."""
    owners = [s for s in stages if any(overlaps(rel, o) for o in s.out_paths())]
    if not owners:
        raise ReproError(
            f"'{target}' is neither a stage file nor an output of one; "
            "'repro pipeline list' shows the stages"
        )
    for owner in owners:
        chosen[owner.path] = owner
