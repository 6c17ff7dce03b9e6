"""The protocol every kind of dependency follows, so that status, reproduce, the run-cache,
the stage file and the quick status memo treat each kind alike.

A dependency names what it reads in the workspace (``path``), holds what the stage file
recorded after the last run (``recorded``), and can say what that is now. Status compares the
two; reproduce records the new value; the run-cache key includes it; the quick status memo
watches the files in ``watched``, and a kind whose value does not follow from files alone must
say so (``watched`` returns None), so that the memo never answers "up to date" for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from repro.errors import ReproError


class Probe(Protocol):
    """What a dependency may ask of the workspace."""

    @property
    def root(self) -> Path:
        """The project root, for a kind that reads what a file says (after current_md5 of
        it, which checks the path and lets the status memo see the file)."""

    def current_md5(self, path: str) -> str | None:
        """The content id of a workspace path now; None when it does not exist."""


class Dependency(Protocol):
    @property
    def path(self) -> str:
        """The workspace path it reads, relative to the project root (edges of the graph,
        read-only mounts and path checks use it)."""

    @property
    def name(self) -> str:
        """Unique among the stage's dependencies: keys its value in the run-cache key."""

    @property
    def recorded(self) -> Any:
        """What the stage file recorded after the last run; None before the first."""

    def current(self, probe: Probe) -> Any:
        """Its value now; None when what it reads is missing (Absent when only a part of it
        is). A value goes into the run-cache key: it must be JSON."""

    def change(self, stage: str, now: Any) -> str | None:
        """One line saying how it changed for ``stage`` (``now`` None: it is missing); None
        when ``now`` is what was recorded."""

    def recorded_as(self, value: Any) -> Dependency:
        """The same dependency, recording ``value``."""

    def watched(self) -> tuple[str, ...] | None:
        """The workspace paths whose bytes decide its value; None when something else does
        (then a quick status must not trust its memo)."""


class Absent(ReproError):
    """Raised by ``current`` when a part of what a dependency reads is missing while its file
    is there (a key of a params file): status shows ``reason`` as a change; a run stops on the
    whole message, which says what to do."""

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(f"{reason}; {advice}")
        self.reason = reason


class Kind(Protocol):
    """A kind of dependency: how a stage file lists it, under its own key."""

    FIELD: str  # the stage file's key, e.g. "deps"
    TYPE: type  # the class of its dependencies

    def load(self, stage_dir: str, raw: Any) -> tuple[Dependency, ...]:
        """The dependencies the stage file lists under FIELD (raises fields.Malformed)."""

    def dump(self, stage_dir: str, deps: tuple[Dependency, ...]) -> list[Any]:
        """The stage file's list under FIELD for ``deps`` (all of this kind)."""

    def defines(self, deps: tuple[Dependency, ...]) -> Any:
        """Their part of the stage's definition md5 (what, changed, makes the stage new)."""
