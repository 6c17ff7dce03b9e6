"""What every runner offers: images to run, a stage to execute, and a self-description.

A runner is the one place that knows its engine: the pipeline hands it a RunSpec, ``repro
push/pull --images`` moves its images through remotes as opaque archives, and ``repro doctor``
prints what it says of itself. None of them reaches past this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, NamedTuple, Protocol

from repro.runners.spec import Image, RunSpec

LogSink = Callable[[bytes], None]


class About(NamedTuple):
    """What ``repro doctor`` shows of a runner's engine."""

    engine: str  # what runs the stages, as users know it ("Docker engine")
    version: str | None = None  # its version, when it answered
    platform: str | None = None  # the OS/architecture stages run on ("linux/amd64")
    problem: str | None = None  # why it cannot be reached, and what to do; None when it answered
    product: str | None = None  # which engine answered ("Docker Desktop", "Podman")
    shared: tuple[str, ...] | None = None  # host folders its VM shares with stages; None: any
    rootless: bool = False  # the engine maps the container's uid 0 to the user

    def shares(self, path: str) -> bool:
        """Whether stages can bind-mount ``path`` (absolute, real) from this host."""
        return self.shared is None or any(
            path == folder or path.startswith(folder.rstrip("/") + "/") for folder in self.shared
        )


class Runner(Protocol):
    def about(self) -> About:
        """The engine's name and version, or what is wrong when it cannot be reached."""

    def resolve(self, name: str) -> str | None:
        """The ID an image name points at now, or None when the engine has no such image."""

    def resolver(self) -> Callable[[str], str | None]:
        """``resolve``, as cheaply as this runner can ask it: ``repro status`` asks it of every
        pinned image and needs nothing else of the runner."""

    def ensure(self, image: Image, pinned: bool) -> Image:
        """The image to run, with id (and digest) filled in; pulls by digest when it can."""

    def export_image(self, image_id: str, into: IO[bytes]) -> None:
        """Write the image ``image_id`` to ``into`` as one archive that ``import_image`` loads
        on another host. Raises ReproError, saying how to get it, when this host lacks it."""

    def import_image(self, archive: IO[bytes]) -> None:
        """Load an archive written by ``export_image``; the caller checks which ID it held."""

    def tag(self, image_id: str, name: str) -> None:
        """Give the image ``image_id`` the name ``name``; a name the engine refuses stays
        unset, silently (the stage then runs its image by ID)."""

    def run(self, spec: RunSpec, log: LogSink) -> int:
        """Run the stage, streaming its output to ``log``; return the command's exit code."""

    def reap(self, project_root: Path) -> int:
        """Remove what a killed earlier run of this project left behind; return how many."""

    def stop_all(self) -> None:
        """Stop and remove every stage this runner started (Ctrl-C, a failed sibling)."""

    def quiet(self) -> AbstractContextManager[None]:
        """A block during which no stage process of this runner executes (running ones are
        paused, none starts): the core checks-then-writes the workspace inside it, so that a
        parallel stage cannot swap a checked path for a symlink before its use."""
