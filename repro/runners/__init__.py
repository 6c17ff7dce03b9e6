"""Stage runners: what executes a stage's command, chosen by the project's ``core.runner``.

``base.Runner`` is the protocol, ``spec`` the runner-neutral words the stage model shares with
it, ``images`` moves images through remotes; each runner is a subpackage (``docker/``). A new
runner registers in RUNNERS below. Runner modules are imported only when chosen, so that a
command that runs no stage never loads an engine's client.
"""

from __future__ import annotations

TYPE_CHECKING = False  # nothing imported at run time: `repro status` passes through here
if TYPE_CHECKING:
    from repro.config import Config
    from repro.runners.base import Runner

# Runner name -> the module whose open_runner() makes one.
RUNNERS: dict[str, str] = {"docker": "repro.runners.docker.runner"}
DEFAULT_RUNNER = "docker"


def check_runner_name(name: str) -> None:
    """Refuse a name that is no runner, in one line that lists the runners there are."""
    if name not in RUNNERS:
        from repro.errors import ReproError

        raise ReproError(
            f"unknown runner '{name}' in core.runner; known runners: {', '.join(sorted(RUNNERS))}"
        )


def choose_runner(config: Config | None) -> Runner:
    """The runner ``core.runner`` names (docker when unset, or outside a project). Making one
    contacts no engine: its first use does."""
    import importlib

    name = (config.get("core.runner") if config is not None else None) or DEFAULT_RUNNER
    check_runner_name(name)
    runner: Runner = importlib.import_module(RUNNERS[name]).open_runner()
    return runner
