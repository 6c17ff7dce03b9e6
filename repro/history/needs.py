"""Which cache objects and images the chosen revisions need (for push, fetch, gc)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from repro.history.revisions import History, Revision
    from repro.stages.stage import Stage


class Needs(NamedTuple):
    objects: frozenset[str]  # object ids of cached outputs (manifests not expanded)
    images: frozenset[str]  # pinned image IDs


def needs(
    history: History, revisions: Iterable[Revision], only: Iterable[str] | None = None
) -> Needs:
    """What the stages of ``revisions`` need; ``only`` restricts to those stages (by address,
    or by stage file: all the stages of a repro.yaml)."""
    wanted = set(only) if only is not None else None
    objects: set[str] = set()
    images: set[str] = set()
    revisions = list(revisions)
    history.prefetch(revisions)  # every revision's stage files in a few git calls, not one each
    for revision in revisions:
        for stage in history.stages_at(revision):
            if wanted is not None and not {stage.address, stage.path} & wanted:
                continue
            objects.update(_objects(stage))
            if stage.image is not None and stage.image.id:
                images.add(stage.image.id)
    return Needs(frozenset(objects), frozenset(images))


def _objects(stage: Stage) -> list[str]:
    return [out.md5 for out in stage.outs if out.cache and out.md5]
