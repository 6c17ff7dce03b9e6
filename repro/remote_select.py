"""Which remote a command means: the one named (or a URL or folder given instead of a name),
else core.remote; opened with its options.

The config is versioned with the code, so an old revision (``git checkout 0.1``) may predate
the remote. Then the remote of config.local (it is not in git, so it serves every revision)
is used, and failing that the one of the branch the user came from or the default branch.
"""

from __future__ import annotations

import configparser
import os
import subprocess

from repro.errors import ReproError
from repro.project import Project
from repro.remotes.base import Remote

NO_REMOTE = (
    "no remote is set at this revision; give -r URL, or add one with "
    "'repro remote add --local -d NAME URL', which serves every revision"
)
# Where the config of an older revision's future lives: the branch checked out before, then
# the usual names of the default branch.
_OTHER_REVISIONS = ("@{-1}", "refs/remotes/origin/HEAD", "main", "master")
_SHOWN = {"@{-1}": "the previous checkout", "refs/remotes/origin/HEAD": "origin's default branch"}


def open_named_remote(project: Project, name: str | None) -> Remote:
    """Open the remote ``name`` (a remote's name, a URL or a folder), else the default."""
    from repro.remotes import open_remote

    remotes = project.config.remotes()
    if name is not None and name not in remotes and _is_location(name):
        url = name if "://" in name else os.path.abspath(name)  # a folder, from the cwd
        _refuse_inside(project, url)
        return open_remote(url, {})
    name = name or project.config.get("core.remote")
    if name is None or name not in remotes or "url" not in remotes[name]:
        found = _remote_of_other_revision(project, name)
        if found is not None:
            url, options = found
            return open_remote(_from_config_dir(project, url), options)
        if name is None:
            raise ReproError(NO_REMOTE)
        raise ReproError(
            f"no remote named '{name}'; 'repro remote list' shows them, or give a URL or folder"
        )
    options = dict(remotes[name])
    url = options.pop("url")
    return open_remote(_from_config_dir(project, url), options)


def _is_location(word: str) -> bool:
    """A URL or folder path rather than a remote's name (names have no '/' or ':')."""
    return "/" in word or ":" in word or os.path.isdir(word)


def _from_config_dir(project: Project, url: str) -> str:
    if "://" not in url and not os.path.isabs(url):
        # Relative folder remotes are stored relative to the config file.
        url = os.path.normpath(os.path.join(project.repro_dir, url))
    _refuse_inside(project, url)
    return url


def _refuse_inside(project: Project, url: str) -> None:
    """A folder remote inside the work tree, .git or .repro (a cloned config could name
    ../.git/hooks) would have push write there: refused."""
    if "://" in url and not url.startswith("file://"):
        return
    from repro.paths import is_within, real_root

    real = os.path.realpath(url.removeprefix("file://"))
    base = real_root(project.root)
    if is_within(real, base):
        raise ReproError(
            f"remote folder {url} lies inside the project ({os.path.relpath(real, base)}), "
            "where push would write into the work tree or .git; keep remotes outside it"
        )


def _remote_of_other_revision(
    project: Project, wanted: str | None
) -> tuple[str, dict[str, str]] | None:
    """(url, options) of the remote ``wanted`` (None: the default) in the config of another
    revision: the branch checked out before this one, else the default branch."""
    for ref in _OTHER_REVISIONS:
        text = _git_show(project, f"{ref}:.repro/config")
        if text is None:
            continue
        parser = configparser.RawConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text)
        except configparser.Error:
            continue
        name = wanted or parser.get("core", "remote", fallback=None)
        section = f'remote "{name}"'
        if name is None or not parser.has_option(section, "url"):
            continue
        if project.warn is not None:
            where = _SHOWN.get(ref, f"'{ref}'")
            project.warn(f"using remote '{name}' from the config of {where}")
        options = dict(parser.items(section))
        # Options of the same remote in config.local (credentials) still apply.
        options.update(project.config.remotes().get(name, {}))
        options.pop("url", None)
        return parser.get(section, "url"), options
    return None


def _git_show(project: Project, spec: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "show", spec],
            cwd=project.root,
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None
