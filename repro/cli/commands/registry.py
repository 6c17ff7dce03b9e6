"""ls, get, import, update: another repository that tracks data with repro, used as a data
registry."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.paths import from_user
from repro.pipeline.targets import resolve_targets
from repro.registry import download
from repro.registry.imports import Options, describe, import_data, import_of, update
from repro.registry.listing import listing
from repro.registry.source import Source, name_of


def cmd_ls(args: argparse.Namespace, ui: UI) -> int:
    with tempfile.TemporaryDirectory(prefix="repro-ls-") as scratch:
        source = Source(args.url, args.rev, Path(scratch))
        entries = listing(source, args.path, args.recursive)
    if args.json:
        ui.out(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    for entry in entries:
        size = "-" if entry.size is None else str(entry.size)
        ui.out(f"{size:>12}  {entry.path}{'/' if entry.is_dir else ''}")
    return 0


def cmd_get(args: argparse.Namespace, ui: UI) -> int:
    dest = Path(os.path.abspath(args.out or name_of(args.path)))
    if os.path.lexists(dest):
        raise ReproError(f"'{args.out or name_of(args.path)}' exists; remove it, or give -o")
    with tempfile.TemporaryDirectory(prefix="repro-get-") as scratch:
        source = Source(args.url, args.rev, Path(scratch))
        found = source.find(args.path)
        # Staged beside the destination: its files are moved there, not copied.
        with download.staging_store(dest.parent) as staged:
            object_id = download.fetch(source, found, staged, args.jobs, ui.progress)
            download.place(staged, object_id, dest)
    ui.info(f"Downloaded '{found.path}' of {source.label} to '{args.out or dest.name}'.")
    return 0


def cmd_import(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    out = from_user(project.root, Path.cwd(), args.out or name_of(args.path), "output")
    with project.lock(args.wait):
        stage = import_data(
            project, args.url, args.path, out, args.rev, Options(args.jobs, ui.progress)
        )
    ui.info(
        f"Imported {describe(stage)}. To track it with git: git add {stage.path} "
        f"{os.path.join(os.path.dirname(out), '.gitignore')}"
    )
    return 0


def cmd_update(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    with project.lock(args.wait):
        stages = project.stages()
        chosen = resolve_targets(project, stages, args.targets)
        if not chosen:
            raise ReproError(f"no stage is named '{args.targets[0]}'; name an import's stage file")
        for stage in chosen:
            import_of(stage)  # every target is an import, before any is updated
        for stage in chosen:
            done = update(project, stage, args.rev, Options(args.jobs, ui.progress))
            if done is None:
                ui.info(f"Import {describe(stage)} is up to date.")
            else:
                ui.info(f"Updated {describe(done)}.")
    return 0
