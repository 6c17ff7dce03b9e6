"""Pipelines in real containers: the seed's load -> train -> evaluate with toy commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TEST_IMAGE, Project, build_busybox_image, start_stage

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.docker

LOAD = (
    "mkdir -p data && cp config/load.json data/config && seq 1 $(cat config/load.json) "
    "> data/numbers"
)
TRAIN = "mkdir -p model && cat data/numbers config/train.json | md5sum > model/model.bin"
EVALUATE = 'echo "{\\"acc\\": $(wc -l < data/numbers), \\"loss\\": 1}" > model/metrics.json'


def created_containers(client: docker.DockerClient, project: Project, since: float) -> int:
    events = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "event": "create", "label": f"repro.project={project.root}"},
    )
    return sum(1 for event in events if event.get("timeNano", 0) >= since * 1e9)


def seed_pipeline(project: Project) -> None:
    project.write("config/load.json", "10\n")
    project.write("config/train.json", "32\n")
    project.ok("run", "-f", "load.repro", "-d", "config/load.json", "-o", "data", LOAD)
    project.ok(
        "run",
        "-f",
        "train.repro",
        "-d",
        "data",
        "-d",
        "config/train.json",
        "-o",
        "model/model.bin",
        TRAIN,
    )
    project.ok(
        "run",
        "-f",
        "evaluate.repro",
        "-d",
        "data",
        "-d",
        "model/model.bin",
        "-M",
        "model/metrics.json",
        EVALUATE,
    )
    project.commit("pipeline", tag="0.1")


def test_seed_pipeline_reproduces_only_what_changed(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    seed_pipeline(project)
    stage = (project.root / "train.repro").read_text()
    assert stage.startswith("cmd: ")
    image_id = docker_client.images.get(TEST_IMAGE).id
    assert f"id: {image_id}" in stage
    assert json.loads((project.root / "model/metrics.json").read_text()) == {"acc": 10, "loss": 1}
    assert (project.root / ".gitignore").read_text().splitlines() == ["/data"]
    assert (project.root / "model/.gitignore").read_text().splitlines() == ["/model.bin"]

    since = time.time()
    result = project.ok("repro", "evaluate.repro")
    assert "Stage 'load.repro' didn't change." in result.out
    assert "Pipeline is up to date. Nothing to reproduce." in result.out
    assert created_containers(docker_client, project, since) == 0

    project.write("config/train.json", "64\n")
    result = project.ok("repro", "evaluate.repro")
    assert "Stage 'load.repro' didn't change." in result.out
    assert "Dependency 'config/train.json' of 'train.repro' changed." in result.out
    assert "Reproducing 'train.repro'" in result.out
    assert "Dependency 'model/model.bin' of 'evaluate.repro' changed." in result.out
    assert "Reproducing 'evaluate.repro'" in result.out
    assert "Reproducing 'load.repro'" not in result.out
    assert project.repro("status").code == 0

    project.write("config/load.json", "20\n")
    result = project.ok("repro")
    for name in ("load.repro", "train.repro", "evaluate.repro"):
        assert f"Reproducing '{name}'" in result.out
    assert json.loads((project.root / "model/metrics.json").read_text())["acc"] == 20

    project.ok("metrics", "modify", "model/metrics.json", "--xpath", "acc")
    assert project.repro("status").code == 0  # how a metric is read does not make it stale
    shown = json.loads(project.ok("metrics", "show", "--json").out)
    assert shown == {"workspace": {"model/metrics.json": 20}}


def test_early_cutoff_when_outputs_are_identical(docker_project: Project) -> None:
    project = docker_project
    seed_pipeline(project)
    # load copies config/load.json into data/: a whitespace-only change of another dep that
    # load ignores would change nothing; here load reads only the number, so "10" -> "10\n\n"
    project.ok(
        "run",
        "--overwrite",
        "-f",
        "load.repro",
        "-d",
        "config/load.json",
        "-o",
        "data",
        "mkdir -p data && seq 1 $(cat config/load.json) > data/numbers",
    )
    project.ok("repro")
    project.write("config/load.json", "10\n\n")
    result = project.ok("repro")
    assert "Reproducing 'load.repro'" in result.out
    assert "Stage 'train.repro' didn't change." in result.out
    assert "Stage 'evaluate.repro' didn't change." in result.out


def test_run_cache_restores_without_a_container(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    seed_pipeline(project)
    model_32 = (project.root / "model/model.bin").read_text()
    stages_32 = {n: (project.root / n).read_text() for n in ("train.repro", "evaluate.repro")}
    project.write("config/train.json", "64\n")
    project.ok("repro")
    assert (project.root / "model/model.bin").read_text() != model_32
    project.write("config/train.json", "32\n")
    since = time.time()
    result = project.ok("repro")
    assert "Restored 'train.repro' from the run-cache" in result.out
    assert created_containers(docker_client, project, since) == 0
    assert (project.root / "model/model.bin").read_text() == model_32
    assert (project.root / "train.repro").read_text() == stages_32["train.repro"]
    since = time.time()
    result = project.ok("repro", "-f", "-s", "train.repro")  # --force runs the command
    assert "from the run-cache" not in result.out
    assert created_containers(docker_client, project, since) == 1
    since = time.time()
    project.write("config/train.json", "64\n")
    project.ok("repro", "--no-run-cache")
    assert created_containers(docker_client, project, since) == 2  # train and evaluate


def test_metric_outputs_come_back_from_the_run_cache(docker_project: Project) -> None:
    project = docker_project
    seed_pipeline(project)
    project.write("config/load.json", "20\n")
    project.ok("repro")
    project.write("config/load.json", "10\n")
    result = project.ok("repro")
    assert result.out.count("from the run-cache") == 3
    assert json.loads((project.root / "model/metrics.json").read_text())["acc"] == 10


def test_stage_is_isolated(docker_project: Project) -> None:
    project = docker_project
    project.write("in.txt", "input")
    project.write("other.txt", "other")
    project.ok("add", "other.txt")
    probe = (
        "ls /sys/class/net > out/ifaces; "
        "(echo x >> .git/config) 2>/dev/null && echo git-writable >> out/escapes; "
        "(touch .repro/evil) 2>/dev/null && echo repro-writable >> out/escapes; "
        "(echo x >> in.txt) 2>/dev/null && echo dep-writable >> out/escapes; "
        "(chmod 666 in.txt) 2>/dev/null && echo dep-chmod >> out/escapes; "
        "(chmod 666 other.txt && echo x >> other.txt) 2>/dev/null "
        "&& echo out-writable >> out/escapes; "
        "(rm -f other.txt) 2>/dev/null; test -e other.txt || echo out-removed >> out/escapes; "
        "id -u > out/uid; touch out/done"
    )
    project.ok("run", "-d", "in.txt", "-o", "out", f"mkdir -p out; {probe}")
    assert (project.root / "out/ifaces").read_text().split() == ["lo"]
    assert not (project.root / "out/escapes").exists(), (project.root / "out/escapes").read_text()
    assert (project.root / "out/uid").read_text().strip() == str(os.getuid())
    assert (project.root / "in.txt").read_text() == "input"
    assert project.ok("fsck").code == 0


def test_failing_stage_changes_nothing(docker_project: Project) -> None:
    project = docker_project
    project.write("in.txt", "x")
    project.ok("run", "-f", "s.repro", "-d", "in.txt", "-o", "out.txt", "cp in.txt out.txt")
    before = (project.root / "s.repro").read_text()
    objects = sorted((project.root / ".repro/cache/files").rglob("*"))
    project.ok(
        "run",
        "--overwrite",
        "--no-exec",
        "-f",
        "s.repro",
        "-d",
        "in.txt",
        "-o",
        "out.txt",
        "echo partial > out.txt; echo 'something broke' >&2; exit 3",
    )
    result = project.repro("repro", "s.repro")
    assert result.code == 1
    assert "exited with code 3" in result.err
    assert "something broke" in result.err
    assert "md5:" not in (project.root / "s.repro").read_text()
    assert sorted((project.root / ".repro/cache/files").rglob("*")) == objects
    assert before != (project.root / "s.repro").read_text()


def test_missing_output_is_named(docker_project: Project) -> None:
    result = docker_project.repro("run", "-o", "never.txt", "true")
    assert result.code == 1
    assert "never.txt" in result.err


def test_missing_image_is_explained(docker_project: Project) -> None:
    result = docker_project.repro("run", "--image", "no-such-image:1", "-o", "x", "touch x")
    assert result.code == 1
    assert "no-such-image:1" in result.err and "repro pull --images" in result.err


def test_ctrl_c_stops_and_removes_the_container(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    proc = start_stage(project, docker_client)
    label = {"label": f"repro.project={project.root}"}
    started = time.time()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.time() - started < 15
    assert docker_client.containers.list(all=True, filters=label) == []
    assert not (project.root / "out.repro").exists()


def test_parallel_jobs_overlap(docker_project: Project) -> None:
    project = docker_project
    # Each stage waits (bounded) for the other's marker: only concurrent runs can both succeed.
    wait_for = (
        "i=0; touch {me}.started; while [ ! -e {other}.started ]; do i=$((i+1)); "
        "[ $i -gt 300 ] && exit 9; sleep 0.1; done; echo ok > {me}.out"
    )
    for me, other in (("a", "b"), ("b", "a")):
        project.ok(
            "run",
            "--no-exec",
            "-f",
            f"{me}.repro",
            "-o",
            f"{me}.out",
            wait_for.format(me=me, other=other),
        )
    result = project.repro("repro", "-j", "2")
    assert result.code == 0, result.err
    assert (project.root / "a.out").read_text() == "ok\n"
    assert (project.root / "b.out").read_text() == "ok\n"


def test_keep_going_runs_independent_branches(docker_project: Project) -> None:
    project = docker_project
    project.ok("run", "--no-exec", "-f", "bad.repro", "-o", "bad.out", "exit 1")
    project.ok(
        "run",
        "--no-exec",
        "-f",
        "after.repro",
        "-d",
        "bad.out",
        "-o",
        "after.out",
        "cp bad.out after.out",
    )
    project.ok("run", "--no-exec", "-f", "good.repro", "-o", "good.out", "echo fine > good.out")
    result = project.repro("repro", "-k")
    assert result.code == 1
    assert "bad.repro" in result.err and "after.repro" in result.err
    assert (project.root / "good.out").read_text() == "fine\n"
    assert not (project.root / "after.out").exists()


def test_dry_runs_and_writes_nothing(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    seed_pipeline(project)
    project.write("config/load.json", "12\n")

    def files() -> dict[Path, int]:  # the state db is a memo of hashes; it may learn
        return {
            p: p.stat().st_mtime_ns
            for p in project.root.rglob("*")
            if ".git" not in p.parts and not p.name.startswith("state.db")
        }

    snapshot = files()
    since = time.time()
    result = project.ok("repro", "--dry")
    assert "Would reproduce 'load.repro'" in result.out
    assert "Would reproduce 'evaluate.repro'" in result.out
    assert created_containers(docker_client, project, since) == 0
    assert files() == snapshot


def test_image_drift_repins_and_pinned_keeps_the_old_id(
    docker_project: Project, docker_client: docker.DockerClient
) -> None:
    project = docker_project
    tag = "repro-test-drift:latest"
    old_id = build_busybox_image(docker_client, tag)
    docker_client.images.get(old_id).tag("repro-test-drift", "keep-old")  # keep the old ID alive
    project.ok("run", "--image", tag, "-o", "out.txt", "echo hi > out.txt")
    # A new image under the same name: same busybox plus one more file -> another ID.
    container = docker_client.containers.create(tag, ["true"])
    container.commit("repro-test-drift", "latest", changes=["ENV DRIFT=1"])
    container.remove()
    new_id = docker_client.images.get(tag).id
    assert new_id != old_id
    result = project.repro("status")
    assert result.code == 1
    assert "Image of 'out.txt.repro' changed" in result.out
    result = project.ok("repro", "--pinned")
    assert "Pipeline is up to date" in result.out
    project.ok("repro")
    assert f"id: {new_id}" in (project.root / "out.txt.repro").read_text()
    assert project.repro("status").code == 0


def test_stage_runs_as_the_invoking_user(
    public_project: Project, docker_client: docker.DockerClient
) -> None:
    """Drop to an ordinary uid (with access to the engine socket) and run a stage."""
    project = public_project
    uid = gid = 4242
    for path in [project.root, *project.root.rglob("*")]:
        os.lchown(path, uid, gid)
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    code = _run_as(
        uid, gid, socket_gid, project.root, ["run", "-o", "made.txt", "id -u > made.txt"]
    )
    assert code == 0
    made = project.root / "made.txt"
    assert made.read_text().strip() == str(uid)
    assert made.stat().st_uid == uid


def _run_as(uid: int, gid: int, extra_gid: int, cwd: Path, args: list[str]) -> int:
    """Run the CLI in a forked child that has dropped root (the python install is private)."""
    import docker.types  # noqa: F401
    import tqdm  # noqa: F401
    import yaml  # noqa: F401

    import docker  # noqa: F401  - imported before dropping privileges
    import repro.cli.commands.data  # noqa: F401
    import repro.cli.commands.run  # noqa: F401
    import repro.runners.docker.reaper  # noqa: F401
    import repro.runners.docker.runner  # noqa: F401
    from repro.cli import main

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            os.setgroups([extra_gid])
            os.setgid(gid)
            os.setuid(uid)
            os.chdir(cwd)
            code = main(args)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_cycles_and_overlapping_outputs_are_refused(docker_project: Project) -> None:
    project = docker_project
    project.ok("run", "--no-exec", "-f", "a.repro", "-d", "b.out", "-o", "a.out", "cp b.out a.out")
    result = project.repro(
        "run", "--no-exec", "-f", "b.repro", "-d", "a.out", "-o", "b.out", "cp a.out b.out"
    )
    assert result.code == 1 and "cycle" in result.err
    assert not (project.root / "b.repro").exists()
    result = project.repro("run", "--no-exec", "-f", "c.repro", "-o", "a.out", "touch a.out")
    assert result.code == 1 and "overlaps" in result.err
    result = project.repro("run", "--no-exec", "-f", "d.repro", "-d", "x", "-o", "x/y", "true")
    assert result.code == 1 and "its own output" in result.err
    result = project.repro("run", "-o", "../escape", "true")
    assert result.code == 1 and "outside the project" in result.err


def test_pipeline_show_and_list(docker_project: Project) -> None:
    project = docker_project
    seed_pipeline(project)
    drawing = project.ok("pipeline", "show", "--ascii", "evaluate.repro").out
    lines = drawing.splitlines()
    order = [
        i
        for name in ("load.repro", "train.repro", "evaluate.repro")
        for i, line in enumerate(lines)
        if f"| {name}" in line or f"{name} |" in line
    ]
    assert order == sorted(order) and len(order) == 3
    assert "v" in drawing and "+--" in drawing
    assert '-> "model/model.bin"' in project.ok("pipeline", "show", "--dot", "--outs").out
    mermaid = project.ok("pipeline", "show", "--mermaid", "--commands").out
    assert mermaid.startswith("flowchart TD") and "seq 1" in mermaid
    listed = json.loads(project.ok("pipeline", "list", "--json").out)
    assert [s["stage"] for s in listed] == ["load.repro", "train.repro", "evaluate.repro"]
    assert listed[2]["upstream"] == ["load.repro", "train.repro"]
    project.ok("remove", "evaluate.repro")
    assert not (project.root / "evaluate.repro").exists()


def test_resources_reach_the_engine(docker_project: Project) -> None:
    project = docker_project
    limit = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory.max"
    )
    project.ok(
        "run", "--memory", "64m", "--cpus", "0.5", "-o", "limit.txt", f"({limit}) > limit.txt"
    )
    assert (project.root / "limit.txt").read_text().strip() == str(64 * 1024 * 1024)
    stage = (project.root / "limit.txt.repro").read_text()
    assert "resources:\n  cpus: 0.5\n  memory: 64m\n" in stage


def test_network_mode_is_recorded_and_used(docker_project: Project) -> None:
    project = docker_project
    project.ok("run", "--network", "bridge", "-o", "ifaces", "ls /sys/class/net > ifaces")
    assert "eth0" in (project.root / "ifaces").read_text().split()
    assert "network: bridge" in (project.root / "ifaces.repro").read_text()


def test_a_local_engine_never_loads_the_ssh_stack(docker_project: Project) -> None:
    """docker-py pulls in paramiko (~0.1 s of imports per command) only for ssh:// engines."""
    project = docker_project
    project.ok("run", "-f", "noop.repro", "--image", TEST_IMAGE, "true")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "repro", "repro", "-f", "noop.repro"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| docker\n" in done.stderr  # docker-py was loaded in this process
    assert "paramiko.transport" not in done.stderr  # tried (and refused) at most, not loaded
