"""plots show / diff / modify / metrics: draw plot outputs and metrics, offline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.history.revisions import WORKSPACE, History, Revision
from repro.memo import metrics as metrics_memo
from repro.metrics.plot_pages import NO_PICTURES, Figure, file_stem, pictures, write
from repro.metrics.plot_templates import REVISION, Drawing, spec
from repro.metrics.plots import read_plots
from repro.metrics.readings import Missing, read_metrics
from repro.paths import from_user
from repro.project import Project
from repro.stages import stage as stage_mod
from repro.stages.stage import Plot

DEFAULT_FOLDER = "repro_plots"  # as DVC's dvc_plots/: not plots/, which often holds the data


def _draw(project: Project, revisions: Sequence[Revision], targets: list[str]) -> list[Figure]:
    history = History(project.root)
    paths = [from_user(project.root, Path.cwd(), target, "plot") for target in targets]
    drawings = read_plots(
        history,
        metrics_memo.Recorder(project, None).object_bytes,
        revisions,
        paths,
    )
    return [Figure(file_stem(path), d.title, spec(d)) for path, d in drawings]


def _publish(args: argparse.Namespace, ui: UI, figures: list[Figure]) -> int:
    """Print the specs (--json), or write the page and pictures and say where."""
    if args.json:
        ui.out(json.dumps({f.name: f.spec for f in figures}, indent=2, sort_keys=True))
        return 0
    folder = Path(args.out or DEFAULT_FOLDER)
    images = pictures(figures, folder)  # all drawn before anything is written
    page = write(folder, figures, images)
    if images is None:
        ui.warn(NO_PICTURES)
    shown = os.path.relpath(page)
    ui.info(f"Wrote {len(figures)} plot{'s' if len(figures) != 1 else ''} to {shown}")
    if args.open:
        _open(page, ui)
    return 0


def _open(page: Path, ui: UI) -> None:
    """The page in the user's browser, when this machine has a screen to show one on."""
    import webbrowser

    screen = sys.platform in ("darwin", "win32") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    )
    if not (screen and webbrowser.open(page.resolve().as_uri())):
        ui.info(f"No browser to open here; open {page.resolve()} on a machine with a screen")


def cmd_show(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    return _publish(args, ui, _draw(project, [Revision(WORKSPACE, None)], args.targets))


def cmd_diff(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    names = list(args.revisions)
    # As DVC: with fewer than two revisions, the workspace is compared (with HEAD by default).
    if len(names) < 2:
        names = [*(names or ["HEAD"]), WORKSPACE]
    revisions = [_revision(project, history, name) for name in names]
    return _publish(args, ui, _draw(project, revisions, args.targets))


def _revision(project: Project, history: History, name: str) -> Revision:
    """A git revision, the workspace, else an experiment's name."""
    from repro.experiments import refs

    try:
        return history.resolve(name)
    except ReproError:
        try:
            experiment = refs.find(project.root, name)
        except ReproError:
            raise ReproError(
                f"'{name}' is neither a revision nor an experiment; name a tag, branch, "
                "commit or experiment ('repro exp show' lists them)"
            ) from None
        return Revision(experiment.name, experiment.sha)


def cmd_modify(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    path = from_user(project.root, Path.cwd(), args.path, "plot")
    changes = {
        "x": args.x,
        "y": args.y,
        "template": args.template,
        "title": args.title,
        "x_label": args.x_label,
        "y_label": args.y_label,
    }
    set_now = {key: value for key, value in changes.items() if value is not None}
    with project.lock():
        stage = stage_mod.with_out_changed(
            project.stages(),
            path,
            lambda out: out._replace(plot=(out.plot or Plot())._replace(**set_now)),
            "plot",
        )
        stage_mod.write(project.root, stage)
    ui.info(f"Updated plot '{path}' in '{stage.path}'")
    return 0


def cmd_metrics(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    if not (args.all_branches or args.all_tags or args.all_commits):
        raise ReproError("say which revisions to draw: -T (tags), -a (branches) or --all-commits")
    revisions = history.revisions(args.all_branches, args.all_tags, args.all_commits)
    if args.all_commits:
        revisions.reverse()  # git lists the newest first; a history reads left to right
    if not revisions:
        raise ReproError("no revisions match; tag a commit (git tag) or drop -T/-a")
    readings = read_metrics(
        history,
        metrics_memo.Recorder(project, None).object_bytes,
        revisions,
        [],
        None,
        args.xpath,
        {out.path: out.metric for s in project.stages() for out in s.outs if out.metric},
    )
    series: dict[str, list[dict[str, object]]] = {}
    for revision, values in zip(revisions, readings, strict=True):
        for path, reading in values.items():
            if isinstance(reading, Missing):
                continue
            for key, value in reading.leaves().items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    name = f"{path}:{key}" if key else path
                    series.setdefault(name, []).append({REVISION: revision.label, "value": value})
    if not series:
        raise ReproError("no numeric metrics at these revisions; 'repro metrics show -T' says why")
    figures = [
        Figure(
            file_stem(f"metrics_{name}"),
            name,
            spec(Drawing(records, REVISION, "value", "linear", name, "revision", name)),
        )
        for name, records in series.items()
    ]
    return _publish(args, ui, figures)
