"""Stage runners: what executes a stage's command. Docker is the one backend today.

``base.Runner`` is the protocol, ``spec`` the runner-neutral words the stage model shares with
it, ``images`` moves images through remotes; each runner is a subpackage (``docker/``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # nothing imported at run time: `repro status` passes through here
if TYPE_CHECKING:
    from collections.abc import Callable

    from repro.runners.base import Runner


def docker_runner() -> Runner:
    from repro.runners.docker.runner import DockerRunner

    return DockerRunner()


RUNNERS: dict[str, Callable[[], Runner]] = {"docker": docker_runner}
