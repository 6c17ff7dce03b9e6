"""Why a stage is out of date, in a fixed order: its definition, its image, its dependencies,
its outputs (the first reason is what `repro repro --dry` and `status` show first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from repro.project import Project
from repro.stages.deps.base import Absent
from repro.stages.stage import Stage
from repro.workspace.outputs import current_md5

# Resolves an image name to the ID it points at now; None when that cannot be known.
ImageResolver = Callable[[str], "str | None"]


class Change(NamedTuple):
    kind: str  # stage | image | dep | out
    message: str


def stage_changes(
    project: Project, stage: Stage, resolve_image: ImageResolver | None = None
) -> list[Change]:
    """Every reason ``stage`` is out of date; empty when it is up to date."""
    name = stage.address
    changes: list[Change] = []
    if stage.md5 is None or stage.md5 != stage.definition_md5():
        changes.append(Change("stage", f"Stage '{name}' changed."))
    if stage.image is not None and stage.image.id and resolve_image is not None:
        now = resolve_image(stage.image.name)
        if now is not None and now != stage.image.id:
            changes.append(
                Change("image", f"Image of '{name}' changed: {stage.image.id[:19]}… -> {now[:19]}…")
            )
    for dep in stage.deps:
        try:
            message = dep.change(name, dep.current(project))
        except Absent as exc:
            message = f"{exc.reason}."
        # Several keys of one missing params file: one line says it.
        if message is not None and Change("dep", message) not in changes:
            changes.append(Change("dep", message))
    for out in stage.outs:
        md5 = current_md5(project, out.path)
        if md5 is None:
            # Left on the remote by a cluster run (--no-download), or never fetched.
            fetch = out.md5 is not None and bool(project.cache.missing(out.md5))
            where = " (not in cache; repro pull)" if fetch else ""
            changes.append(Change("out", f"Output '{out.path}' of '{name}' is missing{where}."))
        elif md5 != out.md5:
            changes.append(Change("out", f"Output '{out.path}' of '{name}' changed."))
    return changes
