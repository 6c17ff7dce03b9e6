"""gc: delete cache (and with -c remote) objects that no kept revision uses."""

from __future__ import annotations

import argparse
import sys

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError, UsageError
from repro.history.needs import needs
from repro.history.revisions import WORKSPACE, History, Revision
from repro.objects import runs
from repro.pipeline import runcache
from repro.project import Project


def _keep(project: Project, args: argparse.Namespace) -> frozenset[str]:
    """The objects the chosen revisions and every experiment need (a folder's files are kept
    with it)."""
    history = History(project.root)
    revisions = [Revision(WORKSPACE, None)]
    # Every experiment too: one loses its data only when ``exp remove`` drops it.
    revisions += history.revisions(
        args.all_branches, args.all_tags, args.all_commits, experiments=True
    )
    return needs(history, revisions).objects


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
        garbage = project.cache.garbage(kept)
        count, size = len(garbage.objects), garbage.size
        ui.info(f"Keeping {garbage.kept} objects; {count} unused ({size / 1e6:.1f} MB).")
        if count and not args.force:
            if not sys.stdin.isatty():
                raise ReproError("gc deletes objects for good; run again with -f to confirm")
            answer = input("Delete them? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                ui.info("Nothing deleted.")
                return 0
        project.cache.delete(garbage.objects)
        _drop_dead_runs(project)
        ui.info(f"Freed {size / 1e6:.1f} MB ({count} objects).")
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
