"""Experiments end to end: real git, real containers (busybox), a two-stage pipeline that
depends on params.yaml and writes a metric."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Project, git

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

PARAMS = "train:\n  lr: 0.1\n  epochs: 2\n"
PREPARE = 'mkdir -p data && sed -n "s/^  lr: //p" params.yaml > data/lr'
# A learning rate of 9 fails the stage: the failing experiment of the tests.
TRAIN = (
    'test "$(cat data/lr)" != 9 && printf "{\\"score\\": %s}\\n" "$(cat data/lr)" > metrics.json'
)


def pipeline(project: Project) -> None:
    project.write("params.yaml", PARAMS)
    project.ok("run", "-f", "prepare.repro", "-p", "train.lr", "-o", "data", PREPARE)
    project.ok(
        "run", "-f", "train.repro", "-d", "data", "-p", "train.epochs", "-M", "metrics.json", TRAIN
    )
    project.commit("pipeline")


@pytest.fixture
def pipelined(docker_project: Project) -> Project:
    """The project with the pipeline run and committed."""
    pipeline(docker_project)
    return docker_project


def containers_since(client: docker.DockerClient, project: Project, since: float) -> int:
    """Containers created for the project or any of its experiments' copies."""
    events = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "event": "create", "label": "repro.project"},
    )
    return sum(
        1
        for event in events
        if event.get("timeNano", 0) >= since * 1e9
        and event["Actor"]["Attributes"]["repro.project"].startswith(str(project.root))
    )


def snapshot(project: Project) -> dict[str, Any]:
    """What the user's side of git looks like: branch, HEAD, index, tracked files' bytes."""
    files = project.git("ls-files", "-z").split("\0")
    return {
        "branch": project.git("symbolic-ref", "HEAD"),
        "head": project.git("rev-parse", "HEAD"),
        "index": project.git("write-tree"),
        "status": project.git("status", "--porcelain"),
        "files": {f: (project.root / f).read_bytes() for f in files if f},
    }


def exp_ref(project: Project, name: str) -> str:
    head = project.git("rev-parse", "HEAD").strip()
    return f"refs/exps/{head[:2]}/{head[2:]}/{name}"


def test_exp_run_records_a_commit_and_the_workspace_gets_its_results(pipelined: Project) -> None:
    project = pipelined
    # An uncommitted change to a tracked file goes into the experiment, as in DVC.
    project.write("params.yaml", PARAMS.replace("epochs: 2", "epochs: 3"))
    before = snapshot(project)

    result = project.ok("exp", "run", "-S", "train.lr=0.2", "-n", "fast")
    assert "Reproducing 'prepare.repro'" in result.out  # the stages' output streams through
    sha = project.git("rev-parse", exp_ref(project, "fast")).strip()
    assert project.git("rev-parse", f"{sha}^").strip() == before["head"].strip()
    assert project.git("show", f"{sha}:params.yaml") == PARAMS.replace("0.1", "0.2").replace(
        "epochs: 2", "epochs: 3"
    )
    assert json.loads(project.git("show", f"{sha}:metrics.json")) == {"score": 0.2}

    # Branch, HEAD and index stay; the workspace holds the experiment's files and outputs.
    after = snapshot(project)
    for key in ("branch", "head", "index"):
        assert after[key] == before[key]
    for path, data in after["files"].items():
        assert data == project.git("show", f"{sha}:{path}").encode(), path
    assert (project.root / "data/lr").read_text() == "0.2\n"
    assert project.repro("status").code == 0
    assert not any((project.root / ".repro/tmp/exps").iterdir())  # the copy is gone

    again = project.repro("exp", "run", "-S", "train.lr=0.3", "-n", "fast")
    assert again.code == 1
    assert "already exists" in again.err and len(again.err.strip().splitlines()) == 1


def test_queue_and_run_all_in_parallel_leave_the_workspace_alone(
    pipelined: Project, docker_client: docker.DockerClient
) -> None:
    project = pipelined
    before = snapshot(project)
    rates = {"p2": 0.2, "p3": 0.3, "p4": 0.4, "p5": 0.5}
    for name, rate in rates.items():
        project.ok("exp", "run", "--queue", "-S", f"train.lr={rate}", "-n", name)
    queued = json.loads(project.ok("exp", "show", "--json").out)
    assert sorted(r["name"] for r in queued if r["queued"]) == sorted(rates)

    since = time.time()
    project.ok("exp", "run", "--run-all", "-j", "2")
    assert containers_since(docker_client, project, since) == 8  # 4 experiments x 2 stages
    assert snapshot(project) == before

    records = json.loads(project.ok("exp", "show", "--json").out)
    baseline, *experiments = records
    assert baseline["baseline"] is None and baseline["rev"] == before["head"].strip()
    assert len(experiments) == 4
    for record in experiments:
        rate = rates[record["name"]]
        assert record["baseline"] == baseline["rev"] and not record["queued"]
        assert record["params"] == {"params.yaml": {"train": {"lr": rate, "epochs": 2}}}
        assert record["metrics"] == {"metrics.json": {"score": rate}}
    csv_lines = project.ok("exp", "show", "--csv").out.splitlines()
    assert csv_lines[0].split(",")[4:] == [
        "metrics.json:score",
        "params.yaml:train.lr",
        "params.yaml:train.epochs",
    ]
    table = project.ok("exp", "show").out
    assert "├── p2" in table and "└── p5" in table

    diff = json.loads(project.ok("exp", "diff", "p2", "p4", "--json").out)
    assert diff["params.yaml:train.lr"]["old"] == 0.2
    assert diff["metrics.json:score"]["diff"] == pytest.approx(0.2)

    # apply: exactly that experiment's tracked files, and its outputs.
    p3 = project.git("rev-parse", exp_ref(project, "p3")).strip()
    project.ok("exp", "apply", "p3")
    for path in project.git("ls-tree", "-r", "--name-only", p3).split():
        assert (project.root / path).read_bytes() == project.git("show", f"{p3}:{path}").encode()
    assert (project.root / "data/lr").read_text() == "0.3\n"
    assert project.repro("status").code == 0  # outputs hash to what its stage files record
    assert project.git("rev-parse", "HEAD") == before["head"]

    # branch: a git branch whose tree is the experiment's; checking it out gives its outputs.
    project.git("checkout", "-q", "--", ".")
    project.ok("exp", "branch", "p4", "lr-04")
    p4 = project.git("rev-parse", exp_ref(project, "p4")).strip()
    assert project.git("rev-parse", "lr-04").strip() == p4
    project.git("checkout", "-q", "lr-04")
    project.ok("checkout")
    assert (project.root / "data/lr").read_text() == "0.4\n"
    assert project.repro("status").code == 0


def test_an_experiment_run_before_restores_from_the_run_cache(
    pipelined: Project, docker_client: docker.DockerClient
) -> None:
    project = pipelined
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.7", "-n", "first")
    project.ok("exp", "run", "--run-all")
    project.ok("exp", "remove", "first")
    since = time.time()
    project.ok("exp", "run", "-S", "train.lr=0.7", "-n", "second")
    assert containers_since(docker_client, project, since) == 0
    assert json.loads((project.root / "metrics.json").read_text()) == {"score": 0.7}


def test_an_experiment_runs_only_the_stages_whose_params_it_changed(
    pipelined: Project, docker_client: docker.DockerClient
) -> None:
    project = pipelined
    since = time.time()
    result = project.ok("exp", "run", "-S", "train.epochs=5", "-n", "longer")
    assert containers_since(docker_client, project, since) == 1
    assert "Reproducing 'train.repro'" in result.out
    assert "Reproducing 'prepare.repro'" not in result.out
    project.write("conf.json", '{"seed": 1}\n')
    project.ok("run", "--no-exec", "-f", "seed.repro", "-p", "conf.json:seed", "-O", "s", "true")
    project.commit("a stage with params of another file")
    record = json.loads(project.ok("exp", "show", "--json").out)[0]
    assert record["params"]["conf.json"] == {"seed": 1}


def test_a_failing_stage_fails_the_experiment_and_leaves_no_trace(pipelined: Project) -> None:
    project = pipelined
    # A copy that a killed repro left behind (its process is gone) is cleared too.
    dead = project.root / f".repro/tmp/exps/copy-{os.uname().nodename}-{2**22 + 1}-0bad"
    dead.mkdir(parents=True)
    before = snapshot(project)
    result = project.repro("exp", "run", "-S", "train.lr=9", "-n", "broken")
    assert result.code == 1
    assert "experiment 'broken' failed" in result.err and "train.repro" in result.err
    assert project.git("for-each-ref", "refs/exps") == ""
    assert snapshot(project) == before
    assert not any((project.root / ".repro/tmp/exps").iterdir())

    # In the queue, one failure does not stop the others; the failed one stays queued.
    project.ok("exp", "run", "--queue", "-S", "train.lr=9", "-n", "bad")
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.6", "-n", "good")
    result = project.repro("exp", "run", "--run-all", "-j", "2")
    assert result.code == 1 and "1 of 2 experiments failed" in result.err
    records = json.loads(project.ok("exp", "show", "--json").out)
    assert {(r["name"], r["queued"]) for r in records[1:]} == {("bad", True), ("good", False)}


def test_remove(pipelined: Project) -> None:
    project = pipelined
    # a and b write the same data/lr: two copies at once commit the same output into the one
    # cache; both succeed, and the object is whole.
    for name, rate in (("a", "0.15"), ("b", "0.150"), ("c", "0.25")):
        project.ok("exp", "run", "--queue", "-S", f"train.lr={rate}", "-n", name)
    project.ok("exp", "run", "--run-all", "-j", "2")
    project.ok("fsck")
    project.ok("exp", "run", "--queue", "-n", "waiting")
    project.ok("exp", "remove", "a")
    names = {r["name"] for r in json.loads(project.ok("exp", "show", "--json").out)[1:]}
    assert names == {"b", "c", "waiting"}
    project.ok("exp", "remove", "--queue")
    names = {r["name"] for r in json.loads(project.ok("exp", "show", "--json").out)[1:]}
    assert names == {"b", "c"}
    project.ok("exp", "remove", "--all")
    assert project.git("for-each-ref", "refs/exps") == ""


def test_a_fetched_experiment_cannot_make_repro_write_secrets_or_take_options(
    pipelined: Project, tmp_path: Path
) -> None:
    """Queued experiments may come from someone else's remote: one that tracks
    .repro/config.local as a symlink would have the remotes' secrets written where it points;
    one whose message names options as targets would pass them to repro."""
    project = pipelined
    project.ok("config", "--local", "remote.store.secret", "s3cr3t")
    target = tmp_path / "where-the-secrets-would-go"
    head = project.git("rev-parse", "HEAD").strip()

    def planted(name: str, message: str, link: bool) -> None:
        """A queued experiment made with git alone, as a remote could hand one over."""
        env = dict(os.environ, GIT_INDEX_FILE=str(tmp_path / f"index-{name}"))

        def plumbing(*args: str, stdin: str | None = None) -> str:
            return subprocess.run(
                ["git", *args], cwd=project.root, env=env, input=stdin, text=True,
                capture_output=True, check=True,
            ).stdout.strip()  # fmt: skip

        plumbing("read-tree", head)
        if link:
            blob = plumbing("hash-object", "-w", "--stdin", stdin=str(target))
            plumbing("update-index", "--add", "--cacheinfo", f"120000,{blob},.repro/config.local")
        sha = plumbing("commit-tree", plumbing("write-tree"), "-p", head, "-m", message)
        plumbing("update-ref", f"refs/exps/queue/{name}", sha)

    planted("evil", "repro experiment: planted", link=True)
    result = project.repro("exp", "run", "--run-all")
    assert result.code == 1 and "config.local" in result.err
    assert not os.path.lexists(target)
    project.ok("exp", "remove", "--queue")

    planted("options", "repro experiment: x\n\ntargets: --dry", link=False)
    result = project.repro("exp", "run", "--run-all")
    assert result.code == 1 and "'--dry'" in result.err  # a target that names no stage


def test_gc_keeps_every_experiments_outputs_until_it_is_removed(pipelined: Project) -> None:
    project = pipelined
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.35", "-n", "kept")
    project.ok("exp", "run", "--run-all")
    # Only the experiment's copy made data/lr = 0.35: nothing in the workspace or a branch.
    project.ok("gc", "-w", "-f")
    project.ok("exp", "apply", "kept")
    assert (project.root / "data/lr").read_text() == "0.35\n"
    project.git("checkout", "-q", "--", ".")
    project.ok("checkout")
    project.ok("exp", "remove", "kept")
    freed = project.ok("gc", "-w", "-f").out
    assert "Freed 0.0 MB (0 objects)" not in freed  # its objects went with it


def test_push_and_pull_through_a_git_remote_and_a_data_remote(
    docker_project: Project, tmp_path: Path
) -> None:
    project = docker_project
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    pipeline(project)
    project.git("remote", "add", "origin", str(bare))
    project.git("push", "-q", "origin", "main")
    project.ok("exp", "run", "-S", "train.lr=0.8", "-n", "shared")
    pushed = project.ok("exp", "push", "origin", "shared")
    assert "Pushed 1 experiment(s)" in pushed.out

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    other = Project(clone, project._capsys)
    other.ok("exp", "pull", "origin", "shared")
    records = json.loads(other.ok("exp", "show", "--json").out)
    assert [r["name"] for r in records[1:]] == ["shared"]
    assert records[1]["metrics"] == {"metrics.json": {"score": 0.8}}
    other.ok("exp", "apply", "shared")
    assert (clone / "data/lr").read_text() == "0.8\n"
    assert other.repro("status").code == 0

    missing = other.repro("exp", "pull", "origin", "nosuch")
    assert missing.code == 1 and "no experiment named 'nosuch'" in missing.err


def test_apply_refuses_to_overwrite_local_changes(pipelined: Project) -> None:
    project = pipelined
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.2", "-n", "other")
    project.ok("exp", "run", "--run-all")
    project.write("params.yaml", PARAMS.replace("epochs: 2", "epochs: 3"))
    result = project.repro("exp", "apply", "other")
    assert result.code == 1 and "params.yaml" in result.err and "-f" in result.err
    assert "epochs: 3" in (project.root / "params.yaml").read_text()  # nothing lost
    project.ok("exp", "apply", "-f", "other")
    assert "lr: 0.2" in (project.root / "params.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["exp", "run", "-S", "train.nosuch=1"], 1, "'train.nosuch' is not a parameter"),
        (["exp", "run", "-S", "other.yaml:lr=1"], 1, "params file 'other.yaml' is not in git"),
        (["exp", "run", "-S", "train.lr"], 2, "is not [FILE:]KEY=VALUE"),
        (["exp", "run", "-n", "bad name~"], 2, "not a valid experiment name"),
        (["exp", "apply", "nosuch"], 1, "no experiment named 'nosuch'"),
        (["exp", "branch", "nosuch", "b"], 1, "no experiment named 'nosuch'"),
        (["exp", "remove", "nosuch"], 1, "no experiment named 'nosuch'"),
        (["exp", "diff", "nosuch", "HEAD"], 1, "'nosuch' is not a revision"),
        (["exp", "run", "--run-all", "-S", "train.lr=1"], 2, "--run-all runs the queue"),
        (["exp", "remove", "some", "--all"], 2, "not both"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    project: Project, args: list[str], code: int, words: str
) -> None:
    project.write("params.yaml", PARAMS)
    project.commit("params")
    result = project.repro(*args)
    assert result.code == code
    assert words in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert project.git("for-each-ref", "refs/exps") == ""
    assert project.git("status", "--porcelain") == ""


def test_show_lists_each_baselines_experiments_under_it(pipelined: Project) -> None:
    project = pipelined
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.2", "-n", "on-main")
    project.git("checkout", "-q", "-b", "other")
    project.write("params.yaml", PARAMS.replace("epochs: 2", "epochs: 4"))
    project.commit("more epochs")
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.3", "-n", "on-other")
    records = json.loads(project.ok("exp", "show", "--json").out)
    assert [(r["name"], r["queued"]) for r in records] == [("other", False), ("on-other", True)]
    assert records[1]["params"]["params.yaml"]["train"] == {"lr": 0.3, "epochs": 4}
    assert records[1]["metrics"] == {}  # queued: not run yet
    records = json.loads(project.ok("exp", "show", "-a", "--json").out)
    assert [r["name"] for r in records] == ["other", "on-other", "main", "on-main"]
    assert records[3]["baseline"] == records[2]["rev"]


def test_queue_records_changes_to_any_params_file_without_touching_the_workspace(
    project: Project,
) -> None:
    project.write("params.yaml", PARAMS)
    project.write("conf/model.json", '{"layers": {"size": 8}, "name": "m"}\n')
    project.write("conf/opt.toml", "[adam]\nbeta = 0.9\n")
    project.commit("params")
    project.write("notes.txt", "uncommitted, untracked\n")
    before = snapshot(project)
    project.ok(
        "exp",
        "run",
        "--queue",
        "-n",
        "wide",
        "-S",
        "conf/model.json:layers.size=64",
        "-S",
        "conf/opt.toml:adam.beta=0.95",
        "-S",
        "train.epochs=[1, 2]",
    )
    assert snapshot(project) == before
    commit = "refs/exps/queue/wide"
    assert json.loads(project.git("show", f"{commit}:conf/model.json")) == {
        "layers": {"size": 64},
        "name": "m",
    }
    assert project.git("show", f"{commit}:conf/opt.toml") == "[adam]\nbeta = 0.95\n"
    assert "epochs:\n  - 1\n  - 2\n" in project.git("show", f"{commit}:params.yaml")
    assert project.git("rev-parse", f"{commit}^") == project.git("rev-parse", "HEAD")
    duplicate = project.repro("exp", "run", "--queue", "-n", "wide")
    assert duplicate.code == 1 and "already exists" in duplicate.err


def test_a_project_whose_repro_folder_is_not_committed_is_refused(project: Project) -> None:
    project.git("rm", "-q", "-r", "--cached", ".repro")
    project.write(".gitignore", "/.repro/\n")
    project.commit("forget .repro")
    result = project.repro("exp", "run", "--queue")
    assert result.code == 1 and "git add .repro" in result.err
    assert project.git("for-each-ref", "refs/exps") == ""
