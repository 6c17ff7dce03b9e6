"""core.runner chooses what runs stages: docker unless set; a name that is no runner is a
one-line error listing the runners there are, whether it is being set or found in the config."""

from __future__ import annotations

from helpers import Project

from repro.config import Config
from repro.runners import RUNNERS, choose_runner
from repro.runners.docker.runner import DockerRunner

UNKNOWN = "unknown runner 'kubernetes' in core.runner; known runners: docker"


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_docker_is_the_default_and_can_be_named(project: Project) -> None:
    config = Config(project.root / ".repro")
    assert isinstance(choose_runner(config), DockerRunner)
    assert isinstance(choose_runner(None), DockerRunner)  # outside a project
    project.ok("config", "core.runner", "docker")
    assert project.ok("config", "core.runner").out.strip() == "docker"
    assert isinstance(choose_runner(Config(project.root / ".repro")), DockerRunner)


def test_setting_an_unknown_runner_is_refused(project: Project) -> None:
    result = project.repro("config", "core.runner", "kubernetes")
    assert result.code == 1
    assert UNKNOWN in _one_line_error(result.err)
    assert project.repro("config", "core.runner").code == 1  # nothing was written
    assert sorted(RUNNERS) == ["docker"]  # the list the message gives


def test_an_unknown_runner_in_the_config_stops_every_stage(project: Project) -> None:
    # Written by hand (or by a later repro that has more runners), past `repro config`'s check.
    (project.root / ".repro" / "config.local").write_text("[core]\n\trunner = kubernetes\n")
    result = project.repro("run", "-o", "out", "touch out")
    assert result.code == 1
    assert UNKNOWN in _one_line_error(result.err)
    assert not (project.root / "out").exists()
    project.ok("run", "--no-exec", "-o", "out", "touch out")  # writing a stage runs nothing
    result = project.repro("repro")
    assert result.code == 1
    assert UNKNOWN in _one_line_error(result.err)
    assert not (project.root / "out").exists()
    doctor = project.repro("doctor")
    assert doctor.code == 1
    assert f"Runner: {UNKNOWN}" in doctor.out
    assert "broken: core.runner" in doctor.err
