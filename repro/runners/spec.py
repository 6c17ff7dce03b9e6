"""What a stage asks of the runner that executes it, in words every runner understands.

The stage model records these in stage files and the runners act on them, so they live here,
below both: an image reference, the resources a stage may use, its network, and the RunSpec
that hands one stage to a runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from repro.runners.canonical import NO_COMMIT_EPOCH

# "none" keeps a stage off every network; "bridge" gives it the engine's own private network
# with outbound access; "host" shares the host's network stack.
NETWORK_MODES = ("none", "bridge", "host")


class Image(NamedTuple):
    """An image as a stage file names it: the name the user gave, and once run, the ID it
    ran (what ``--pinned`` runs again) and a registry digest to pull that ID by."""

    name: str
    id: str | None = None
    digest: str | None = None


class Resources(NamedTuple):
    """Limits on a stage's process; None leaves the runner's default (no limit)."""

    cpus: float | None = None
    memory: str | None = None
    gpus: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("cpus", self.cpus), ("memory", self.memory), ("gpus", self.gpus))
            if v is not None
        }


class RunSpec(NamedTuple):
    """Everything a runner needs to execute one stage."""

    name: str  # the stage file, for labels and messages
    cmd: str
    image_id: str
    project_root: Path
    workdir: Path  # absolute
    network: str
    read_only: tuple[Path, ...]  # absolute paths the stage must not change
    resources: Resources
    env: tuple[tuple[str, str], ...] = ()  # the variables the stage declares (``env:``)
    source_date_epoch: int = NO_COMMIT_EPOCH
    # A scratch copy of the project that the stage sees, and writes, instead of the project
    # (``repro repro --check``); the read-only paths still come from the project itself.
    scratch: Path | None = None
