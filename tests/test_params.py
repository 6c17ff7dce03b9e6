"""Parameter dependencies (repro run -p): a stage re-runs when a key it uses changes, and only
then; status says which key and how; params diff compares revisions; bad input is one line."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import pytest
from helpers import OLD_NS, Project
from test_pipeline import created_containers
from test_status_memo import _status

from repro.stages.deps.base import Absent
from repro.stages.deps.params import ParamDep, canonical

if TYPE_CHECKING:
    from pathlib import Path

    import docker

PARAMS = "train:\n  lr: 0.1\n  epochs: 3\nprepare:\n  split: 0.2\n"


def _settle(project: Project, *paths: str, seconds: int = 0) -> None:
    """Give files an old mtime (OLD_NS + ``seconds``), as data made before the command: the
    status memo remembers only settled files."""
    mtime = OLD_NS + seconds * 10**9
    for path in paths:
        os.utime(project.root / path, ns=(mtime, mtime))


def _recorded(project: Project, name: str, spec: str) -> None:
    """A stage ``name``.repro using params ``spec``, recorded as if it had run (no engine)."""
    project.write(name, "made\n")
    project.ok("run", "--no-exec", "-f", f"{name}.repro", "-p", spec, "-o", name, "true")
    project.ok("commit", f"{name}.repro")


@pytest.fixture
def params_project(project: Project) -> Project:
    project.write("params.yaml", PARAMS)
    _recorded(project, "a", "train.lr")
    _recorded(project, "b", "prepare.split")
    project.commit("two stages", tag="v1")
    return project


# -- the dependency itself -------------------------------------------------------------------
class _Probe:
    def __init__(self, root: Path) -> None:
        self.root = root

    def current_md5(self, path: str) -> str | None:
        return "0" * 32 if (self.root / path).exists() else None


def test_a_param_follows_the_protocol(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("a: {b: null, c: [1, 2]}\n")
    probe = _Probe(tmp_path)
    assert ParamDep("p.yaml", "a.b").current(probe) == "null"
    assert ParamDep("p.yaml", "a").current(probe) == '{"b":null,"c":[1,2]}'
    assert ParamDep("gone.yaml", "a").current(probe) is None
    with pytest.raises(Absent, match="Key 'a.x' is missing from params file 'p.yaml'"):
        ParamDep("p.yaml", "a.x").current(probe)
    dep = ParamDep("p.yaml", "a.b", "null")
    assert dep.change("s.repro", "null") is None
    assert ParamDep("p.yaml", "a.b").change("s.repro", "null") is not None  # never ran
    assert dep.change("s.repro", "1") == "Params 'p.yaml:a.b' of 's.repro' changed: null -> 1"
    assert dep.change("s.repro", None) == "Params file 'p.yaml' of 's.repro' is missing."
    long = canonical(list(range(50)))
    assert dep.change("s.repro", long) is not None
    assert "…" in str(dep.change("s.repro", long))
    assert dep.recorded_as("2").recorded == "2"
    assert dep.watched() == ("p.yaml",)
    assert dep.name == "p.yaml:a.b"


# -- status ----------------------------------------------------------------------------------
def test_status_names_the_changed_key_and_only_its_stage(params_project: Project) -> None:
    project = params_project
    assert project.repro("status").code == 0
    project.write("params.yaml", PARAMS.replace("lr: 0.1", "lr: 0.2"))
    result = project.repro("status")
    assert result.code == 1
    assert result.out == "a.repro:\n\tParams 'train.lr' of 'a.repro' changed: 0.1 -> 0.2\n"
    report = json.loads(project.repro("status", "--json").out)
    assert report == {"a.repro": ["Params 'train.lr' of 'a.repro' changed: 0.1 -> 0.2"]}
    # another key, another stage
    project.write("params.yaml", PARAMS.replace("epochs: 3", "epochs: 4"))
    assert project.repro("status").code == 0


def test_status_reports_a_missing_key_and_a_missing_file(params_project: Project) -> None:
    project = params_project
    project.write("params.yaml", PARAMS.replace("lr: 0.1", "rate: 0.1"))
    result = project.repro("status")
    assert (result.code, result.out) == (
        1,
        "a.repro:\n\tKey 'train.lr' is missing from params file 'params.yaml'.\n",
    )
    (project.root / "params.yaml").unlink()
    result = project.repro("status", "--json")
    assert json.loads(result.out) == {
        "a.repro": ["Params file 'params.yaml' of 'a.repro' is missing."],
        "b.repro": ["Params file 'params.yaml' of 'b.repro' is missing."],
    }


def test_yaml_json_and_toml_files_and_a_section_key(project: Project) -> None:
    project.write("conf/p.json", '{"model": {"depth": 3, "act": "relu"}}\n')
    project.write("conf/p.toml", 'seed = 1\n[opt]\nname = "adam"\n')
    project.write("params.yaml", PARAMS)
    _recorded(project, "j", "conf/p.json:model")  # a section: the whole mapping
    _recorded(project, "t", "conf/p.toml:")  # every top-level key
    _recorded(project, "y", "train.lr,train.epochs")
    stage = (project.root / "t.repro").read_text()
    assert "key: seed\n  value: 1\n" in stage
    assert "key: opt\n  value:\n    name: adam\n" in stage
    assert project.repro("status").code == 0
    project.write("conf/p.json", '{"model": {"act": "relu", "depth": 3}}\n')  # same values
    project.write("conf/p.toml", 'seed = 1\n[opt]\nname = "sgd"\n')
    project.write("params.yaml", PARAMS.replace("epochs: 3", "epochs: 5"))
    assert project.repro("status", "--json").out.count("changed") == 2
    report = json.loads(project.repro("status", "--json").out)
    assert report == {
        "t.repro": [
            'Params \'conf/p.toml:opt\' of \'t.repro\' changed: {"name":"adam"} -> {"name":"sgd"}'
        ],
        "y.repro": ["Params 'train.epochs' of 'y.repro' changed: 3 -> 5"],
    }
    project.write("conf/p.json", '{"model": {"act": "tanh", "depth": 3}}\n')
    assert "j.repro" in json.loads(project.repro("status", "--json").out)


def test_the_status_memo_sees_a_params_edit_and_not_an_unrelated_one(
    params_project: Project,
) -> None:
    project = params_project
    _settle(project, "params.yaml", "a", "b")
    assert _status(project.root)[:2] == (0, False)  # the full status, which leaves the memo
    assert _status(project.root)[:2] == (0, True)
    project.write("params.yaml", PARAMS.replace("epochs: 3", "epochs: 4"))  # a's file, not key
    _settle(project, "params.yaml", seconds=1)
    assert _status(project.root) == (0, False, "Data and pipelines are up to date.")
    assert _status(project.root)[:2] == (0, True)
    project.write("params.yaml", PARAMS.replace("epochs: 3", "epochs: 4").replace("0.1", "0.2"))
    _settle(project, "params.yaml", seconds=2)
    code, quick, shown = _status(project.root)
    assert (code, quick) == (1, False)
    assert "Params 'train.lr' of 'a.repro' changed: 0.1 -> 0.2" in shown


# -- params diff -----------------------------------------------------------------------------
def test_params_diff_between_head_the_workspace_and_tags(params_project: Project) -> None:
    project = params_project
    assert project.ok("params", "diff").out == "No params changed.\n"
    project.write("params.yaml", PARAMS.replace("lr: 0.1", "lr: 0.2"))
    table = project.ok("params", "diff").out.splitlines()
    assert table[0].split() == ["path", "param", "HEAD", "workspace"]
    assert table[1:] == ["params.yaml  train.lr  0.1   0.2"]
    assert len(project.ok("params", "diff", "--all").out.splitlines()) == 3
    assert json.loads(project.ok("params", "diff", "--json").out) == {
        "params.yaml": {"train.lr": {"old": 0.1, "new": 0.2}}
    }
    project.ok("commit", "a.repro")
    project.commit("faster", tag="v2")
    assert json.loads(project.ok("params", "diff", "v1", "v2", "--json").out) == {
        "params.yaml": {"train.lr": {"old": 0.1, "new": 0.2}}
    }
    assert json.loads(project.ok("params", "diff", "v1", "--json", "--all").out) == {
        "params.yaml": {
            "train.lr": {"old": 0.1, "new": 0.2},
            "prepare.split": {"old": 0.2, "new": 0.2},
        }
    }
    (project.root / "params.yaml").unlink()
    assert json.loads(project.ok("params", "diff", "--json").out) == {
        "params.yaml": {
            "train.lr": {"old": 0.2, "new": None},
            "prepare.split": {"old": 0.2, "new": None},
        }
    }
    result = project.repro("params", "diff", "nope")
    assert result.code == 1
    assert "'nope' is not a revision" in result.err


# -- bad input -------------------------------------------------------------------------------
def _refused(project: Project, code: int, message: str, *args: str) -> None:
    """``repro ARGS`` fails with one line holding ``message`` and writes nothing."""
    files = ("status", "--porcelain", "--ignored", "--", ".", ":!.repro")  # not its lock
    before = project.git(*files)
    result = project.repro(*args)
    assert result.code == code, result
    assert message in result.err and result.err.count("\n") == 1, result.err
    assert project.git(*files) == before


def test_bad_params_at_run_are_refused_before_anything_is_written(project: Project) -> None:
    project.write("params.yaml", PARAMS)
    project.write("broken.json", "{oops")
    os.symlink("params.yaml", project.root / "link.yaml")
    project.commit("files")
    run = ("run", "-o", "out", "-p")
    _refused(
        project,
        1,
        "Key 'train.x' is missing from params file 'params.yaml'",
        *run,
        "train.x",
        "true",
    )
    _refused(
        project, 1, "params file 'broken.json' is not valid json", *run, "broken.json:a", "true"
    )
    _refused(
        project, 1, "params file 'broken.json' is not valid json", *run, "broken.json:", "true"
    )
    _refused(project, 1, "outside the project", *run, "../p.yaml:a", "true")
    _refused(project, 1, "is a symlink", *run, "link.yaml:train", "true")
    _refused(project, 1, "params file 'none.yaml' does not exist", *run, "none.yaml:a", "true")
    _refused(project, 2, "names an empty key", *run, "train.lr,", "true")
    _refused(project, 2, "names an empty key", *run, "", "true")


def test_a_params_file_that_stops_parsing_fails_status_and_repro(params_project: Project) -> None:
    project = params_project
    project.write("params.yaml", "train: [\n")
    message = "params file 'params.yaml' is not valid yaml (line 2)"
    _refused(project, 1, message, "status")
    _refused(project, 1, message, "repro")


def test_a_malformed_params_entry_in_a_stage_file_is_one_line(project: Project) -> None:
    project.write("s.repro", "cmd: x\nparams:\n- path: params.yaml\n")
    _refused(project, 1, "stage file 's.repro' is malformed: param key", "status")


# -- in real containers ----------------------------------------------------------------------
@pytest.mark.docker
def test_only_the_stage_using_a_changed_key_runs_and_an_old_value_restores(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    project.write("params.yaml", PARAMS)
    project.ok("run", "-p", "train.lr", "-o", "a", "grep lr: params.yaml > a")
    project.ok("run", "-p", "prepare.split", "-o", "b", "grep split: params.yaml > b")
    project.commit("two stages")

    project.write("params.yaml", PARAMS.replace("lr: 0.1", "lr: 0.2"))
    since = time.time()
    result = project.ok("repro")
    assert created_containers(docker_client, project, since) == 1
    assert "Stage 'b.repro' didn't change." in result.out
    assert (project.root / "a").read_text() == "  lr: 0.2\n"
    assert "value: 0.2" in (project.root / "a.repro").read_text()

    project.write("params.yaml", PARAMS)  # back to the value of an earlier run
    since = time.time()
    result = project.ok("repro")
    assert created_containers(docker_client, project, since) == 0
    assert "Restored 'a.repro' from the run-cache; no container started." in result.out
    assert (project.root / "a").read_text() == "  lr: 0.1\n"
    assert project.ok("status").out == "Data and pipelines are up to date.\n"


@pytest.mark.docker
def test_the_params_file_is_read_only_in_the_stage(docker_project: Project) -> None:
    project = docker_project
    project.write("params.yaml", PARAMS)
    result = project.repro("run", "-p", "train.lr", "-o", "c", "echo x >> params.yaml && touch c")
    assert result.code == 1
    assert (project.root / "params.yaml").read_text() == PARAMS
