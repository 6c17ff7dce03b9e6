"""One-file pipelines: repro.yaml stages in real containers, their repro.lock, their names as
targets, and both kinds of stage in one graph."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Project, build_busybox_image, cli

from repro.stages import pipeline_file
from repro.stages.stage import Stage, parse
from repro.stages.templating import load_yaml

if TYPE_CHECKING:
    import docker

# Apart from the other tests' image: a session elsewhere that builds it again gives it a new
# ID, which would show here as image drift.
IMAGE = "repro-test-pipeline-file:latest"
PIPELINE = """\
# the example pipeline
image: IMAGE  # every stage's
stages:
  prepare:
    cmd: cat data.txt > prepared.txt
    deps: [data.txt]
    outs: [prepared.txt]
  train:  # the model
    cmd:
      - cat prepared.txt config.txt > model.txt
      - wc -c < model.txt > scores.json
    deps: [prepared.txt, config.txt]
    outs: [model.txt]
    metrics: [scores.json]
  evaluate:
    cmd: cat model.txt model.txt > eval.txt
    deps: [model.txt]
    outs: [{eval.txt: {cache: false}}]
""".replace("IMAGE", IMAGE)


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> str:
    return build_busybox_image(docker_client, IMAGE)


@pytest.fixture
def docker_project(docker_project: Project, image: str) -> Project:
    """The shared docker project, its default image this module's own."""
    docker_project.ok("config", "core.image", IMAGE)
    return docker_project


def _ran(output: str) -> list[str]:
    """The stages a reproduction ran, in order."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Reproducing")]


def _pipeline(project: Project) -> None:
    project.write("repro.yaml", PIPELINE)
    project.write("data.txt", "hello\n")
    project.write("config.txt", "lr=1\n")


@pytest.mark.docker
def test_a_pipeline_runs_records_its_lock_and_reruns_only_downstream(
    docker_project: Project,
) -> None:
    project = docker_project
    _pipeline(project)
    result = project.ok("repro")
    assert _ran(result.out) == ["prepare", "train", "evaluate"]
    assert "git add repro.lock" in result.out
    assert (project.root / "repro.yaml").read_text() == PIPELINE  # never rewritten
    lock = (project.root / "repro.lock").read_text()
    assert list(json.loads(json.dumps(load_yaml(lock)))["stages"]) == [
        "prepare",
        "train",
        "evaluate",
    ]
    assert f"image:\n      name: {IMAGE}\n      id: sha256:" in lock
    assert project.ok("status").out.strip() == "Data and pipelines are up to date."
    assert project.ok("repro").out.count("didn't change") == 3
    assert json.loads(project.ok("metrics", "show", "--json").out) == {
        "workspace": {"scores.json": 11}
    }
    project.write("config.txt", "lr=2\n")
    status = project.repro("status", "--json")
    assert status.code == 1
    assert json.loads(status.out) == {"train": ["Dependency 'config.txt' of 'train' changed."]}
    assert _ran(project.ok("repro").out) == ["train", "evaluate"]
    assert (project.root / "repro.lock").read_text() != lock
    # a definition changed: that stage is new, the others are not
    project.write("repro.yaml", PIPELINE.replace("model.txt model.txt", "model.txt"))
    assert _ran(project.ok("repro").out) == ["evaluate"]
    assert project.ok("repro", "-j", "2").out.count("didn't change") == 3
    assert project.ok("status").code == 0


@pytest.mark.docker
def test_targets_name_stages_files_and_outputs(docker_project: Project) -> None:
    project = docker_project
    _pipeline(project)
    project.write(
        "sub/repro.yaml",
        "stages:\n  train:\n    cmd: cat ../data.txt > copy.txt\n    deps: [../data.txt]\n"
        "    outs: [copy.txt]\n",
    )

    def planned(*targets: str) -> list[str]:
        out = project.ok("repro", "--dry", "-s", *targets).out
        return [line.split("'")[1] for line in out.splitlines()]

    assert planned("train") == ["train"]
    assert planned("repro.yaml:evaluate") == ["evaluate"]
    assert planned("sub/repro.yaml:train") == ["sub/repro.yaml:train"]
    assert planned("repro.yaml") == ["prepare", "train", "evaluate"]
    assert planned("sub/repro.yaml") == ["sub/repro.yaml:train"]
    assert planned("model.txt") == ["train"]
    project.ok("repro", "sub/repro.yaml:train")
    assert (project.root / "sub/copy.txt").read_text() == "hello\n"
    assert (project.root / "sub/repro.lock").is_file()
    listed = json.loads(project.ok("pipeline", "list", "--json").out)
    assert [s["stage"] for s in listed] == ["prepare", "sub/repro.yaml:train", "train", "evaluate"]
    for target in ("nope", "repro.yaml:nope", "sub/repro.yaml:prepare"):
        result = project.repro("repro", target)
        assert result.code == 1
        assert result.err.count("\n") == 1 and "'repro pipeline list' shows" in result.err


@pytest.mark.docker
def test_stage_files_and_repro_yaml_stages_feed_each_other(docker_project: Project) -> None:
    project = docker_project
    project.write("seed.txt", "1\n")
    project.ok(
        "run",
        "--no-exec",
        "-f",
        "gen.repro",
        "-d",
        "seed.txt",
        "-o",
        "raw.txt",
        "cat seed.txt seed.txt > raw.txt",
    )
    project.write(
        "repro.yaml",
        "stages:\n  featurize:\n    cmd: wc -c < raw.txt > feat.txt\n    deps: [raw.txt]\n"
        "    outs: [feat.txt]\n",
    )
    project.ok(
        "run",
        "--no-exec",
        "-f",
        "report.repro",
        "-d",
        "feat.txt",
        "-o",
        "report.txt",
        "cat feat.txt > report.txt",
    )
    listed = {
        s["stage"]: s["upstream"] for s in json.loads(project.ok("pipeline", "list", "--json").out)
    }
    assert listed == {"gen.repro": [], "featurize": ["gen.repro"], "report.repro": ["featurize"]}
    assert _ran(project.ok("repro", "report.repro").out) == [
        "gen.repro",
        "featurize",
        "report.repro",
    ]
    assert (project.root / "report.txt").read_text().strip() == "4"
    project.write("seed.txt", "22\n")
    assert _ran(project.ok("repro", "-j", "2").out) == ["gen.repro", "featurize", "report.repro"]
    assert project.ok("status").code == 0


@pytest.mark.docker
def test_run_n_appends_a_stage_and_remove_drops_it(docker_project: Project) -> None:
    project = docker_project
    _pipeline(project)
    project.ok("repro")
    result = project.ok(
        "run",
        "-n",
        "report",
        "-d",
        "eval.txt",
        "-o",
        "report.txt",
        "-M",
        "summary.json",
        "cat eval.txt > report.txt && echo 1 > summary.json",
    )
    assert "git add repro.yaml repro.lock" in result.out
    text = (project.root / "repro.yaml").read_text()
    assert text.startswith(PIPELINE)  # comments and layout kept
    assert load_yaml(text)["stages"]["report"] == {
        "cmd": "cat eval.txt > report.txt && echo 1 > summary.json",
        "deps": ["eval.txt"],
        "outs": ["report.txt"],
        "metrics": ["summary.json"],
    }
    assert "report:" in (project.root / "repro.lock").read_text()
    assert project.ok("status").code == 0
    again = project.repro("run", "-n", "train", "-o", "other.txt", "true")
    assert again.code == 1 and "stage 'train' is already defined in 'repro.yaml'" in again.err
    assert (project.root / "repro.yaml").read_text() == text
    assert project.repro("run", "-n", "x", "-f", "x.repro", "-o", "y", "true").code == 2
    project.ok("remove", "report")
    assert (project.root / "repro.yaml").read_text() == PIPELINE
    assert "report" not in (project.root / "repro.lock").read_text()
    assert project.ok("status").code == 0
    project.ok("remove", "train")
    assert "train" not in load_yaml((project.root / "repro.yaml").read_text())["stages"]
    assert "# the example pipeline" in (project.root / "repro.yaml").read_text()


@pytest.mark.docker
def test_a_new_repro_yaml_from_run_n(docker_project: Project) -> None:
    project = docker_project
    project.write("in.txt", "a\n")
    project.ok("run", "-n", "copy", "-d", "in.txt", "-O", "out.txt", "cp in.txt out.txt")
    assert (project.root / "repro.yaml").read_text() == (
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps:\n    - in.txt\n"
        "    outs:\n    - out.txt:\n        cache: false\n"
    )
    assert project.ok("status").code == 0


@pytest.mark.docker
def test_history_metrics_push_and_gc_see_repro_yaml_stages(
    docker_project: Project, tmp_path: Path
) -> None:
    project = docker_project
    _pipeline(project)
    project.ok("repro")
    project.commit("v1", tag="v1")
    project.write("data.txt", "hello again\n")
    project.ok("repro")
    project.commit("v2", tag="v2")
    assert json.loads(project.ok("metrics", "show", "-T", "--json").out) == {
        "v1": {"scores.json": 11},
        "v2": {"scores.json": 17},
    }
    project.ok("gc", "-T", "-f")
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    project.ok("push", "-T")
    shutil.rmtree(project.root / ".repro" / "cache")
    for out in ("prepared.txt", "model.txt"):
        (project.root / out).unlink()
    project.git("checkout", "-q", "v1")
    assert "Fetched 2 objects" in project.ok("pull").out  # v1's, pushed by push -T
    assert (project.root / "model.txt").read_text() == "hello\nlr=1\n"
    assert project.ok("status").code == 0


PROBE = "import sys\nfrom repro.cli import main\nprint(main(['status']), 'argparse' in sys.modules)"


def _quick_status(root: Path) -> tuple[int, bool]:
    """(exit code, whether the memo answered) of a status in a new process."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True)
    code, full = done.stdout.split()[-2:]
    return int(code), full == "False"


@pytest.mark.docker
def test_the_status_memo_sees_edits_of_repro_yaml_and_repro_lock(docker_project: Project) -> None:
    project = docker_project
    _pipeline(project)
    project.ok("repro")
    assert cli(project.root, "status").code == 0  # the full status leaves the memo
    assert _quick_status(project.root) == (0, True)
    project.write("repro.yaml", PIPELINE + "# a comment\n")  # same stages: a full status, clean
    assert _quick_status(project.root) == (0, False)
    assert _quick_status(project.root) == (0, True)
    lock = (project.root / "repro.lock").read_text()
    project.write("repro.lock", lock.replace(lock.split("md5: ")[1][:32], "0" * 32, 1))
    assert _quick_status(project.root) == (1, False)
    project.write("repro.lock", lock)
    project.write("repro.yaml", PIPELINE.replace("cat data.txt", "cat ./data.txt"))
    assert _quick_status(project.root) == (1, False)


@pytest.mark.docker
def test_persist_outputs_are_kept_for_the_next_run(docker_project: Project) -> None:
    project = docker_project
    pipeline = "stages:\n  log:\n    cmd: cat tick.txt >> log.txt\n    deps: [tick.txt]\n"
    project.write("repro.yaml", pipeline + "    outs: [{log.txt: {persist: true}}]\n")
    project.write("tick.txt", "1\n")
    project.ok("repro")
    project.write("tick.txt", "2\n")
    project.ok("repro")
    assert (project.root / "log.txt").read_text() == "1\n2\n"
    assert project.ok("status").code == 0


def test_persist_is_a_stage_file_field_that_leaves_other_md5s_alone() -> None:
    plain = "cmd: x\nouts:\n- path: log.txt\n  cache: true\n"
    kept = parse("s.repro", plain + "  persist: true\n")
    assert kept.outs[0].persist and not parse("s.repro", plain).outs[0].persist
    assert kept.definition_md5() != parse("s.repro", plain).definition_md5()
    assert (
        parse("s.repro", plain).definition_md5()
        == Stage("s.repro", cmd="x", outs=parse("s.repro", plain).outs).definition_md5()
    )


def _no_vars(name: str) -> dict[str, Any]:
    raise FileNotFoundError(name)


def test_a_stage_and_its_lock_entry_make_the_mapping_of_a_stage_file() -> None:
    definition = {
        "cmd": ["a", "b"],
        "wdir": "src",
        "deps": ["in.txt"],
        "outs": ["../out", {"m.bin": {"cache": False, "persist": True}}],
        "metrics": ["s.json"],
        "plots": [{"p.json": {"cache": False}}],
        "network": "bridge",
    }
    lock = {
        "deps": [{"path": "in.txt", "md5": "a" * 32}],
        "outs": [{"path": "../out", "md5": "b" * 32}],
    }
    assert pipeline_file.stage_mapping("sub", {**definition, "image": "img:1"}, lock) == {
        "cmd": "a && b",
        "wdir": "src",
        "network": "bridge",
        "image": {"name": "img:1"},
        "deps": [{"path": "src/in.txt", "md5": "a" * 32}],
        "outs": [
            {"path": "out", "cache": True, "md5": "b" * 32},
            {"path": "src/m.bin", "cache": False, "persist": True},
            {"path": "src/s.json", "cache": False, "metric": {}},
            {"path": "src/p.json", "cache": False, "plot": {}},
        ],
        "md5": None,
    }
    stages = pipeline_file.parse(
        "sub/repro.yaml",
        json.dumps({"stages": {"t": definition}}),
        json.dumps({"stages": {"t": lock}}),
        _no_vars,
    )
    assert [s.address for s in stages] == ["sub/repro.yaml:t"]
    assert pipeline_file.lock_entry(stages[0])["deps"] == lock["deps"]
    assert pipeline_file.lock_entry(stages[0])["outs"][0] == lock["outs"][0]


def test_params_become_the_stage_file_form() -> None:
    definition = {"cmd": "x", "params": ["train.lr", {"other.json": ["a.b"]}]}
    lock = {"params": {"params.yaml": {"train.lr": 0.1}}}
    assert pipeline_file.stage_mapping("", definition, lock)["params"] == [
        {"path": "params.yaml", "key": "train.lr", "value": 0.1},
        {"path": "other.json", "key": "a.b"},
    ]


def test_params_are_recorded_in_the_lock() -> None:
    stages = pipeline_file.parse(
        "repro.yaml",
        "stages:\n  t:\n    cmd: x\n    params: [train.lr]\n",
        "stages:\n  t:\n    params:\n      params.yaml:\n        train.lr: 0.1\n",
        _no_vars,
    )
    assert pipeline_file.lock_entry(stages[0])["params"] == {"params.yaml": {"train.lr": 0.1}}
    assert pipeline_file.definition_of(stages[0], False)["params"] == ["train.lr"]


def test_foreach_stages_are_targets(project: Project) -> None:
    project.write(
        "repro.yaml",
        "stages:\n  prepare:\n    foreach: [en, fr]\n    do:\n"
        "      cmd: echo ${item} > ${item}.txt\n      outs:\n      - ${item}.txt\n",
    )
    out = project.ok("repro", "--dry", "-s", "prepare@en").out
    assert out.startswith("Would reproduce 'prepare@en'")
    result = project.repro("remove", "prepare@en")
    assert result.code == 1 and "foreach" in result.err


@pytest.mark.parametrize(
    ("text", "lock", "message"),
    [
        (
            "stages:\n  t:\n    cmd: x\n    colour: red\n",
            None,
            "stage 't' is malformed: unknown key 'colour'",
        ),
        (
            "stages:\n  t:\n    cmd: x\n    deps: [/etc/passwd]\n",
            None,
            "stage 't' is malformed: path '/etc/passwd' is absolute",
        ),
        (
            "stages:\n  t:\n    cmd: x\n    outs: [../up]\n",
            None,
            "stage 't' is malformed: path '../up' is outside",
        ),
        (
            "stages:\n  t:\n    cmd: x\n    outs: [{o: {cache: maybe}}]\n",
            None,
            "out cache must be true or false",
        ),
        (
            "stages:\n  t:\n    cmd: x\n    outs: [{o: {size: 1}}]\n",
            None,
            "unknown key 'size' of 'o'",
        ),
        (
            "stages:\n  t:\n    cmd: x\n  t:\n    cmd: y\n",
            None,
            "stage 't' is defined twice (line 4)",
        ),
        # A cloned repository must not read the user's files into its commands and lock.
        ("vars: [/etc/hostname]\nstages: {}\n", None, "is absolute"),
        ("vars: [../x.yaml]\nstages: {}\n", None, "is outside the project"),
        ("vars: [out/x.yaml]\nstages: {}\n", None, "leads out of the project"),
        ("stages:\n  t:\n    deps: [a]\n", None, "stage 't' is malformed: cmd is missing"),
        ("stages:\n  t:\n    cmd: x\n    md5: " + "a" * 32 + "\n", None, "unknown key 'md5'"),
        ("stages:\n  a b:\n    cmd: x\n", None, "stage name 'a b' holds ' '"),
        ("stage:\n  t:\n    cmd: x\n", None, "'repro.yaml' is malformed: unknown key 'stage'"),
        ("stages: [1\n", None, "'repro.yaml' is malformed: not valid YAML (line 2"),
        ("stages:\n  t:\n    cmd: x\n", "stages: [1\n", "'repro.lock' is not valid YAML at line"),
        (
            "stages:\n  t:\n    cmd: x\n",
            "stages: 3\n",
            "'repro.lock' is malformed: stages must be a mapping",
        ),
    ],
)
def test_a_bad_repro_yaml_or_lock_is_one_line_naming_it(
    project: Project, text: str, lock: str | None, message: str
) -> None:
    project.write("repro.yaml", text)
    if lock is not None:
        project.write("repro.lock", lock)
    os.symlink("/etc", project.root / "out")
    for command in (("status",), ("repro",), ("pipeline", "list")):
        result = project.repro(*command)
        assert result.code == 1, result
        assert message in result.err and result.err.count("\n") == 1, result.err
