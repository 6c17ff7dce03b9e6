"""The plots of the workspace and of revisions: which files each declares, how each is drawn,
and their records read (from git, or from the cache for a cached plot; nothing checked out),
checked, and made into one drawing per plot with one series per revision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from repro.errors import ReproError
from repro.history.revisions import WORKSPACE, Revision
from repro.metrics.formats import format_of, parse
from repro.metrics.plot_templates import REVISION, STEP, Drawing
from repro.stages.stage import Plot

if TYPE_CHECKING:
    from repro.history.revisions import History

_TABLES = ("csv", "tsv", "json", "yaml")


def declared(history: History, revision: Revision) -> dict[str, tuple[Plot, str | None]]:
    """Plot path -> (how it is drawn, its md5 when it is cached) of one revision."""
    return {
        out.path: (out.plot, out.md5 if out.cache else None)
        for stage in history.stages_at(revision)
        for out in stage.outs
        if out.plot is not None
    }


def read_plots(
    history: History,
    object_bytes: Callable[[str], bytes | None],
    revisions: Sequence[Revision],
    targets: Sequence[str],
) -> list[tuple[str, Drawing]]:
    """(path, drawing) of each plot: the ``targets``, else every plot a revision declares.

    How a plot is drawn comes from the workspace's stage files (so that a 'plots modify'
    draws all of history alike), else from the newest revision declaring it.
    A revision that lacks the file adds no series; a file that does not parse, or lacks the
    x or y field, stops everything before anything is drawn.
    """
    history.prefetch(revisions)
    by_revision = [declared(history, revision) for revision in revisions]
    current = declared(history, Revision(WORKSPACE, None))
    paths = list(targets) or sorted({path for plots in by_revision for path in plots})
    if not paths:
        raise ReproError(
            "no plots found; declare one with 'repro run --plots FILE' or name a file to draw"
        )
    from_git: list[tuple[Revision, str]] = []
    sources: list[bytes | int] = []  # the bytes, or an index into what git gives
    for revision, plots in zip(revisions, by_revision, strict=True):
        for path in paths:
            md5 = plots[path][1] if path in plots else None
            # The workspace's file is there to read even when cached; a commit's is not.
            found = object_bytes(md5) if md5 is not None and revision.sha is not None else None
            sources.append(len(from_git) if found is None else found)
            if found is None:
                from_git.append((revision, path))
    read = history.read_many(from_git)
    contents = [read[s] if isinstance(s, int) else s for s in sources]
    drawings = []
    for at, path in enumerate(paths):
        how = (
            current[path][0]
            if path in current
            else next((plots[path][0] for plots in reversed(by_revision) if path in plots), Plot())
        )
        records: list[dict[str, Any]] = []
        present = 0
        for index, revision in enumerate(revisions):
            data = contents[index * len(paths) + at]
            if data is None:
                continue
            present += 1
            records += _records(data, path, revision.label, how)
        if not present:
            raise ReproError(
                f"plot '{path}' is at none of the revisions asked for; check its name, or "
                "'repro pull' a cached one"
            )
        x, y = _axes(records, how)
        drawings.append((path, _drawing(records, x, y, how, present, path)))
    return drawings


def _records(data: bytes, path: str, label: str, how: Plot) -> list[dict[str, Any]]:
    """The file's records, each with the revision and its position (STEP)."""
    where = f"{path} at {label}"
    kind = format_of(path)
    if kind not in _TABLES:
        raise ReproError(
            f"plot {where} is not CSV, TSV, JSON or YAML (by its name); rename it, e.g. to .csv"
        )
    rows = _table(parse(data, kind, where))
    if rows is None:
        raise ReproError(f"plot {where} is not a list of records; write one record per point")
    if not rows:
        raise ReproError(f"plot {where} has no records; write one record per point")
    for field in (how.x, how.y):
        if field is not None and field != STEP and field not in rows[0]:
            fields = ", ".join(map(str, rows[0])) or "none"
            raise ReproError(
                f"plot {where} has no field '{field}' (its fields: {fields}); "
                f"choose one with 'repro plots modify {path} -x/-y FIELD'"
            )
    return [{STEP: step, **row, REVISION: label} for step, row in enumerate(rows)]


def _table(value: Any) -> list[dict[str, Any]] | None:
    """A list of records, as is or as the first list of records inside a mapping (DVC's
    ``{"train": [...]}``); None when the value holds none."""
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), None)
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return value
    return None


def _axes(records: list[dict[str, Any]], how: Plot) -> tuple[str, str]:
    """x and y: as set, else the position and the last field of the first record (DVC's)."""
    x = how.x or STEP
    if how.y:
        return x, how.y
    others = [field for field in records[0] if field not in (x, STEP, REVISION)]
    if not others:
        raise ReproError("a plot needs a y field; set one with 'repro plots modify FILE -y FIELD'")
    return x, others[-1]


def _drawing(
    records: list[dict[str, Any]], x: str, y: str, how: Plot, revisions: int, path: str
) -> Drawing:
    # Only what is drawn goes into the page: a plot of a wide table stays small.
    kept = [{x: r.get(x), y: r.get(y), REVISION: r[REVISION]} for r in records]
    return Drawing(
        kept,
        x,
        y,
        how.template or "linear",
        how.title or path,
        how.x_label,
        how.y_label,
        revisions,
    )
