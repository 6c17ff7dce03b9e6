from __future__ import annotations

import argparse

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.runners import check_runner_name


def cmd_config(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    config = project.config
    if args.unset:
        if args.value is not None:
            raise ReproError("--unset takes a key only")
        with project.lock():
            if not config.unset(args.key, local=args.local):
                raise ReproError(f"'{args.key}' is not set")
        return 0
    if args.value is None:
        value = config.get(args.key)
        if value is None:
            raise ReproError(f"'{args.key}' is not set")
        ui.out(value)
        return 0
    if args.key == "core.runner":
        check_runner_name(args.value)
    with project.lock():
        config.set(args.key, args.value, local=args.local)
    return 0
