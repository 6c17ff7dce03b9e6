"""push / fetch / pull, status -c, fsck -r: objects between the cache and a remote."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.history.needs import Needs, needs
from repro.history.revisions import WORKSPACE, History, Revision
from repro.pipeline.graph import build
from repro.pipeline.targets import resolve_targets
from repro.project import Project
from repro.remote_select import open_named_remote
from repro.remotes.base import Remote
from repro.runners import choose_runner
from repro.workspace import outputs
from repro.workspace.checkout import checkout

if TYPE_CHECKING:
    from repro.objects.transfer import Transfer


def _revisions(project: Project, args: argparse.Namespace) -> list[Revision]:
    history = History(project.root)
    revisions = [Revision(WORKSPACE, None)]
    if args.all_branches or args.all_tags or args.all_commits:
        revisions += history.revisions(args.all_branches, args.all_tags, args.all_commits)
    return revisions


def _needs(project: Project, args: argparse.Namespace) -> Needs:
    history = History(project.root)
    only = None
    if getattr(args, "targets", None):
        stages = project.stages()
        only = [s.address for s in resolve_targets(project, stages, args.targets)]
    return needs(history, _revisions(project, args), only)


def _size(count: int, nbytes: int) -> str:
    return f"{count} object{'s' if count != 1 else ''} ({nbytes / 1e6:.1f} MB)"


def _report(summary: Any, verb: str, ui: UI) -> None:
    ui.info(
        f"{verb} {_size(summary.transferred, summary.transferred_bytes)}; "
        f"{summary.already_present} already there."
    )
    problems = [f"missing: {oid}" for oid in summary.missing]
    problems += [str(f.error) for f in summary.failed]
    if problems:
        for line in problems[:10]:
            ui.warn(line)
        hint = (
            "run the stages that make them, or pull from where they are"
            if verb == "Pushed"
            else "push them from a machine that has them"
        )
        raise ReproError(f"{len(problems)} object(s) could not be {verb.lower()}; {hint}")


def cmd_push(args: argparse.Namespace, ui: UI) -> int:
    from repro.objects.transfer import Transfer

    project = open_project(ui)
    remote = open_named_remote(project, args.remote)
    try:
        prepare: Callable[[], None] | None = getattr(remote, "prepare_put", None)
        if prepare is not None:
            prepare()  # its login overlaps the reading of the outputs below
        outputs.catch_edits_before_push(project)
        wanted = _needs(project, args)
        transfer = Transfer(remote, project.cache_dir, args.jobs, ui.progress)
        summary = transfer.push(sorted(wanted.objects))
        if args.run_cache:
            _push_runs(project, transfer, ui)
        if args.images:
            from repro.runners.images import push_images

            runner = choose_runner(project.config)
            sent, there = push_images(runner, remote, wanted.images, project.tmp_dir)
            ui.info(f"Pushed {sent} image(s); {there} already there.")
    finally:
        remote.close()
    _report(summary, "Pushed", ui)
    return 0


def cmd_fetch(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    remote = open_named_remote(project, args.remote)
    try:
        _fetch(project, remote, args, ui)
    finally:
        remote.close()
    return 0


def _fetch(project: Project, remote: Remote, args: argparse.Namespace, ui: UI) -> None:
    from repro.objects.transfer import Transfer

    wanted = _needs(project, args)
    transfer = Transfer(remote, project.cache_dir, args.jobs, ui.progress)
    summary = transfer.fetch(sorted(wanted.objects))
    if args.run_cache:
        _fetch_runs(project, transfer, ui)
    if args.images:
        from repro.runners.images import pull_images

        names = _image_names(project, args)
        runner = choose_runner(project.config)
        loaded, absent = pull_images(runner, remote, wanted.images, project.tmp_dir, names)
        ui.info(f"Loaded {loaded} image(s).")
        if absent:
            raise ReproError(
                f"image {absent[0][:19]}… is not on the remote; 'repro push --images' it "
                "from a host that has it"
            )
    _report(summary, "Fetched", ui)


def _image_names(project: Project, args: argparse.Namespace) -> dict[str, set[str]]:
    """The names stage files of the chosen revisions give each pinned image ID."""
    history = History(project.root)
    names: dict[str, set[str]] = {}
    for revision in _revisions(project, args):
        for stage in history.stages_at(revision):
            if stage.image is not None and stage.image.id:
                names.setdefault(stage.image.id, set()).add(stage.image.name)
    return names


def cmd_pull(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    remote = open_named_remote(project, args.remote)
    with project.lock(args.wait):
        try:
            _fetch(project, remote, args, ui)
        finally:
            remote.close()
        stages = project.stages()
        build(stages)
        chosen = resolve_targets(project, stages, args.targets)
        result = checkout(project, chosen, force=False, prune=False)
    for path in result.added:
        ui.info(f"A\t{path}")
    for path in result.changed:
        ui.info(f"M\t{path}")
    if result.missing:
        raise ReproError(f"still not in the cache after the pull: {', '.join(result.missing)}")
    return 0


def _push_runs(project: Project, transfer: Transfer, ui: UI) -> None:
    """Push every run-cache entry the remote lacks, after the objects it records."""
    from repro.objects import runs
    from repro.pipeline import runcache

    run_keys = runs.run_keys(project.cache_dir)
    keys = {runs.entry_key(run_key): run_key for run_key in run_keys}
    present = transfer.remote.exists(keys)
    objects: set[str] = set()
    for run_key in run_keys:
        objects.update((runcache.lookup(project.cache_dir, run_key) or {}).values())
    transfer.push(sorted(objects))
    for key, run_key in keys.items():
        if key not in present:
            transfer.remote.put(runs.entry_path(project.cache_dir, run_key), key)
    ui.info(f"Pushed {len(keys.keys() - present)} run-cache entries.")


def _fetch_runs(project: Project, transfer: Transfer, ui: UI) -> None:
    """Fetch every run-cache entry the cache lacks, then the objects they record."""
    from repro.objects import runs
    from repro.pipeline import runcache

    count = 0
    objects: set[str] = set()
    for key in transfer.remote.list(runs.PREFIX):
        run_key = runs.run_key_of(key)
        if run_key is None:
            continue
        dest = runs.entry_path(project.cache_dir, run_key)
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        transfer.remote.get(key, tmp)
        try:
            json.loads(tmp.read_text(encoding="utf-8"))
        except ValueError:
            tmp.unlink(missing_ok=True)
            ui.warn(f"run-cache entry {key} on the remote is malformed; skipped")
            continue
        os.replace(tmp, dest)
        objects.update((runcache.lookup(project.cache_dir, run_key) or {}).values())
        count += 1
    transfer.fetch(sorted(objects))
    ui.info(f"Fetched {count} run-cache entries.")


def cloud_status(args: argparse.Namespace, ui: UI) -> int:
    """``repro status -c``: what the cache and the remote each lack."""
    from repro.objects.transfer import Transfer

    project = open_project(ui)
    remote = open_named_remote(project, args.remote)
    args.all_branches = args.all_tags = args.all_commits = False
    try:
        states = Transfer(remote, project.cache_dir).status(sorted(_needs(project, args).objects))
    finally:
        remote.close()
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    out_of_sync = {k: v for k, v in counts.items() if k != "ok"}
    if args.json:
        ui.out(json.dumps(counts, sort_keys=True))
    elif not out_of_sync:
        ui.info(f"Cache and remote are in sync ({counts.get('ok', 0)} objects).")
    else:
        labels = {
            "new": "only in the cache (push)",
            "deleted": "only on the remote (fetch)",
            "missing": "in neither",
        }
        for state, count in sorted(out_of_sync.items()):
            ui.out(f"\t{labels[state]}: {count}")
    return 1 if out_of_sync else 0


def fsck_remote(args: argparse.Namespace, ui: UI) -> int:
    """``repro fsck -r REMOTE``: re-hash every object of the remote."""
    from repro.objects import transfer

    project = open_project(ui)
    remote = open_named_remote(project, args.remote)
    try:
        problems = transfer.verify_remote(remote, progress=ui.progress)
    finally:
        remote.close()
    for problem in problems:
        ui.out(problem)
    if problems:
        raise ReproError(f"{len(problems)} problem(s) on the remote; push good copies again")
    ui.info("Remote is intact.")
    return 0


def scratch_dir(project: Project) -> Path:
    return project.tmp_dir
