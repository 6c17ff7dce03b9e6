"""Stages on a Dask cluster (``repro repro --scheduler``) against the same stages run here.

Two cases: the per-stage cost of the cluster path on a stage running `true` (its floor is the
same stage run on this machine), and the wall time of a fan-out (load -> four stages that each
sleep SLEEP seconds -> join) on three workers against one (its floor). The stages wait rather
than compute, as this machine has 2 cores.

The scheduler and workers run here, all on this machine's Docker engine (the tests give each
worker an engine of its own; the timing does not need that), with a folder remote in the
scratch folder. The workers run the measured repro's interpreter, which needs `distributed`
(`pip install 'repro-pipelines[cluster]'`); without it the set is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from machine import BENCH_IMAGE, build_image, docker_ok
from measure import Case, Setup, Sides, alternate

if TYPE_CHECKING:
    from harness import Bench

BRANCHES = 4
SLEEP = 2


def run(bench: Bench) -> None:
    if not (bench.wanted("cluster_stage") or bench.wanted("cluster_fan_out")):
        return
    python = str(Path(bench.repro.exe).parent / "python")
    if not docker_ok():
        bench.log("  no Docker engine answers: the cluster cases are skipped")
        return
    if subprocess.run([python, "-c", "import distributed"], capture_output=True).returncode:
        bench.log(f"  {python} has no distributed: the cluster cases are skipped")
        return
    build_image()
    folder = bench.fresh("cluster")
    with _cluster(python, folder / "one", 1) as one, _cluster(python, folder / "three", 3) as three:
        if bench.wanted("cluster_stage"):
            _stage(bench, folder, one)
        if bench.wanted("cluster_fan_out"):
            _fan_out(bench, folder, one, three)


def _project(bench: Bench, folder: Path, name: str) -> Path:
    """A project with a folder remote that holds the bench image, pinned by a stage run here."""
    project = folder / name
    project.mkdir()
    bench.repro.init(project)
    r = bench.runner
    r.run(bench.repro.cmd("config", "-q", "core.image", BENCH_IMAGE), project)
    r.run(bench.repro.cmd("remote", "add", "-q", "-d", "bench", str(folder / "remote")), project)
    r.run(bench.repro.cmd("run", "-q", "-n", "pin", "-o", "pin.txt", "touch pin.txt"), project)
    r.run(bench.repro.cmd("push", "-q", "--images"), project)
    return project


def _stage(bench: Bench, folder: Path, address: str) -> None:
    r = bench.runner
    project = _project(bench, folder, "stage")
    r.run(bench.repro.cmd("run", "-q", "-n", "t", "--no-exec", "true"), project)
    command = bench.repro.cmd("repro", "-q", "-f", "-s", "--no-run-cache", "t")
    case = Case("-", "cluster_stage", "the same `repro repro -f` run here")
    sides: Sides = {
        "repro": (
            lambda _i: None,
            lambda: r.measure([*command, "--scheduler", address], project),
        ),
        "floor": (lambda _i: None, lambda: r.measure(command, project)),
    }
    alternate(case, bench.args.repeat, sides)
    case.note = "one worker, on this machine's engine, its data through a folder remote"
    bench.record(case)


def _fan_out(bench: Bench, folder: Path, one: str, three: str) -> None:
    r = bench.runner
    project = _project(bench, folder, "fan-out")
    (project / "in.txt").write_text("start\n")

    def stage(name: str, deps: list[str], out: str, cmd: str) -> None:
        flags = [arg for dep in deps for arg in ("-d", dep)]
        r.run(
            bench.repro.cmd("run", "-q", "-n", name, *flags, "-o", out, "--no-exec", cmd), project
        )

    stage("load", ["in.txt"], "data.txt", "cp in.txt data.txt")
    parts = [f"p{i}.txt" for i in range(BRANCHES)]
    for index, part in enumerate(parts):
        stage(f"p{index}", ["data.txt"], part, f"sleep {SLEEP}; cp data.txt {part}")
    stage("join", parts, "all.txt", f"cat {' '.join(parts)} > all.txt")

    def changed(side: str) -> Setup:
        def setup(i: int) -> None:
            # New input each time: every stage runs, none restored from the run-cache.
            (project / "in.txt").write_text(f"{side} {i}\n")

        return setup

    command = bench.repro.cmd("repro", "-q", "--no-run-cache", "--scheduler")
    case = Case("-", "cluster_fan_out", f"the same on one worker ({BRANCHES} × sleep {SLEEP})")
    sides: Sides = {
        "repro": (changed("three"), lambda: r.measure([*command, three], project)),
        "floor": (changed("one"), lambda: r.measure([*command, one], project)),
    }
    alternate(case, bench.args.repeat, sides)
    case.note = f"load -> {BRANCHES} stages that sleep {SLEEP} s -> join; three workers vs one"
    bench.record(case)


@contextlib.contextmanager
def _cluster(python: str, folder: Path, workers: int) -> Iterator[str]:
    """A scheduler and ``workers`` workers on loopback; its address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    folder.mkdir(parents=True)
    log = open(folder / "cluster.log", "wb")  # noqa: SIM115 - the servers', kept open
    processes = []
    try:
        processes.append(
            subprocess.Popen(
                [python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
                + ["--port", str(port), "--no-dashboard"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        for index in range(workers):
            env = dict(os.environ, REPRO_WORKER_CACHE=str(folder / f"w{index}"))
            processes.append(
                subprocess.Popen(
                    [python, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1"]
                    + ["--nthreads", "1", "--no-dashboard"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
        wait = f"from distributed import Client; Client({address!r}).wait_for_workers({workers})"
        subprocess.run([python, "-c", wait], check=True, timeout=120, capture_output=True)
        yield address
    finally:
        for process in processes:
            process.terminate()  # a worker's nanny stops the worker first
        for process in processes:
            process.wait()
        log.close()
