"""doctor: what repro sees of this machine, for bug reports and set-up checks.

Exits 1 when anything it checks is broken (no engine, an unusable cache, a remote that
cannot be opened), so that scripts can use it as a gate.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from repro import __version__
from repro.cli.ui import UI
from repro.errors import ReproError
from repro.project import Project, find_root

if TYPE_CHECKING:
    from repro.runners.base import About


def cmd_doctor(args: argparse.Namespace, ui: UI) -> int:
    ui.out(f"repro {__version__} on Python {platform.python_version()} ({sys.platform})")
    try:
        project: Project | None = Project(find_root(Path.cwd()))
    except ReproError:
        project = None
    broken = _check_runner(project, ui)
    if project is None:
        ui.out("Project: none here")
    else:
        ui.out(f"Project: {project.root}")
        broken += _check_cache(project, ui)
        broken += _check_remotes(project, ui)
        broken += _check_scheduler(project, ui)
    if broken:
        raise ReproError(f"broken: {', '.join(broken)}; see the lines above for what to fix")
    return 0


def _check_runner(project: Project | None, ui: UI) -> list[str]:
    """The runner core.runner names must exist, and its engine answer."""
    from repro.runners import choose_runner

    try:
        runner = choose_runner(project.config if project is not None else None)
    except ReproError as exc:
        ui.out(f"Runner: {exc}")
        return ["core.runner"]
    about = runner.about()
    if about.problem is not None:
        ui.out(f"{about.engine}: unreachable ({about.problem})")
        return [f"the {about.engine}"]
    where = f" on {about.platform}" if about.platform else ""
    ui.out(f"{about.engine}: {about.version}{where}")
    return _check_host(project, about, ui)


def _check_host(project: Project | None, about: About, ui: UI) -> list[str]:
    """Which engine on which host, and whether stages can mount the project from there."""
    from repro import host

    if about.product is None:  # a runner that does not tell
        return []
    how = "natively" if about.shared is None else f"in a VM sharing {', '.join(about.shared)}"
    rootless = ", rootless" if about.rootless else ""
    ui.out(f"Host: {host.platform()}; {about.product}{rootless} runs stages {how}")
    if project is None or about.shares(os.path.realpath(project.root)):
        return []
    ui.out(
        f"Bind mounts: {project.root} is outside the folders {about.product} shares with its "
        "VM, so stages cannot see it; move the project under one of them, or share its "
        f"folder in {about.product}'s settings"
    )
    return ["the project's folder"]


def _check_cache(project: Project, ui: UI) -> list[str]:
    """The cache folder must exist (or be creatable) and take new files."""
    try:
        cache_dir = project.cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".doctor-"):
            pass
    except ReproError as exc:
        ui.out(f"Cache: unusable ({exc})")
        return ["the cache"]
    except OSError as exc:
        where = exc.filename or project.config.get("cache.dir") or ".repro/cache"
        ui.out(f"Cache: unusable: {where}: {exc.strerror or exc}; fix or unset cache.dir")
        return ["the cache"]
    ui.out(f"Cache: {cache_dir}")
    link = "hardlink" if project.materialiser.can_link() else "copy"
    if project.link_type == "reflink":
        link = "reflink where the filesystem can, else copy"
    chosen = project.config.get("cache.type") or f"{project.link_type} (the default for this user)"
    ui.out(f"Cache type: {chosen} (in effect: {link})")
    return []


def _check_remotes(project: Project, ui: UI) -> list[str]:
    """Every remote must name a URL a backend can open; the default must exist."""
    from repro.remote_select import open_named_remote

    broken = []
    remotes = project.config.remotes()
    default = project.config.get("core.remote")
    for name, options in sorted(remotes.items()):
        mark = " (default)" if name == default else ""
        try:
            open_named_remote(project, name)
        except ReproError as exc:
            ui.out(f"Remote {name}{mark}: misconfigured ({exc})")
            broken.append(f"remote '{name}'")
            continue
        ui.out(f"Remote {name}{mark}: {options.get('url')}")
    if default and default not in remotes:
        ui.out(
            f"Remote: core.remote names '{default}', which does not exist; "
            "set it with 'repro remote default NAME'"
        )
        broken.append("core.remote")
    if not remotes:
        ui.out("Remotes: none")
    return broken


def _check_scheduler(project: Project, ui: UI) -> list[str]:
    """A cluster named by core.scheduler must answer, and each of its workers' engines."""
    scheduler = project.config.get("core.scheduler") or "local"
    if scheduler == "local":
        ui.out("Scheduler: local (stages run on this machine)")
        return []
    from repro.cluster.client import describe

    try:
        lines, broken = describe(scheduler)
    except ReproError as exc:
        ui.out(f"Scheduler: {exc}")
        return ["core.scheduler"]
    for line in lines:
        ui.out(line)
    return broken
