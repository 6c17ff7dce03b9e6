"""A real Dask cluster on loopback for the cluster tests: a scheduler and three workers, each
worker with a dockerd of its own (own data root, so its own image store) started inside its own
network namespace, and with its own cache, scratch and home folders.

A dockerd started with --bridge=none deletes the host's docker0: so each one runs in a network
namespace of its own, never in the main one. The workers themselves run in the main namespace
(they reach the scheduler and the remotes on loopback), each with DOCKER_HOST at its engine, and
every path they open under the projects' folder is recorded (cluster_audit.py), to show that a
worker never reads the user's project.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

AUDIT = Path(__file__).resolve().parent / "cluster_audit.py"
WORKERS = 3
START_SECONDS = 60


@dataclass
class Engine:
    """A dockerd in the network namespace ``netns``, all its state under ``folder``."""

    netns: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.folder}/docker.sock"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.host, timeout=60)


@dataclass
class Worker:
    name: str
    engine: Engine
    folder: Path  # its cache (REPRO_WORKER_CACHE), home and Dask's own files
    process: subprocess.Popen[bytes] | None = None  # the nanny, which restarts a killed worker


@dataclass
class LoopbackCluster:
    address: str
    projects: Path  # where the tests make projects: no worker may open anything below
    opened: Path  # what the workers opened below ``projects``, one path a line
    workers: list[Worker] = field(default_factory=list)

    def client(self) -> Any:
        from repro.cluster.client import connect

        return connect(self.address)

    def containers(self) -> list[tuple[str, str]]:
        """(worker, container name) of every container on the workers' engines."""
        found = []
        for worker in self.workers:
            with contextlib.closing(worker.engine.client()) as client:
                found += [(worker.name, c.name) for c in client.containers.list(all=True)]
        return found

    def images(self) -> list[set[str]]:
        """The image IDs of each worker's engine."""
        found = []
        for worker in self.workers:
            with contextlib.closing(worker.engine.client()) as client:
                found.append({image.id for image in client.images.list()})
        return found


def start_engine(engine: Engine) -> None:
    subprocess.run(["ip", "netns", "add", engine.netns], check=True)
    engine.folder.mkdir(parents=True, exist_ok=True)
    log = open(engine.folder / "dockerd.log", "wb")  # noqa: SIM115 - the daemon's, kept open
    engine.process = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{engine.netns}", "dockerd"]
        + ["--bridge=none", "--iptables=false", "--ip6tables=false", f"--host={engine.host}"]
        + [f"--data-root={engine.folder}/data", f"--exec-root={engine.folder}/exec"]
        + [f"--pidfile={engine.folder}/dockerd.pid"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), contextlib.closing(engine.client()) as client:
            client.ping()
            return
        if engine.process.poll() is not None:
            break
        time.sleep(0.2)
    log_text = (engine.folder / "dockerd.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the dockerd of {engine.netns} did not start:\n{log_text}")


def stop_engine(engine: Engine) -> None:
    """Kill it, unmount what it left mounted, remove its namespace and its folder."""
    if engine.process is not None and engine.process.poll() is None:
        os.killpg(engine.process.pid, signal.SIGTERM)
        try:
            engine.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(engine.process.pid, signal.SIGKILL)
            engine.process.wait()
    prefix = f"{engine.folder}/"
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        mounts = [line.split()[1] for line in handle if line.split()[1].startswith(prefix)]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    subprocess.run(["ip", "netns", "del", engine.netns], check=False)
    subprocess.run(["rm", "-rf", str(engine.folder)], check=False)


def start_worker(cluster: LoopbackCluster, worker: Worker, env: dict[str, str]) -> None:
    home = worker.folder / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    worker_env = dict(
        env,
        HOME=str(home),
        DOCKER_HOST=worker.engine.host,
        REPRO_WORKER_CACHE=str(worker.folder / "cache"),
        REPRO_TEST_WATCHED=str(cluster.projects),
        REPRO_TEST_OPENED=str(cluster.opened),
    )
    log = open(worker.folder / "worker.log", "wb")  # noqa: SIM115 - the worker's, kept open
    worker.process = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", cluster.address]
        + ["--name", worker.name, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
        + ["--resources", "CPU=2", "--preload", str(AUDIT)]
        + ["--local-directory", str(worker.folder / "dask")],
        cwd=worker.folder,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_scheduler(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A scheduler on a port of its own choosing (a port picked here and handed over could be
    taken by then), and its address once it listens: from the file it writes when it does."""
    log = open(folder / "scheduler.log", "wb")  # noqa: SIM115 - the scheduler's, kept open
    address_file = folder / "scheduler.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        + ["--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        + ["--scheduler-file", str(address_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            address: str = json.loads(address_file.read_text(encoding="utf-8"))["address"]
            return process, address
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log_text = (folder / "scheduler.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the Dask scheduler did not start:\n{log_text}")


@contextlib.contextmanager
def running_cluster(env: dict[str, str]) -> Iterator[LoopbackCluster]:
    """The scheduler, three engines and three workers; all of it gone again afterwards, even
    when starting failed half-way."""
    folder = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: socket paths
    tag = f"rc{os.getpid()}"
    processes: list[subprocess.Popen[bytes]] = []
    workers: list[Worker] = []
    try:
        scheduler, address = start_scheduler(folder)
        processes.append(scheduler)
        cluster = LoopbackCluster(address, folder / "projects", folder / "opened", workers)
        cluster.projects.mkdir()
        cluster.opened.touch()
        for index in range(WORKERS):
            engine = Engine(f"{tag}-{index}", folder / f"e{index}")
            worker = Worker(f"w{index}", engine, folder / f"w{index}")
            workers.append(worker)
            start_engine(engine)
            start_worker(cluster, worker, env)
            assert worker.process is not None
            processes.append(worker.process)
        with contextlib.closing(cluster.client()) as client:
            client.wait_for_workers(WORKERS, timeout=START_SECONDS)
        yield cluster
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for worker in workers:
            stop_engine(worker.engine)
        subprocess.run(["rm", "-rf", str(folder)], check=False)
