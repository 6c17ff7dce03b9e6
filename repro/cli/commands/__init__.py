"""One module per group of verbs; each verb is a plain function returning an exit code."""

from __future__ import annotations

from pathlib import Path

from repro.cli.ui import UI
from repro.project import Project, find_root


def open_project(ui: UI) -> Project:
    return Project(find_root(Path.cwd()), notify=ui.info, progress=ui.progress, warn=ui.warn)
