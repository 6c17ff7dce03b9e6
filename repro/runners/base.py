"""What every runner offers: images to run, and a stage to execute.

The pipeline hands a runner a RunSpec and never reaches past this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from repro.runners.spec import Image, RunSpec

LogSink = Callable[[bytes], None]


class Runner(Protocol):
    def resolve(self, name: str) -> str | None:
        """The ID an image name points at now, or None when the engine has no such image."""

    def ensure(self, image: Image, pinned: bool) -> Image:
        """The image to run, with id (and digest) filled in; pulls by digest when it can."""

    def run(self, spec: RunSpec, log: LogSink) -> int:
        """Run the stage, streaming its output to ``log``; return the command's exit code."""

    def reap(self, project_root: Path) -> int:
        """Remove what a killed earlier run of this project left behind; return how many."""

    def stop_all(self) -> None:
        """Stop and remove every container this runner started (Ctrl-C, a failed sibling)."""

    def quiet(self) -> AbstractContextManager[None]:
        """A block during which no stage process of this runner executes (running ones are
        paused, none starts): the core checks-then-writes the workspace inside it, so that a
        parallel stage cannot swap a checked path for a symlink before its use."""
