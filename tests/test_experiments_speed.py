"""What keeps experiments fast, pinned so that it stays so: exp show reads every experiment's
stage files and params in a fixed number of git calls, a run's output is the stages' own
(no git hint meant for a workspace: the experiment's commit adds the files), and --run-all
starts one child repro per job slot."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from helpers import Project

pytestmark = pytest.mark.docker

PIPELINE = """\
stages:
  train:
    cmd: "cat params.yaml > model.txt && echo '{\\"acc\\": 0.5}' > metrics.json"
    params: [train.lr]
    outs: [model.txt]
    metrics:
    - metrics.json: {cache: false}
"""


def started(monkeypatch: pytest.MonkeyPatch, program: str) -> list[list[str]]:
    """The commands of ``program`` this process starts from now on."""
    calls: list[list[str]] = []
    real_init = subprocess.Popen.__init__

    def init(popen: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if isinstance(args, list) and args and args[0] == program:
            calls.append([str(arg) for arg in args])
        real_init(popen, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", init)
    return calls


def test_a_sweep_says_no_git_hint_and_show_reads_it_in_a_few_git_calls(
    docker_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = docker_project
    project.write("params.yaml", "train:\n  lr: 0.1\n")
    project.write("repro.yaml", PIPELINE)
    project.ok("repro")
    project.commit("pipeline")
    for rate in (1, 2, 3):
        project.ok("exp", "run", "--queue", "-S", f"train.lr={rate}")
    children = started(monkeypatch, sys.executable)
    ran = project.ok("exp", "run", "--run-all", "-j", "2")
    assert len(children) == 2, children  # one child repro per job slot, not per experiment
    assert "Params 'train.lr' of 'train' changed" in ran.out + ran.err
    assert "git add" not in ran.out + ran.err

    calls = started(monkeypatch, "git")
    project.ok("exp", "show", "--json")
    # HEAD, its branch, the experiments' refs, then batched reads (root trees, stage files with
    # the params.yaml beside each, metric files, params files): none per experiment.
    assert len(calls) <= 8, calls
