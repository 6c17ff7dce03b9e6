"""remote add / list / remove / default / modify."""

from __future__ import annotations

import argparse
import os

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.remotes import known_options, scheme_of


def cmd_add(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    scheme_of(args.url)  # refuses unknown schemes now, not at the first push
    url = args.url
    if "://" not in url and not os.path.isabs(url):
        # Relative folder paths are stored relative to the config file, as DVC does.
        url = os.path.relpath(os.path.abspath(url), project.repro_dir)
    with project.lock():
        if args.name in project.config.remotes() and not args.force:
            raise ReproError(f"remote '{args.name}' exists; use -f to overwrite it")
        project.config.set(f"remote.{args.name}.url", url, local=args.local)
        if args.default:
            project.config.set("core.remote", args.name, local=args.local)
    ui.info(f"Added remote '{args.name}' at {url}" + (" (default)" if args.default else ""))
    return 0


def cmd_list(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    default = project.config.get("core.remote")
    for name, options in sorted(project.config.remotes().items()):
        mark = "\t(default)" if name == default else ""
        ui.out(f"{name}\t{options.get('url', '')}{mark}")
    return 0


def cmd_remove(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    with project.lock():
        if not project.config.remove_remote(args.name):
            raise ReproError(f"no remote named '{args.name}'; 'repro remote list' shows them")
        for local in (False, True):
            if project.config.get("core.remote") == args.name:
                project.config.unset("core.remote", local=local)
    ui.info(f"Removed remote '{args.name}'")
    return 0


def cmd_default(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    if args.name is None:
        name = project.config.get("core.remote")
        if name is None:
            raise ReproError("no default remote; set one with 'repro remote default NAME'")
        ui.out(name)
        return 0
    if args.name not in project.config.remotes():
        raise ReproError(f"no remote named '{args.name}'; add it with 'repro remote add'")
    with project.lock():
        project.config.set("core.remote", args.name, local=args.local)
    return 0


def cmd_modify(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    remotes = project.config.remotes()
    if args.name not in remotes:
        raise ReproError(f"no remote named '{args.name}'; add it with 'repro remote add'")
    allowed = known_options(remotes[args.name].get("url", ""))
    if args.key not in allowed:
        raise ReproError(
            f"remote '{args.name}' has no option '{args.key}'; it knows: "
            f"{', '.join(sorted(allowed))}"
        )
    with project.lock():
        if args.unset:
            project.config.unset(f"remote.{args.name}.{args.key}", local=args.local)
        else:
            if args.value is None:
                raise ReproError("give a VALUE, or --unset")
            project.config.set(f"remote.{args.name}.{args.key}", args.value, local=args.local)
    return 0
