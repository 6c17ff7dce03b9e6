"""Project configuration: git-config style INI in .repro/config, overridden by config.local."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from repro.errors import ReproError

# Keys a user may set, with the values each allows (None: any). Remote options are open-ended
# per backend; core.runner's names are the runners' registry (repro.runners.RUNNERS), checked
# by the command that sets it and by every command that runs a stage.
KNOWN_KEYS: dict[str, tuple[str, ...] | None] = {
    "core.image": None,
    "core.runner": None,
    "core.remote": None,
    "core.jobs": None,
    "core.scheduler": None,  # a Dask scheduler's address (tcp://HOST:8786), or local
    "cache.dir": None,
    "cache.type": ("hardlink", "copy", "reflink"),
}
_REMOTE_KEY = re.compile(r"^remote\.([A-Za-z0-9_.-]+)\.([a-z_]+)$")
SECRET_OPTIONS = ("password", "secret_access_key", "access_key_id", "session_token")
# Remote options that name one machine's credentials or files: another machine (a registry
# source's user, a cluster worker) uses its own ssh agent and config or AWS chain instead.
PRIVATE_OPTIONS = frozenset(SECRET_OPTIONS) | {"keyfile"}
# Keys naming a machine this user's runs talk to and trust: a Dask client unpickles what its
# scheduler sends, so a scheduler chosen by a cloned repository's tracked config could run code
# here. They are read from config.local alone, and set there alone.
LOCAL_ONLY = frozenset({"core.scheduler"})


def _section_option(key: str) -> tuple[str, str]:
    match = _REMOTE_KEY.match(key)
    if match:
        return f'remote "{match.group(1)}"', match.group(2)
    if key not in KNOWN_KEYS:
        known = ", ".join(sorted(KNOWN_KEYS))
        raise ReproError(f"unknown config key '{key}'; known keys: {known}, remote.NAME.OPTION")
    section, option = key.split(".", 1)
    return section, option


def _read(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ReproError(f"config file {path} is malformed ({first}); fix or remove it") from None
    except UnicodeDecodeError as exc:
        raise ReproError(
            f"config file {path} is not valid UTF-8 (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}); fix it in an editor, or remove it"
        ) from None
    return parser


def _write(path: Path, parser: configparser.RawConfigParser) -> None:
    import io

    from repro.fsutil import write_atomic

    text = io.StringIO()
    parser.write(text)
    write_atomic(path, text.getvalue().encode("utf-8"))


class Config:
    """Merged view of ``config`` and ``config.local`` (local wins)."""

    def __init__(self, repro_dir: Path) -> None:
        self.repro_dir = repro_dir
        self.shared_path = repro_dir / "config"
        self.local_path = repro_dir / "config.local"
        self._shared = _read(self.shared_path)
        self._local = _read(self.local_path)

    def get(self, key: str, default: str | None = None) -> str | None:
        section, option = _section_option(key)
        for parser in (self._local,) if key in LOCAL_ONLY else (self._local, self._shared):
            if parser.has_option(section, option):
                return parser.get(section, option)
        return default

    def set(self, key: str, value: str, local: bool = False) -> None:
        section, option = _section_option(key)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # bytes from the command line that were not UTF-8
            raise ReproError(
                f"the value for '{key}' is not valid UTF-8; give it as UTF-8 text"
            ) from None
        if "\n" in value or "\r" in value:
            raise ReproError(f"the value for '{key}' has a line break; give it on one line")
        allowed = KNOWN_KEYS.get(key)
        if allowed and value not in allowed:
            raise ReproError(f"'{key}' must be one of {', '.join(allowed)}, not '{value}'")
        if option in SECRET_OPTIONS and not local:
            raise ReproError(f"'{key}' is a secret; store it with --local so it stays out of git")
        if key in LOCAL_ONLY and not local:
            raise ReproError(
                f"'{key}' names a machine that runs code for you, which a clone must not choose; "
                f"store it with --local (repro config --local {key} {value})"
            )
        parser, path = (self._local, self.local_path) if local else (self._shared, self.shared_path)
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, option, value)
        _write(path, parser)

    def unset(self, key: str, local: bool = False) -> bool:
        section, option = _section_option(key)
        parser, path = (self._local, self.local_path) if local else (self._shared, self.shared_path)
        if not parser.has_option(section, option):
            return False
        parser.remove_option(section, option)
        if not parser.items(section):
            parser.remove_section(section)
        _write(path, parser)
        return True

    def remotes(self) -> dict[str, dict[str, str]]:
        """Every remote with its merged options."""
        found: dict[str, dict[str, str]] = {}
        for parser in (self._shared, self._local):
            for section in parser.sections():
                match = re.match(r'^remote "(.+)"$', section)
                if match:
                    found.setdefault(match.group(1), {}).update(parser.items(section))
        return found

    def remove_remote(self, name: str) -> bool:
        section = f'remote "{name}"'
        removed = False
        for parser, path in ((self._shared, self.shared_path), (self._local, self.local_path)):
            if parser.has_section(section):
                parser.remove_section(section)
                _write(path, parser)
                removed = True
        return removed
