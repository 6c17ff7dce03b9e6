"""Which remote a command means: the one named, else core.remote; opened with its options."""

from __future__ import annotations

import os

from repro.errors import ReproError
from repro.project import Project
from repro.remotes.base import Remote


def open_named_remote(project: Project, name: str | None) -> Remote:
    from repro.remotes import open_remote

    name = name or project.config.get("core.remote")
    remotes = project.config.remotes()
    if name is None:
        raise ReproError(
            "no remote given and no default set; add one with 'repro remote add -d NAME URL'"
        )
    if name not in remotes or "url" not in remotes[name]:
        raise ReproError(f"no remote named '{name}'; 'repro remote list' shows them")
    options = dict(remotes[name])
    url = options.pop("url")
    if "://" not in url and not os.path.isabs(url):
        # Relative folder remotes are stored relative to the config file.
        url = os.path.normpath(os.path.join(project.repro_dir, url))
    return open_remote(url, options)
