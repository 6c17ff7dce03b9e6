"""One value of a params file (``train.lr`` of params.yaml): a dependency on that value alone,
so that a stage re-runs when the parameters it uses change, and not when other ones do.

A stage file lists one entry per key, after ``deps``::

    params:
    - path: params.yaml      # relative to the stage file's folder
      key: train.lr
      value: 0.1             # what the stage last ran with; absent before the first run

The value is held as canonical JSON text (sorted keys, no spaces): two values are the same
when their texts are, a recorded ``null`` differs from "not run yet" (None), and the text goes
into the run-cache key as it is. Only paths and keys define the stage: a changed value makes
it changed through a dependency, not a new stage.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, NamedTuple

from repro import paramfiles
from repro.errors import ReproError
from repro.stages import fields
from repro.stages.deps.base import Absent, Dependency, Probe

SHOWN_WIDTH = 40  # a value longer than this is shortened in status lines


def canonical(value: Any) -> str:
    """The JSON text a value is compared and keyed by (dates and times as their text)."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )
    except TypeError:  # keys of mixed types (1 and "a") cannot be sorted: kept in file order
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def shown(text: str) -> str:
    """A value's text for one status line: long ones shortened."""
    return text if len(text) <= SHOWN_WIDTH else text[: SHOWN_WIDTH - 1] + "…"


def read(probe: Probe, path: str) -> dict[str, Any] | None:
    """The mapping the params file at ``path`` holds now; None when there is no such file."""
    from repro.fsutil import NotRegular, read_regular

    # Through the hasher first: it refuses a path out of the project or a symlink, and the
    # quick status memo sees the file the answer came from (read after, so never newer).
    if probe.current_md5(path) is None:
        return None
    try:
        data = read_regular(probe.root / path)
    except FileNotFoundError:
        return None
    except (NotRegular, IsADirectoryError):
        raise ReproError(
            f"params file '{path}' is not a file; name a YAML, JSON or TOML file"
        ) from None
    return _parsed(path, data)


@lru_cache(maxsize=64)
def _parsed(path: str, data: bytes) -> dict[str, Any]:
    """Parsed once per content: a stage reads several keys of a file, and many stages one file."""
    return paramfiles.parse(data, path)


class ParamDep(NamedTuple):
    path: str  # the params file, relative to the project root, POSIX
    key: str  # dotted: train.lr
    value: str | None = None  # canonical JSON of the value it last ran with; None: never ran

    @property
    def name(self) -> str:
        return f"{self.path}:{self.key}"

    @property
    def shown_key(self) -> str:
        """The key as status names it: with its file unless that is the default one."""
        return self.key if self.path == paramfiles.DEFAULT_FILE else self.name

    @property
    def recorded(self) -> str | None:
        return self.value

    def current(self, probe: Probe) -> str | None:
        params = read(probe, self.path)
        if params is None:
            return None
        try:
            return canonical(paramfiles.lookup(params, self.key))
        except KeyError:
            raise Absent(
                f"Key '{self.key}' is missing from params file '{self.path}'",
                f"add it to '{self.path}', or drop it from the stage's params",
            ) from None

    def change(self, stage: str, now: Any) -> str | None:
        if now is None:
            return f"Params file '{self.path}' of '{stage}' is missing."
        if now == self.value:
            return None
        if self.value is None:
            return f"Params '{self.shown_key}' of '{stage}' is new: {shown(now)}"
        return (
            f"Params '{self.shown_key}' of '{stage}' changed: {shown(self.value)} -> {shown(now)}"
        )

    def recorded_as(self, value: Any) -> ParamDep:
        return self._replace(value=value)

    def watched(self) -> tuple[str, ...]:
        return (self.path,)


_ENTRY_KEYS = frozenset(("path", "key", "value"))


class Params:
    """How stage files list parameter dependencies: ``params: [{path, key, value}]``."""

    FIELD: str = "params"
    TYPE: type = ParamDep

    def load(self, stage_dir: str, raw: Any) -> tuple[Dependency, ...]:
        deps = []
        for entry in fields.entries(raw, "params", "a param", _ENTRY_KEYS):
            path = fields.to_root(stage_dir, fields.text(entry.get("path"), "param path"))
            key = fields.text(entry.get("key"), "param key")
            value = canonical(entry["value"]) if "value" in entry else None
            deps.append(ParamDep(path, key, value))
        return tuple(deps)

    def dump(self, stage_dir: str, deps: tuple[Dependency, ...]) -> list[Any]:
        entries = []
        for dep in deps:
            assert isinstance(dep, ParamDep)
            entry: dict[str, Any] = {"path": fields.to_file(stage_dir, dep.path), "key": dep.key}
            if dep.value is not None:
                entry["value"] = json.loads(dep.value)
            entries.append(entry)
        return entries

    def defines(self, deps: tuple[Dependency, ...]) -> Any:
        return sorted([d.path, d.key] for d in deps if isinstance(d, ParamDep))
