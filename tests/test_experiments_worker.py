"""``exp run --run-all`` runs each job slot's experiments in one long-lived child repro
(test_experiments_speed.py counts them); what must hold all the same: a failing experiment does
not stop its slot, each experiment sees only its own copy, and Ctrl-C stops every child and
leaves no copy or container behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from helpers import Project

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

# A learning rate of 9 fails the stage; SLEEP (seconds) keeps it running for the Ctrl-C test.
PIPELINE = """\
stages:
  train:
    cmd: >-
      sleep "$(sed -n 's/^  sleep: //p' params.yaml)" &&
      test "$(sed -n 's/^  lr: //p' params.yaml)" != 9 &&
      sed -n 's/^  lr: \\(.*\\)/{"lr": \\1}/p' params.yaml > metrics.json
    params: [train.lr, train.sleep]
    metrics:
    - metrics.json: {cache: false}
"""


def pipelined(project: Project) -> Project:
    project.write("params.yaml", "train:\n  lr: 0.1\n  sleep: 0\n")
    project.write("repro.yaml", PIPELINE)
    project.ok("repro")
    project.commit("pipeline")
    return project


def test_a_slots_child_goes_on_after_a_failing_experiment(docker_project: Project) -> None:
    project = pipelined(docker_project)
    for name, rate in (("a-bad", 9), ("b-good", 2), ("c-good", 3)):
        project.ok("exp", "run", "--queue", "-S", f"train.lr={rate}", "-n", name)

    result = project.repro("exp", "run", "--run-all", "-j", "1")
    assert result.code == 1 and "1 of 3 experiments failed" in result.err

    records = {r["name"]: r for r in json.loads(project.ok("exp", "show", "--json").out)[1:]}
    assert records["a-bad"]["queued"]
    for name, rate in (("b-good", 2), ("c-good", 3)):
        assert not records[name]["queued"]
        assert records[name]["metrics"] == {"metrics.json": {"lr": rate}}  # its own copy's
    assert not any((project.root / ".repro/tmp/exps").iterdir())


def test_ctrl_c_stops_every_child_and_leaves_no_copy_or_container(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = pipelined(docker_project)
    for rate in (2, 3, 4):
        project.ok("exp", "run", "--queue", "-S", f"train.lr={rate}", "-S", "train.sleep=60")
    copies = f"{project.root}/.repro/tmp/exps/"

    def running() -> int:
        # The engine's own listing: another test's container may go before it is inspected.
        found = docker_client.api.containers(all=True, filters={"label": "repro.project"})
        return sum(1 for c in found if c["Labels"]["repro.project"].startswith(copies))

    proc = subprocess.Popen(
        [sys.executable, "-m", "repro", "exp", "run", "--run-all", "-j", "2"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while running() < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the experiments' containers never started"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no child repro outlived it

    deadline = time.monotonic() + 20
    while running():
        assert time.monotonic() < deadline, "containers were left behind"
        time.sleep(0.2)
    assert not any((project.root / ".repro/tmp/exps").iterdir())
    assert len(project.git("worktree", "list").splitlines()) == 1
    records = json.loads(project.ok("exp", "show", "--json").out)[1:]
    assert len(records) == 3 and all(r["queued"] for r in records)
