"""Remote storage backends, chosen by URL scheme.

Backend modules are imported only when their scheme is used, so paramiko and boto3 stay
optional and commands that never touch a remote start fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from repro.errors import ReproError
from repro.remotes.base import Remote

__all__ = ["Remote", "known_options", "open_remote", "scheme_of"]


class Backend(NamedTuple):
    module: str  # defines open_remote(url, options) -> Remote
    options: frozenset[str]  # config keys it understands
    dependency: str | None = None  # the third-party package it imports
    extra: str | None = None  # the pip extra that installs it
    # Modules the dependency imports at once but seldom uses: they load at first use.
    deferred: tuple[str, ...] = ()


_LOCAL = Backend("repro.remotes.local", frozenset())
BACKENDS: dict[str, Backend] = {
    "": _LOCAL,
    "file": _LOCAL,
    "ssh": Backend(
        "repro.remotes.ssh",
        frozenset({"user", "port", "keyfile", "password", "timeout"}),
        "paramiko",
        "ssh",
        # paramiko imports invoke (half of its own import time) for ssh_config's "Match exec",
        # and its package loads its transport and cryptography, which a remote that moves
        # everything through OpenSSH's client never uses: only paramiko.config is read then.
        ("invoke", "paramiko"),
    ),
    "s3": Backend(
        "repro.remotes.s3",
        frozenset(
            {
                "endpointurl",
                "region",
                "profile",
                "access_key_id",
                "secret_access_key",
                "session_token",
                "timeout",
            }
        ),
        "boto3",
        "s3",
    ),
}

# Keys a remote's config section may hold that are not backend options.
GENERIC_KEYS = frozenset({"url"})


def scheme_of(url: str) -> str:
    """The backend scheme of ``url``; ``""`` for a plain folder path."""
    # A plain path may contain ':' (e.g. 'backup:2024'); only 'scheme://' names a scheme.
    if "://" not in url:
        return ""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in BACKENDS:
        known = ", ".join(f"{s}://" for s in BACKENDS if s)
        raise ReproError(f"unsupported remote URL '{url}': use a folder path or one of {known}")
    return scheme


def known_options(url: str) -> frozenset[str]:
    """The config keys a remote at ``url`` understands (for ``repro remote modify``)."""
    return BACKENDS[scheme_of(url)].options | GENERIC_KEYS


def open_remote(url: str, options: Mapping[str, str]) -> Remote:
    """Open the remote at ``url`` with its config ``options`` (user, port, endpointurl, …).

    A relative folder path is taken relative to the current directory: callers resolve it
    against the config file's folder first when that is what they mean. Opening does not
    connect; the first operation does.
    """
    scheme = scheme_of(url)
    backend = BACKENDS[scheme]
    unknown = sorted(set(options) - backend.options - GENERIC_KEYS)
    if unknown:
        allowed = ", ".join(sorted(backend.options)) or "none"
        raise ReproError(
            f"unknown option {', '.join(map(repr, unknown))} for remote '{url}' "
            f"(allowed: {allowed}); fix it with 'repro remote modify'"
        )
    for name in backend.deferred:
        _defer(name)
    try:
        module = importlib.import_module(backend.module)
    except ModuleNotFoundError as exc:
        if backend.dependency is None or exc.name != backend.dependency:
            raise
        raise ReproError(
            f"{scheme}:// remotes need the '{backend.dependency}' package: "
            f"pip install 'repro-pipelines[{backend.extra}]'"
        ) from exc
    remote: Remote = module.open_remote(url, {k: v for k, v in options.items() if k != "url"})
    return remote


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; the first attribute asked of
    it imports the module and answers from it. A package's stand-in has the package's
    ``__path__``: its submodules import on their own, without the package's ``__init__``."""

    def __getattr__(self, attr: str) -> object:
        first = sys.modules.get(self.__name__) is self
        if first:
            del sys.modules[self.__name__]
        module = importlib.import_module(self.__name__)
        if first:
            # Submodules imported through the stand-in are the real package's too (its
            # __init__ found them in sys.modules, which binds no attribute).
            prefix = f"{self.__name__}."
            for name, submodule in list(sys.modules.items()):
                child = name[len(prefix) :]
                if name.startswith(prefix) and "." not in child and not hasattr(module, child):
                    setattr(module, child, submodule)
        # Whoever imported the stand-in keeps it: from now on it answers from its own
        # namespace, a copy of the module's, without coming here again.
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def _defer(name: str) -> None:
    """Let ``import name`` give a stand-in that imports the module at its first use (importlib's
    LazyLoader does not do: the import statement itself asks the module for its ``__spec__``)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _Deferred(name)
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = stand_in
