"""gc: delete cache (and with -c remote) objects that no kept revision uses."""

from __future__ import annotations

import argparse
import os
import sys

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError, UsageError
from repro.history.revisions import WORKSPACE, History, Revision
from repro.history.usage import needs
from repro.objects import runs
from repro.pipeline import runcache
from repro.project import Project


def _keep(project: Project, args: argparse.Namespace) -> set[str]:
    history = History(project.root)
    revisions = [Revision(WORKSPACE, None)]
    revisions += history.revisions(args.all_branches, args.all_tags, args.all_commits)
    kept = set(needs(history, revisions).objects)
    for oid in [o for o in kept if o.endswith(".dir")]:
        if project.cache.exists(oid):
            kept.update(md5 for _rel, md5 in project.cache.read_manifest(oid))
    return kept


def cmd_gc(args: argparse.Namespace, ui: UI) -> int:
    if not (args.workspace or args.all_branches or args.all_tags or args.all_commits):
        raise UsageError(
            "gc needs a scope of what to keep: -w (workspace), -a (branches), -T (tags) "
            "or --all-commits"
        )
    project = open_project(ui)
    project.untracked  # noqa: B018 - planted memos must not decide what is deleted
    with project.lock(args.wait):
        kept = _keep(project, args)
        doomed = [oid for oid in project.cache.all_objects() if oid not in kept]
        size = sum(os.lstat(project.cache.object_path(oid)).st_size for oid in doomed)
        ui.info(f"Keeping {len(kept)} objects; {len(doomed)} unused ({size / 1e6:.1f} MB).")
        if doomed and not args.force:
            if not sys.stdin.isatty():
                raise ReproError("gc deletes objects for good; run again with -f to confirm")
            answer = input("Delete them? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                ui.info("Nothing deleted.")
                return 0
        # Manifests go first: a kill mid-way must not leave one whose files are gone.
        for oid in sorted(doomed, key=lambda o: not o.endswith(".dir")):
            project.cache.object_path(oid).unlink(missing_ok=True)
        _drop_dead_runs(project)
        ui.info(f"Freed {size / 1e6:.1f} MB ({len(doomed)} objects).")
        if args.cloud:
            from repro.objects import transfer
            from repro.remote_select import open_named_remote

            remote = open_named_remote(project, args.remote)
            try:
                count, nbytes = transfer.gc_remote(remote, kept, project.cache_dir)
            finally:
                remote.close()
            ui.info(f"Removed {count} objects ({nbytes / 1e6:.1f} MB) from the remote.")
    return 0


def _drop_dead_runs(project: Project) -> None:
    """Run-cache entries whose outputs are gone can never be restored: drop them."""
    for run_key in runs.run_keys(project.cache_dir):
        recorded = runcache.lookup(project.cache_dir, run_key) or {}
        if any(not project.cache.exists(md5) for md5 in recorded.values()):
            runs.entry_path(project.cache_dir, run_key).unlink(missing_ok=True)
