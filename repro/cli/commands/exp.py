"""exp run / show / diff / apply / branch / remove / push / pull: experiments as commits
under refs/exps (repro/experiments/). What one verb alone needs (running, applying,
sharing: a worktree, checkout, remotes) is imported by that verb: exp show is run often."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError, UsageError
from repro.experiments import refs
from repro.experiments.table import Record, records, shown
from repro.history.revisions import History, Revision
from repro.paths import from_user
from repro.project import Project


def _object_bytes(project: Project) -> Callable[[str], bytes | None]:
    """A cached metric's bytes, or None when the cache lacks them."""

    def read(md5: str) -> bytes | None:
        try:
            return project.cache.object_path(md5).read_bytes()
        except FileNotFoundError:
            return None

    return read


def cmd_run(args: argparse.Namespace, ui: UI) -> int:
    from repro.experiments import execute
    from repro.experiments.apply import apply
    from repro.experiments.prepare import parse_change, prepare

    project = open_project(ui)
    if args.jobs < 1:
        raise UsageError("-j needs a number of at least 1")
    if args.run_all:
        if args.set_param or args.targets or args.name or args.queue:
            raise UsageError("--run-all runs the queue as it is; give no -S, -n, TARGET or --queue")
        return _run_all(project, args.jobs, ui)
    changes = [parse_change(project.root, Path.cwd(), text) for text in args.set_param]
    # The copy runs at its top: targets as the project names them, not as typed in a subfolder.
    targets = [from_user(project.root, Path.cwd(), target, "target") for target in args.targets]
    experiments = refs.listed(project.root)
    baseline = refs.head(project.root)
    taken = refs.taken_names(experiments, baseline)
    if args.name:
        refs.check_name(args.name)
        if args.name in taken:
            raise ReproError(
                f"an experiment named '{args.name}' already exists for this commit; choose "
                "another name, or 'repro exp remove' the old one"
            )
    name = args.name or refs.new_name(taken)
    prepared = prepare(project.root, baseline, changes, targets, project.tmp_dir)
    if args.queue:
        refs.git(project.root, "update-ref", refs.QUEUE + name, prepared.commit, "")
        ui.info(f"Queued experiment '{name}'; 'repro exp run --run-all' runs the queue.")
        return 0
    worker = execute.Worker()
    try:
        sha = execute.run(
            project, worker, prepared.commit, prepared.baseline, name, targets, ui.log
        )
    finally:
        worker.close()
    # As DVC does: the workspace gets the result; the branch, HEAD and index do not move. It
    # held the changes the experiment started from: only one made during the run could be lost.
    try:
        with project.lock(args.wait):
            apply(project, sha, since=prepared.workspace, force=False)
    except ReproError as exc:
        raise ReproError(
            f"experiment '{name}' ({sha[:7]}) is recorded, but the workspace did not get its "
            f"results: {exc}"
        ) from None
    ui.info(
        f"Ran experiment '{name}' ({sha[:7]}); the workspace holds its results. "
        f"'repro exp branch {name} BRANCH' keeps it on a branch."
    )
    return 0


def _run_all(project: Project, jobs: int, ui: UI) -> int:
    queued = [e for e in refs.listed(project.root) if e.queued]
    if not queued:
        ui.info("The queue is empty; 'repro exp run --queue -S KEY=VALUE' adds to it.")
        return 0
    from repro.experiments import execute

    outcomes = execute.run_queued(project, queued, jobs, ui.log)
    for outcome in outcomes:
        if outcome.sha is not None:
            ui.info(f"Ran experiment '{outcome.name}' ({outcome.sha[:7]}).")
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    for outcome in failed:
        ui.warn(str(outcome.error))
    if failed:
        raise ReproError(
            f"{len(failed)} of {len(outcomes)} experiments failed; they stay queued "
            "('repro exp remove --queue' drops them)"
        )
    return 0


def _baselines(project: Project, history: History, args: argparse.Namespace) -> list[Revision]:
    head = refs.head(project.root)
    branch = refs.git(project.root, "symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
    found = [Revision(branch or head[:7], head)]
    if args.all_branches or args.all_tags:
        found += history.revisions(args.all_branches, args.all_tags, False)
    return found


def cmd_show(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    experiments = refs.listed(project.root)
    rows = shown(history, _object_bytes(project), _baselines(project, history, args), experiments)
    if args.json:
        ui.out(json.dumps([row.to_dict() for row in rows], indent=2, default=str))
    elif args.csv:
        ui.out(_csv(rows))
    else:
        ui.out(_text(rows))
    return 0


def _columns(rows: list[Record]) -> list[str]:
    return list(dict.fromkeys(column for row in rows for column in row.flat()))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _csv(rows: list[Record]) -> str:
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "rev", "baseline", "queued", *columns])
    for row in rows:
        flat = row.flat()
        cells = [_cell(flat[c]) if c in flat else "" for c in columns]
        writer.writerow([row.name, row.rev, row.baseline or "", row.queued, *cells])
    return buffer.getvalue().rstrip("\n")


def _text(rows: list[Record]) -> str:
    columns = _columns(rows)
    lines = [["Experiment", "rev", *columns]]
    for at, row in enumerate(rows):
        name = row.name
        if row.baseline is not None:
            last = at + 1 == len(rows) or rows[at + 1].baseline is None
            name = f"{'└──' if last else '├──'} {name}{' (queued)' if row.queued else ''}"
        flat = row.flat()
        lines.append([name, row.rev[:7], *(_cell(flat.get(c)) for c in columns)])
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in lines
    )


def _revision(
    project: Project, history: History, name: str
) -> tuple[Revision, refs.Experiment | None]:
    """An experiment's name, else any git revision."""
    try:
        experiment = refs.find(project.root, name)
    except ReproError:
        return history.resolve(name), None
    return Revision(experiment.name, experiment.sha), experiment


def cmd_diff(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    old, new = records(
        history,
        _object_bytes(project),
        [_revision(project, history, args.a_rev), _revision(project, history, args.b_rev)],
    )
    before, after = old.flat(), new.flat()
    changes: dict[str, dict[str, Any]] = {}
    for column in dict.fromkeys([*before, *after]):
        a, b = before.get(column), after.get(column)
        if a == b:
            continue
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        changes[column] = {"old": a, "new": b, "diff": b - a if numbers else None}  # type: ignore[operator]
    if args.json:
        ui.out(json.dumps(changes, indent=2, default=str))
    elif not changes:
        ui.info(f"No differences in params or metrics between {args.a_rev} and {args.b_rev}.")
    else:
        width = max(len(column) for column in changes)
        for column, change in changes.items():
            delta = f"  ({change['diff']:+.6g})" if change["diff"] is not None else ""
            ui.out(
                f"{column.ljust(width)}  {_cell(change['old'])} -> {_cell(change['new'])}{delta}"
            )
    return 0


def cmd_apply(args: argparse.Namespace, ui: UI) -> int:
    from repro.experiments.apply import apply

    project = open_project(ui)
    experiment = refs.find(project.root, args.name)
    if experiment.queued:
        raise ReproError(f"'{args.name}' is queued and has no results yet; run it first")
    with project.lock(args.wait):
        written = apply(project, experiment.sha, since="HEAD", force=args.force)
    for path in written:
        ui.info(f"M\t{path}")
    ui.info(f"Applied experiment '{experiment.name}'; 'git diff' shows what it changed.")
    return 0


def cmd_branch(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    experiment = refs.find(project.root, args.name)
    done = refs.git(project.root, "check-ref-format", "--branch", args.branch, check=False)
    if not done.strip():
        raise UsageError(f"'{args.branch}' is not a valid branch name")
    exists = refs.git(
        project.root, "rev-parse", "--verify", "--quiet", f"refs/heads/{args.branch}", check=False
    )
    if exists.strip():
        raise ReproError(f"branch '{args.branch}' already exists; choose another name")
    refs.git(project.root, "branch", "--", args.branch, experiment.sha)
    ui.info(f"Branch '{args.branch}' now holds experiment '{experiment.name}'.")
    return 0


def cmd_remove(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    everything = refs.listed(project.root)
    if args.names and (args.all or args.queue):
        raise UsageError("give experiment names, or --all, or --queue; not both")
    if args.all:
        chosen = everything
    elif args.queue:
        chosen = [e for e in everything if e.queued]
    elif args.names:
        chosen = [refs.find(project.root, name, everything) for name in args.names]
    else:
        raise UsageError("name the experiments to remove, or give --all or --queue")
    for experiment in chosen:
        refs.git(project.root, "update-ref", "-d", experiment.ref, experiment.sha)
    ui.info(f"Removed {len(chosen)} experiment{'s' if len(chosen) != 1 else ''}.")
    return 0


def _summary(verb: str, summary: Any, ui: UI) -> None:
    ui.info(f"{verb} {summary.transferred} object(s); {summary.already_present} already there.")
    if not summary.ok:
        raise ReproError(
            f"{len(summary.missing) + len(summary.failed)} object(s) could not be "
            f"{verb.lower()}; push them from a machine that has them"
        )


def cmd_push(args: argparse.Namespace, ui: UI) -> int:
    from repro.experiments import share

    project = open_project(ui)
    chosen = [refs.find(project.root, name) for name in args.names]
    summary = share.push(project, args.git_remote, chosen, ui.progress)
    ui.info(f"Pushed {len(chosen)} experiment(s) to '{args.git_remote}'.")
    _summary("Pushed", summary, ui)
    return 0


def cmd_pull(args: argparse.Namespace, ui: UI) -> int:
    from repro.experiments import share

    project = open_project(ui)
    summary = share.pull(project, args.git_remote, args.names, ui.progress)
    ui.info(f"Pulled {len(args.names)} experiment(s) from '{args.git_remote}'.")
    _summary("Fetched", summary, ui)
    return 0
