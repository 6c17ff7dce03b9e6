"""A file or folder of the workspace, by content: the dependency every stage file knows."""

from __future__ import annotations

from typing import Any, NamedTuple

from repro.stages import fields
from repro.stages.deps.base import Dependency, Probe


class FileDep(NamedTuple):
    path: str  # relative to the project root, POSIX
    md5: str | None = None

    @property
    def name(self) -> str:
        return self.path

    @property
    def recorded(self) -> str | None:
        return self.md5

    def current(self, probe: Probe) -> str | None:
        return probe.current_md5(self.path)

    def change(self, stage: str, now: Any) -> str | None:
        if now is None:
            return f"Dependency '{self.path}' of '{stage}' is missing."
        if now != self.md5:
            return f"Dependency '{self.path}' of '{stage}' changed."
        return None

    def recorded_as(self, value: Any) -> FileDep:
        return self._replace(md5=value)

    def watched(self) -> tuple[str, ...]:
        return (self.path,)


class Files:
    """How stage files list file dependencies: ``deps: [{path, md5}]``."""

    FIELD: str = "deps"
    TYPE: type = FileDep

    def load(self, stage_dir: str, raw: Any) -> tuple[Dependency, ...]:
        return tuple(
            FileDep(
                fields.to_root(
                    stage_dir, fields.text(fields.mapping(d, "a dep").get("path"), "dep path")
                ),
                fields.md5(d.get("md5"), "dep md5"),
            )
            for d in fields.sequence(raw, "deps")
        )

    def dump(self, stage_dir: str, deps: tuple[Dependency, ...]) -> list[Any]:
        return [
            fields.drop_none({"path": fields.to_file(stage_dir, d.path), "md5": d.recorded})
            for d in deps
        ]

    def defines(self, deps: tuple[Dependency, ...]) -> Any:
        return [d.path for d in deps]
