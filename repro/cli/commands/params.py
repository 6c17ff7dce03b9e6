"""params diff: the params stages use, compared between two revisions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.history.params import ABSENT, diff_params
from repro.history.revisions import WORKSPACE, History
from repro.stages.deps.params import canonical, shown


def cmd_diff(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    old_rev = history.resolve(args.a_rev or "HEAD")
    new_rev = history.resolve(args.b_rev or WORKSPACE)
    changes = [c for c in diff_params(history, old_rev, new_rev) if c.changed or args.all]
    if args.json:
        report: dict[str, dict[str, dict[str, Any]]] = {}
        for change in changes:
            report.setdefault(change.path, {})[change.key] = {
                "old": None if change.old is ABSENT else change.old,
                "new": None if change.new is ABSENT else change.new,
            }
        ui.out(json.dumps(report, indent=2, default=str))
    elif not changes:
        ui.info("No params changed." if not args.all else "No stage uses params.")
    else:
        rows = [["path", "param", old_rev.label, new_rev.label]]
        rows += [[c.path, c.key, _cell(c.old), _cell(c.new)] for c in changes]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        ui.out(
            "\n".join(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
                for row in rows
            )
        )
    return 0


def _cell(value: Any) -> str:
    return "-" if value is ABSENT else shown(canonical(value))
