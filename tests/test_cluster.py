"""Stages on a real Dask cluster (repro/cluster/): a scheduler and three workers on loopback,
each with its own dockerd, cache and scratch folders (cluster_servers.py), data through moto's
S3 server and a real sshd. Results must be byte-identical to a local run's, the fan-out must
run at once, images must reach the workers through the remote, and every fault ends in one
line with no container left on any engine."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_servers import LoopbackCluster, running_cluster
from helpers import Project, build_busybox_image, git
from remotes import remote_servers as servers
from remotes.remote_servers import SshServer
from test_cluster_worker import a_task

import docker
from repro.cluster.client import LONGEST_LINE
from repro.cluster.task import LOG_TOPIC

IMAGE = "repro-test-cluster:latest"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
BRANCHES = 4
LINE = re.compile(r"^\[(\S+)\] (start|end) (\d+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def image_id(docker_client: docker.DockerClient) -> str:
    return build_busybox_image(docker_client, IMAGE)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with servers.running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with servers.running_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def cluster(sshd: SshServer) -> Iterator[LoopbackCluster]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with running_cluster(dict(env, **AWS)) as made:
        for worker in made.workers:
            servers.trust_sshd(worker.folder / "home", sshd)
        yield made


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch, sshd: SshServer) -> None:
    """This side's own AWS chain and ssh config, as the workers have theirs."""
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir(exist_ok=True)
    servers.trust_sshd(home, sshd)


@pytest.fixture(autouse=True)
def _nothing_left(cluster: LoopbackCluster) -> Iterator[None]:
    """After each test: no container on any worker's engine, no path of a project opened."""
    yield
    deadline = time.monotonic() + 20  # a killed worker's reaper sweeps in the background
    while cluster.containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cluster.containers() == []
    assert cluster.opened.read_text() == ""


def new_project(cluster: LoopbackCluster, name: str, capsys: pytest.CaptureFixture[str]) -> Project:
    root = cluster.projects / name
    root.mkdir()
    git(root, "init", "-q")
    project = Project(root, capsys)
    project.ok("init", "--image", IMAGE)
    return project


def fan_out(project: Project, sleep: float) -> list[str]:
    """load -> BRANCHES stages that each wait ``sleep`` seconds -> join; its outputs."""
    project.write("in.txt", "alpha\nbeta\n")
    project.ok(
        "run",
        "-n",
        "load",
        "-d",
        "in.txt",
        "-o",
        "data.txt",
        "--no-exec",
        "cat in.txt > data.txt; echo $SOURCE_DATE_EPOCH >> data.txt",
    )
    for index in range(BRANCHES):
        cmd = (
            f"echo start $(date +%s); sleep {sleep}; sed s/a/{index}/g data.txt > p{index}.txt; "
            "echo end $(date +%s)"
        )
        project.ok(
            "run", "-n", f"p{index}", "-d", "data.txt", "-o", f"p{index}.txt", "--no-exec", cmd
        )
    parts = [f"p{index}.txt" for index in range(BRANCHES)]
    deps = [arg for part in parts for arg in ("-d", part)]
    project.ok(
        "run", "-n", "join", *deps, "-o", "all.txt", "--no-exec", f"cat {' '.join(parts)} > all.txt"
    )
    return ["data.txt", *parts, "all.txt"]


def md5s(project: Project, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.md5((project.root / p).read_bytes()).hexdigest() for p in paths}


def pinned_project(
    cluster: LoopbackCluster, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Project:
    """A project with a folder remote that holds the test image: a stage run here pinned it."""
    project = new_project(cluster, name, capsys)
    project.ok("remote", "add", "-d", "store", str(tmp_path / "remote"))
    project.ok("run", "-n", "pin", "-o", "pin.txt", "touch pin.txt")
    project.ok("push", "--images")
    return project


def ran_locally_then_cloned(
    cluster: LoopbackCluster,
    capsys: pytest.CaptureFixture[str],
    url: str,
    options: dict[str, str],
    sleep: float,
) -> tuple[Project, Project, list[str]]:
    """A project run here, its images pushed to the remote at ``url``, and a clone of it
    that has no output yet."""
    here = new_project(cluster, f"here-{time.time_ns()}", capsys)
    outs = fan_out(here, sleep)
    here.ok("remote", "add", "-d", "store", url)
    for key, value in options.items():
        here.ok("remote", "modify", "store", key, value)
    here.ok("repro", "-j", str(BRANCHES))
    here.git("add", "-A")
    here.commit("run here")
    here.ok("push", "--images")
    clone = cluster.projects / f"clone-{time.time_ns()}"
    git(cluster.projects, "clone", "-q", str(here.root), str(clone))
    return here, Project(clone, capsys), outs


def overlapping(text: str) -> int:
    """How many pairs of the fan-out's stages ran at the same time, by their own clocks."""
    spans: dict[str, dict[str, int]] = {}
    for stage, what, when in LINE.findall(text):
        spans.setdefault(stage, {})[what] = int(when)
    done = [s for s in spans.values() if len(s) == 2]
    assert len(done) == BRANCHES, text
    return sum(
        1
        for i, a in enumerate(done)
        for b in done[i + 1 :]
        if a["start"] < b["end"] and b["start"] < a["end"]
    )


def test_fan_out_on_three_workers_through_s3_matches_a_local_run(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], s3_endpoint: str, image_id: str
) -> None:
    bucket = servers.make_bucket(s3_endpoint)
    here, clone, outs = ran_locally_then_cloned(
        cluster, capsys, f"s3://{bucket}/team", {"endpointurl": s3_endpoint}, sleep=2
    )
    assert all(image_id not in ids for ids in cluster.images())
    result = clone.ok("repro", "--scheduler", cluster.address)
    assert md5s(clone, outs) == md5s(here, outs)
    assert (clone.root / "repro.lock").read_bytes() == (here.root / "repro.lock").read_bytes()
    assert overlapping(result.out) >= 1
    # The image came from the remote: engines that lacked it now have it.
    assert sum(image_id in ids for ids in cluster.images()) >= 2
    assert clone.ok("status").out.strip() == "Data and pipelines are up to date."


def test_the_same_run_through_an_ssh_remote(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    here, clone, outs = ran_locally_then_cloned(
        cluster, capsys, f"ssh://{servers.SSH_ALIAS}{tmp_path}/remote", {}, sleep=0
    )
    clone.ok("repro", "--scheduler", cluster.address)
    assert md5s(clone, outs) == md5s(here, outs)
    assert (clone.root / "repro.lock").read_bytes() == (here.root / "repro.lock").read_bytes()


def test_no_download_leaves_the_outputs_on_the_remote(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    project = pinned_project(cluster, "no-download", tmp_path, capsys)
    project.ok("run", "-n", "make", "-o", "out.txt", "--no-exec", "echo made > out.txt")
    project.ok("repro", "--scheduler", cluster.address, "--no-download")
    assert not (project.root / "out.txt").exists()
    status = project.repro("status").out
    assert "Output 'out.txt' of 'make' is missing (not in cache; repro pull)." in status
    project.ok("pull")
    assert (project.root / "out.txt").read_text() == "made\n"


def test_a_failing_stage_says_its_exit_code_and_keep_going_runs_the_other_branch(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    project = pinned_project(cluster, "failing", tmp_path, capsys)
    project.ok("run", "-n", "bad", "-o", "bad.txt", "--no-exec", "echo broken here; exit 3")
    project.ok(
        "run",
        "-n",
        "after",
        "-d",
        "bad.txt",
        "-o",
        "after.txt",
        "--no-exec",
        "cp bad.txt after.txt",
    )
    project.ok("run", "-n", "good", "-o", "good.txt", "--no-exec", "sleep 1; echo fine > good.txt")
    result = project.repro("repro", "--scheduler", cluster.address, "-k")
    assert result.code == 1
    assert "its command exited with code 3" in result.err
    assert "broken here" in result.err
    assert "skipped downstream: after" in result.err
    assert (project.root / "good.txt").read_text() == "fine\n"
    assert not (project.root / "after.txt").exists()


def test_a_worker_killed_mid_stage_runs_it_again_elsewhere(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    project = pinned_project(cluster, "killed", tmp_path, capsys)
    project.ok(
        "run", "-n", "slow", "-o", "out.txt", "--no-exec", "sleep 3; echo survived > out.txt"
    )
    run = _start(project, cluster)
    try:
        victim = _running_on(cluster)
        with contextlib.closing(cluster.client()) as client:
            pids = client.run(os.getpid)
            names = {
                info["name"]: address
                for address, info in client.scheduler_info()["workers"].items()
            }
        os.kill(pids[names[victim]], signal.SIGKILL)
        out, err = run.communicate(timeout=120)
    finally:
        _end(run)
    assert run.returncode == 0, err
    assert (project.root / "out.txt").read_bytes() == b"survived\n"
    with contextlib.closing(cluster.client()) as client:
        client.wait_for_workers(len(cluster.workers), timeout=60)  # the nanny restarted it


def test_ctrl_c_cancels_the_tasks_and_removes_their_containers(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    project = pinned_project(cluster, "interrupted", tmp_path, capsys)
    for index in range(2):
        project.ok(
            "run", "-n", f"s{index}", "-o", f"o{index}", "--no-exec", f"sleep 60; touch o{index}"
        )
    run = _start(project, cluster)
    try:
        _running_on(cluster)
        started = time.monotonic()
        run.send_signal(signal.SIGINT)
        _out, err = run.communicate(timeout=60)
    finally:
        _end(run)
    assert run.returncode != 0
    assert time.monotonic() - started < 30
    assert "Traceback" not in err


def test_an_image_on_no_engine_and_not_on_the_remote_names_the_fix(
    cluster: LoopbackCluster,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    image_id: str,
    docker_client: docker.DockerClient,
) -> None:
    import io

    tag = f"repro-test-cluster:missing-{time.time_ns()}"
    dockerfile = f"FROM {IMAGE}\nLABEL made={time.time_ns()}\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    try:
        project = new_project(cluster, "missing", capsys)
        project.ok("remote", "add", "-d", "store", str(tmp_path / "remote"))
        project.ok(
            "run", "-n", "make", "-o", "out.txt", "--image", tag, "--no-exec", "echo > out.txt"
        )
        result = project.repro("repro", "--scheduler", cluster.address)
        assert result.code == 1
        assert f"'{tag}'" in result.err and "'repro push --images'" in result.err
        assert len(result.err.strip().splitlines()) == 1
    finally:
        docker_client.images.remove(tag, force=True)


def test_bad_schedulers_and_resources_say_so_in_one_line(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    project = new_project(cluster, "bad", capsys)  # no remote yet
    project.ok(
        "run", "-n", "make", "-o", "out.txt", "--memory", "64m", "--no-exec", "echo > out.txt"
    )
    no_remote = project.repro("repro", "--scheduler", cluster.address)
    assert no_remote.code == 1 and "repro remote add -d" in no_remote.err
    project.ok("remote", "add", "-d", "store", str(tmp_path / "remote"))
    unreachable = project.repro("repro", "--scheduler", "tcp://127.0.0.1:9")
    assert unreachable.code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in unreachable.err
    assert len(unreachable.err.strip().splitlines()) == 1
    needs = project.repro("repro", "--scheduler", cluster.address)
    assert needs.code == 1 and "--resources" in needs.err and "MEMORY=" in needs.err
    assert project.repro("repro", "--no-download").code == 2


def test_doctor_reports_the_scheduler_its_workers_and_their_engines(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project(cluster, "doctor", capsys)
    project.ok("config", "--local", "core.scheduler", cluster.address)
    out = project.repro("doctor").out
    assert f"Scheduler: {cluster.address} (3 workers)" in out
    for worker in cluster.workers:
        assert re.search(rf"worker {worker.name} .*Docker engine", out), out


def _start(project: Project, cluster: LoopbackCluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "repro", "repro", "--scheduler", cluster.address],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _running_on(cluster: LoopbackCluster) -> str:
    """The worker whose engine runs a stage container, once one does."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for worker in cluster.workers:
            with contextlib.closing(worker.engine.client()) as client:
                if client.containers.list(filters={"label": "repro.stage"}):
                    return worker.name
        time.sleep(0.2)
    pytest.fail("no stage container started on any worker")


def _end(run: subprocess.Popen[str]) -> None:
    if run.poll() is None:
        run.kill()
        run.communicate()


def test_a_worker_of_another_version_refuses_the_task_in_one_line(
    cluster: LoopbackCluster,
) -> None:
    from repro.cluster import task
    from repro.errors import ReproError

    other = a_task("sha256:" + "0" * 64, Path("/nowhere"), "true", ())
    other = other._replace(session="version-check", version="0.0.0-other")
    with contextlib.closing(cluster.client()) as client:
        future = client.submit(task.run, other, pure=False)
        with pytest.raises(
            ReproError, match=r"^worker tcp://\S+ runs repro \S+ but this run needs"
        ):
            future.result()


def test_a_stage_that_never_ends_its_line_is_shown_in_bounded_pieces(
    cluster: LoopbackCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, image_id: str
) -> None:
    """A cloned repository's stage writing megabytes without a newline must not make this
    side hold (and re-copy, chunk after chunk) one ever-growing line, nor the scheduler keep
    its lines once the run ended."""
    project = pinned_project(cluster, "no-newline", tmp_path, capsys)
    cmd = "head -c 4000000 /dev/zero | tr '\\0' a; echo; echo > out.txt"
    project.ok("run", "-n", "chatty", "-o", "out.txt", "--no-exec", cmd)
    with contextlib.closing(cluster.client()) as dask:
        before = set(dask.get_events())
        result = project.ok("repro", "--scheduler", cluster.address)
        topics = dask.get_events().items()
        kept = {topic for topic, events in topics if events and topic.startswith(LOG_TOPIC)}
    kept -= before
    assert kept == set()  # the scheduler forgot the run's lines when it ended
    prefix = "[chatty] "
    shown = [line[len(prefix) :] for line in result.out.splitlines() if line.startswith(prefix)]
    assert "".join(shown) == "a" * 4_000_000
    assert max(map(len, shown)) <= LONGEST_LINE
