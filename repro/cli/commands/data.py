"""Verbs on tracked data: add, status, checkout, commit, unprotect, remove, fsck."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.memo import status as status_memo
from repro.paths import from_user, inside, overlaps, refuse_case_twins
from repro.pipeline.graph import build
from repro.pipeline.status import stage_changes
from repro.pipeline.targets import resolve_targets, stages_named
from repro.project import Project
from repro.stages import pipeline_file
from repro.stages import stage as stage_mod
from repro.stages.stage import STAGE_SUFFIX, Out, Stage
from repro.workspace import gitignore, outputs
from repro.workspace.checkout import checkout
from repro.workspace.materialise import unprotect


@contextmanager
def _locked(args: argparse.Namespace, ui: UI) -> Iterator[tuple[Project, list[Stage]]]:
    """The project and its stages, under the project's lock (waited for with --wait)."""
    project = open_project(ui)
    with project.lock(args.wait):
        yield project, project.stages()


def _relative(project: Project, raw: str, what: str) -> str:
    """A path the user gave (relative to the current folder), relative to the root."""
    return from_user(project.root, Path.cwd(), raw, what)


def cmd_add(args: argparse.Namespace, ui: UI) -> int:
    with _locked(args, ui) as (project, stages):
        for raw in args.paths:
            rel = _relative(project, raw, "path")
            if rel.endswith(STAGE_SUFFIX):
                raise ReproError(f"'{raw}' is a stage file; add the data it names instead")
            stage_path = rel + STAGE_SUFFIX
            # Refused before any byte enters the cache: a name its stage file cannot hold.
            stage_mod.check(Stage(path=stage_path, outs=(Out(rel),)))
            for other in stages:
                if other.path != stage_path and any(overlaps(rel, o) for o in other.out_paths()):
                    raise ReproError(
                        f"'{rel}' overlaps output '{other.out_paths()[0]}' of '{other.path}'; "
                        "an output belongs to one stage"
                    )
            others = [o for other in stages if other.path != stage_path for o in other.out_paths()]
            refuse_case_twins([rel], others)
            if not os.path.lexists(inside(project.root, rel, "path")):
                raise ReproError(f"'{raw}' does not exist")
            out = outputs.commit(project, Out(rel))
            stage = Stage(path=stage_path, outs=(out,)).with_md5()
            stage_mod.write(project.root, stage)
            gitignore.add(project.root, rel)
            stages = [s for s in stages if s.path != stage_path] + [stage]
            ignore = os.path.join(os.path.dirname(rel), ".gitignore")
            ui.info(f"Added '{rel}'. To track it with git: git add {stage_path} {ignore}")
    return 0


def cmd_status(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    stages = project.stages()
    graph = build(stages)
    chosen = resolve_targets(project, stages, args.targets)
    resolver = None
    images: dict[str, str | None] = {}  # what the engine answered, for the memo
    if any(s.image is not None and s.image.id for s in chosen):
        resolver = _image_resolver(project, ui, images)
    seen = status_memo.Seen()
    project.observer = seen
    report: dict[str, list[str]] = {}
    for stage in chosen:
        changes = stage_changes(project, stage, resolver)
        if changes:
            report[stage.address] = [c.message for c in changes]
    if not report and not args.targets:  # every stage judged up to date: the memo may say so
        project.untracked  # noqa: B018 - planted memos are refused before one is written
        observed = [seen for stage in stages for seen in _observed(project, stage)]
        status_memo.save(project.root, observed, seen, images if resolver is not None else None)
    if args.json:
        ui.out(json.dumps(report, indent=2, sort_keys=True))
    elif not report:
        ui.info(status_memo.UP_TO_DATE)
    else:
        for name in graph.order(report):  # upstream first, as the pipeline runs
            reasons = report[name]
            ui.out(f"{name}:")
            for reason in reasons:
                ui.out(f"\t{reason}")
    return 1 if report else 0


def watched_paths(stage: Stage) -> list[str] | None:
    """The workspace paths whose bytes decide whether ``stage`` is up to date: what each of its
    dependencies watches (stages/deps/base.py), and its outputs; all the status memo watches
    of it. None when a dependency's value does not follow from files alone: the memo, blind
    to it, would answer "up to date" wrongly."""
    paths: list[str] = []
    for dep in stage.deps:
        watched = dep.watched()
        if watched is None:
            return None
        paths.extend(watched)
    return paths + stage.out_paths()


def _observed(project: Project, stage: Stage) -> list[status_memo.Observed | None]:
    """``stage`` as the status memo keeps it, with the lock of a repro.yaml stage (outputs,
    watched paths: none); [None] when its files changed since it was judged."""
    paths = list(dict.fromkeys((stage.path, stage.record_path)))
    try:
        files = {path: (project.root / path).read_bytes() for path in paths}
        same = stage in stage_mod.load_file(project.root, stage.path)
        if not same or files != {path: (project.root / path).read_bytes() for path in paths}:
            return [None]
    except (OSError, ReproError):
        return [None]
    pinned = stage.image.name if stage.image is not None and stage.image.id else None
    return [
        status_memo.Observed(
            stage.path, files.pop(stage.path), stage.out_paths(), watched_paths(stage), pinned
        ),
        *(status_memo.Observed(path, data, [], [], None) for path, data in files.items()),
    ]


def _image_resolver(
    project: Project, ui: UI, seen: dict[str, str | None]
) -> Callable[[str], str | None] | None:
    """Resolve image names through the runner's engine, noting each answer in ``seen``;
    without an engine, skip the image check and say so."""
    from repro.runners import choose_runner

    resolve = choose_runner(project.config).resolver()
    try:
        resolve("repro-probe-nonexistent:none")
    except ReproError as exc:
        ui.warn(f"image drift not checked: {exc}")
        return None

    def resolve_and_note(name: str) -> str | None:
        seen[name] = resolve(name)
        return seen[name]

    return resolve_and_note


def cmd_checkout(args: argparse.Namespace, ui: UI) -> int:
    with _locked(args, ui) as (project, stages):
        build(stages)
        chosen = resolve_targets(project, stages, args.targets)
        result = checkout(project, chosen, force=args.force, prune=not args.targets)
    for path in result.added:
        ui.info(f"A\t{path}")
    for path in result.changed:
        ui.info(f"M\t{path}")
    for path in result.removed:
        ui.info(f"D\t{path}")
    for path in result.kept:
        ui.warn(f"'{path}' is no longer tracked but was changed since repro made it; kept")
    if result.missing:
        shown = ", ".join(result.missing)
        raise ReproError(f"not in the cache: {shown}; run 'repro pull' to fetch them")
    return 0


def cmd_commit(args: argparse.Namespace, ui: UI) -> int:
    from repro.pipeline.reproduce import commit

    with _locked(args, ui) as (project, stages):
        build(stages)
        for stage in resolve_targets(project, stages, args.targets):
            commit(project, stage)
            ui.info(f"Committed '{stage.address}'")
    return 0


def cmd_unprotect(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    for raw in args.paths:
        rel = _relative(project, raw, "path")
        full = inside(project.root, rel, "path")
        if not os.path.lexists(full):
            raise ReproError(f"'{raw}' does not exist")
        unprotect(full)
        ui.info(f"Unprotected '{rel}': it is now a private writable copy")
    return 0


def cmd_remove(args: argparse.Namespace, ui: UI) -> int:
    with _locked(args, ui) as (project, stages):
        for target in args.targets:
            matches = stages_named(project, stages, target)
            if not matches:
                raise ReproError(
                    f"'{target}' is not a stage file nor a stage's name; "
                    "'repro pipeline list' shows the stages"
                )
            for stage in matches:
                _remove(project, stage, args.outs)
                ui.info(
                    f"Removed stage '{stage.address}'" + (" and its outputs" if args.outs else "")
                )
    return 0


def _remove(project: Project, stage: Stage, with_outs: bool) -> None:
    """Drop a stage: its outputs' .gitignore lines, and them too ``with_outs``."""
    for out in stage.outs:
        if out.cache:
            gitignore.remove(project.root, out.path)
        if with_outs:
            outputs.remove(project, out.path)
        else:
            project.ledger.drop(out.path)
    if stage.name is None:
        inside(project.root, stage.path, "stage file").unlink()
    else:
        pipeline_file.forget(project.root, stage)


def cmd_fsck(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    problems = project.cache.verify()
    for problem in problems:
        ui.out(problem)
    if problems:
        raise ReproError(
            f"{len(problems)} problem(s) in the cache; remove damaged objects and "
            "'repro pull' or re-run the stages that make them"
        )
    count = sum(1 for _ in project.cache.all_objects())
    ui.info(f"Cache is intact: {count} objects checked.")
    return 0
