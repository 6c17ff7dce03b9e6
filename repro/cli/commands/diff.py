"""diff: the files added, deleted, renamed and modified inside tracked data between two
revisions, as a list with a summary, a Markdown table, or JSON shaped like ``dvc diff --json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.history.diff import DataDiff, Entry, diff_data
from repro.history.revisions import WORKSPACE, History
from repro.paths import from_user

# The states in the order dvc diff prints them, with the key --json gives each.
STATES = (
    ("added", "Added"),
    ("deleted", "Deleted"),
    ("renamed", "Renamed"),
    ("modified", "Modified"),
)


def cmd_diff(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    history = History(project.root)
    old = history.resolve(args.a_rev or "HEAD")
    new = history.resolve(args.b_rev or WORKSPACE)
    targets = [from_user(project.root, Path.cwd(), t, "target") for t in args.targets]
    found = diff_data(project, history, old, new, targets)
    if found.not_in_cache:
        count = len(found.not_in_cache)
        ui.warn(
            f"{count} folder{'s' if count > 1 else ''} compared as a whole: "
            f"{'their manifests are' if count > 1 else 'its manifest is'} not in the cache; "
            "run 'repro fetch -a -T' (or 'repro pull') to compare the files inside"
        )
    if args.json:
        ui.out(json.dumps(_as_json(found), indent=2))
    elif args.md:
        ui.out(_as_markdown(found))
    elif not found:
        ui.info(f"No changes in tracked data between {old.label} and {new.label}.")
    else:
        ui.out(_as_text(found))
    return 0


def _as_json(found: DataDiff) -> dict[str, list[dict[str, Any]]]:
    report: dict[str, list[dict[str, Any]]] = {
        "added": [_one(e.path, e.new_md5, e.new_size) for e in found.added],
        "deleted": [_one(e.path, e.old_md5, e.old_size) for e in found.deleted],
        "modified": [
            _one(e.path, {"old": e.old_md5, "new": e.new_md5}, _pair(e.old_size, e.new_size))
            for e in found.modified
        ],
        "renamed": [
            _one({"old": e.old_path, "new": e.path}, e.new_md5, e.new_size) for e in found.renamed
        ],
        "not in cache": [
            {"path": u.path, "hash": u.md5, "revision": u.label} for u in found.not_in_cache
        ],
    }
    return report


def _one(path: Any, md5: Any, size: Any) -> dict[str, Any]:
    entry = {"path": path, "hash": md5}
    if size is not None:  # a folder's size is not known without reading every object
        entry["size"] = size
    return entry


def _pair(old: int | None, new: int | None) -> dict[str, int | None] | None:
    return None if old is None and new is None else {"old": old, "new": new}


def _shown(entry: Entry) -> str:
    return f"{entry.old_path} -> {entry.path}" if entry.old_path is not None else entry.path


def _as_text(found: DataDiff) -> str:
    lines: list[str] = []
    for key, title in STATES:
        entries: list[Entry] = getattr(found, key)
        if entries:
            lines.append(f"{title}:")
            lines += [f"    {_shown(e)}" for e in entries]
            lines.append("")
    if found.not_in_cache:
        lines.append("Not in cache:")
        lines += [f"    {u.path} ({u.label})" for u in found.not_in_cache]
        lines.append("")
    lines.append(_summary(found))
    return "\n".join(lines)


def _as_markdown(found: DataDiff) -> str:
    rows = ["| Status | Path |", "|--------|------|"]
    for key, _title in STATES:
        rows += [f"| {key} | {_shown(e)} |" for e in getattr(found, key)]
    rows += [f"| not in cache | {u.path} |" for u in found.not_in_cache]
    return "\n".join(rows) + "\n\n" + _summary(found)


def _summary(found: DataDiff) -> str:
    """Files only (as dvc counts them), with the bytes each state adds, removes or changes."""
    files = {key: [e for e in getattr(found, key) if not e.is_folder] for key, _ in STATES}
    added = sum(e.new_size or 0 for e in files["added"])
    deleted = sum(e.old_size or 0 for e in files["deleted"])
    change = sum((e.new_size or 0) - (e.old_size or 0) for e in files["modified"])
    parts = [
        f"{len(files['added'])} added ({_bytes(added)})",
        f"{len(files['deleted'])} deleted ({_bytes(deleted)})",
        f"{len(files['renamed'])} renamed",
        f"{len(files['modified'])} modified ({'+' if change >= 0 else '-'}{_bytes(abs(change))})",
    ]
    if found.not_in_cache:
        parts.append(f"{len(found.not_in_cache)} not in cache")
    return "files summary: " + ", ".join(parts)


def _bytes(size: int) -> str:
    """Decimal units, as ls -h --si and DVC print them."""
    value, unit = float(size), "B"
    for larger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
