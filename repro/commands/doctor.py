"""doctor: what repro sees of this machine, for bug reports and set-up checks."""

from __future__ import annotations

import argparse
import platform
import sys

from repro import __version__
from repro.errors import ReproError
from repro.project import Project
from repro.ui import UI


def cmd_doctor(args: argparse.Namespace, ui: UI) -> int:
    from pathlib import Path

    ui.out(f"repro {__version__} on Python {platform.python_version()} ({sys.platform})")
    try:
        from repro.runners.docker import DockerRunner

        client = DockerRunner().client
        info = client.version()
        ui.out(f"Docker engine: {info.get('Version')} (API {info.get('ApiVersion')})")
    except ReproError as exc:
        ui.out(f"Docker engine: unreachable ({exc})")
    try:
        project = Project.find(Path.cwd())
    except ReproError:
        ui.out("Project: none here")
        return 0
    ui.out(f"Project: {project.root}")
    ui.out(f"Cache: {project.cache_dir}")
    link = "hardlink" if project.cache.can_link() else "copy"
    if project.link_type == "reflink":
        link = "reflink where the filesystem can, else copy"
    chosen = project.config.get("cache.type") or f"{project.link_type} (the default for this user)"
    ui.out(f"Cache type: {chosen} (in effect: {link})")
    remotes = project.config.remotes()
    default = project.config.get("core.remote")
    for name, options in sorted(remotes.items()):
        mark = " (default)" if name == default else ""
        ui.out(f"Remote {name}{mark}: {options.get('url')}")
    if not remotes:
        ui.out("Remotes: none")
    return 0
