"""DVC's settings in repro's words: the remotes of ``.dvc/config`` (secrets from
``config.local``), the default remote, the link type, and where DVC keeps its cache and its
hash memo.

Both config files are git-config style INI (DVC writes them with ConfigObj, which Python's
configparser reads once the quotes around section names are dropped).
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path
from typing import NamedTuple

from repro.config import SECRET_OPTIONS
from repro.errors import ReproError
from repro.remotes import BACKENDS, GENERIC_KEYS, scheme_of

DVC_DIR = ".dvc"
_REMOTE_SECTION = re.compile(r"""^'?remote "(.+)"'?$""")
# DVC's link types that repro has too; the first DVC lists that repro knows is taken.
_LINK_TYPES = ("hardlink", "copy", "reflink")


class Setting(NamedTuple):
    """One repro config key to set, and whether it goes to config.local."""

    key: str
    value: str
    local: bool


class Settings(NamedTuple):
    values: list[Setting]
    cache_dir: Path  # DVC's cache, resolved
    site_cache_dir: str  # where DVC keeps per-repository memos (its hash memo among them)
    warnings: list[str]


def _read(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ReproError(f"{path} does not parse ({first}); fix it and retry") from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def read(root: Path) -> Settings:
    """repro's settings for the DVC project at ``root``; refusals say what to fix."""
    tracked = _read(root / DVC_DIR / "config")
    local = _read(root / DVC_DIR / "config.local")
    merged: dict[str, dict[str, str]] = {}
    for sections in (tracked, local):
        for section, options in sections.items():
            merged.setdefault(section, {}).update(options)
    values: list[Setting] = []
    warnings: list[str] = []
    remotes = []
    for section, options in merged.items():
        match = _REMOTE_SECTION.match(section)
        if match is None:
            continue
        name = match.group(1)
        secret_in_git = any(o in SECRET_OPTIONS for o in tracked.get(section, {}))
        converted = _remote(name, options, warnings)
        if converted:
            remotes.append(name)
            values.extend(converted)
            if secret_in_git:
                warnings.append(
                    f"remote '{name}': a secret in DVC's tracked .dvc/config went to "
                    ".repro/config.local; remove it from .dvc/config (and git history)"
                )
    core = merged.get("core", {})
    default = core.get("remote")
    if default in remotes:
        values.append(Setting("core.remote", str(default), "remote" in local.get("core", {})))
    elif default:
        warnings.append(f"the default remote '{default}' was not converted; none is set")
    cache = merged.get("cache", {})
    link = next((t for t in cache.get("type", "").split(",") if t.strip() in _LINK_TYPES), None)
    if link:
        values.append(Setting("cache.type", link.strip(), "type" in local.get("cache", {})))
    site = os.environ.get("DVC_SITE_CACHE_DIR") or core.get("site_cache_dir") or "/var/tmp/dvc"
    return Settings(values, _cache_dir(root, cache.get("dir")), site, warnings)


def _remote(name: str, options: dict[str, str], warnings: list[str]) -> list[Setting]:
    url = options.get("url", "")
    try:
        scheme = scheme_of(url)
    except ReproError:
        warnings.append(f"remote '{name}' ({url}) skipped: repro has no backend for it")
        return []
    known = BACKENDS[scheme].options | GENERIC_KEYS
    converted = []
    for option, value in options.items():
        if option in known:
            key = f"remote.{name}.{option}"
            converted.append(Setting(key, value, option in SECRET_OPTIONS))
        else:
            warnings.append(f"remote '{name}': option '{option}' dropped (repro has no such)")
    return converted


def _cache_dir(root: Path, configured: str | None) -> Path:
    """DVC's cache: ``cache.dir`` (relative to .dvc/, as DVC reads it) or ``.dvc/cache``."""
    folder = root / DVC_DIR
    path = folder / os.path.expanduser(configured) if configured else folder / "cache"
    return Path(os.path.realpath(path))
