"""metrics show / modify / diff."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.history.revisions import WORKSPACE, History, Revision
from repro.memo import metrics as metrics_memo
from repro.metrics.readings import Missing, Reading, read_metrics
from repro.paths import from_user
from repro.stages import stage as stage_mod
from repro.stages.stage import Metric


def _paths(project: Any, raw: list[str]) -> list[str]:
    return [from_user(project.root, Path.cwd(), p, "metric") for p in raw]


def _compact(value: Any) -> str:
    if isinstance(value, Missing):
        return f"- ({value.reason})"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cmd_show(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    recorder = metrics_memo.Recorder(project, metrics_memo.eligible(args.argv))
    if args.all_branches or args.all_tags or args.all_commits:
        revisions = history.revisions(args.all_branches, args.all_tags, args.all_commits)
        if not revisions:
            raise ReproError("no revisions match; tag a commit (git tag) or drop -T/-a")
    else:
        revisions = [Revision(WORKSPACE, None)]
    paths = _paths(project, args.paths)
    current = _current_settings(project)
    readings = read_metrics(
        history,
        recorder.object_bytes,
        revisions,
        paths,
        args.type,
        args.xpath,
        current,
    )
    found = {
        revision.label: values
        for revision, values in zip(revisions, readings, strict=True)
        if values
    }
    if args.json:
        payload = {
            rev: {p: (None if isinstance(v, Missing) else v.value) for p, v in values.items()}
            for rev, values in found.items()
        }
        output = json.dumps(payload, indent=2)
    elif not found:
        raise ReproError(
            "no metrics found; declare one with 'repro run -M FILE' or name a file to read"
        )
    else:
        output = _show_table(found)
    ui.out(output)
    recorder.remember(output)
    return 0


def _show_table(found: dict[str, dict[str, Reading | Missing]]) -> str:
    columns: list[str] = []
    flat_rows: dict[str, dict[str, Any]] = {}
    for rev, values in found.items():
        flat: dict[str, Any] = {}
        for path, value in values.items():
            if isinstance(value, Missing):
                flat[path] = value
                continue
            for key, leaf in value.leaves().items():
                flat[f"{path}:{key}" if key else path] = leaf
        flat_rows[rev] = flat
        columns.extend(c for c in flat if c not in columns)
    rows = [["revision", *columns]]
    for rev, flat in flat_rows.items():
        rows.append([rev, *(_compact(flat[c]) if c in flat else "-" for c in columns)])
    return table(rows)


def cmd_modify(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    path = _paths(project, [args.path])[0]
    with project.lock():
        for stage in project.stages():
            if path in stage.out_paths():
                if stage.name is not None:
                    raise ReproError(
                        f"'{path}' is a metric of '{stage.address}', whose {stage.path} "
                        "repro does not rewrite; 'repro metrics show --type/--xpath' reads it "
                        "another way"
                    )
                outs = tuple(
                    o._replace(
                        metric=Metric(
                            args.type or (o.metric.type if o.metric else None),
                            args.xpath
                            if args.xpath is not None
                            else (o.metric.xpath if o.metric else None),
                        ),
                    )
                    if o.path == path
                    else o
                    for o in stage.outs
                )
                stage_mod.write(project.root, stage._replace(outs=outs))
                ui.info(f"Updated metric '{path}' in '{stage.path}'")
                return 0
    raise ReproError(f"'{path}' is not an output of any stage; declare it with 'repro run -M'")


def _current_settings(project: Any) -> dict[str, Metric]:
    """How the workspace's stage files say each metric is read."""
    return {
        out.path: out.metric
        for stage in project.stages()
        for out in stage.outs
        if out.metric is not None
    }


def _leaves(reading: Reading | Missing | None) -> dict[str, Any]:
    return reading.leaves() if isinstance(reading, Reading) else {}


def cmd_diff(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    old_rev = history.resolve(args.a_rev or "HEAD")
    new_rev = history.resolve(args.b_rev or WORKSPACE)
    paths = _paths(project, args.paths)
    current = _current_settings(project)
    old, new = read_metrics(
        history,
        metrics_memo.Recorder(project, None).object_bytes,
        [old_rev, new_rev],
        paths,
        args.type,
        args.xpath,
        current,
    )
    rows_json: dict[str, dict[str, dict[str, Any]]] = {}
    rows = [["path", "metric", old_rev.label, new_rev.label, "change"]]
    for path in sorted(set(old) | set(new)):
        before, after = _leaves(old.get(path)), _leaves(new.get(path))
        for key in sorted(set(before) | set(after), key=str):
            a, b = before.get(key), after.get(key)
            change = None
            if (
                isinstance(a, (int, float))
                and isinstance(b, (int, float))
                and not isinstance(a, bool)
            ):
                change = b - a
            rows_json.setdefault(path, {})[key or path] = {"old": a, "new": b, "diff": change}
            rows.append(
                [
                    path,
                    key or "-",
                    _compact(a) if a is not None else "-",
                    _compact(b) if b is not None else "-",
                    (f"{change:+.6g}" if change is not None else "-"),
                ]
            )
    if args.json:
        ui.out(json.dumps(rows_json, indent=2))
    elif len(rows) == 1:
        ui.info("No metrics to compare.")
    else:
        ui.out(table(rows))
    return 0
