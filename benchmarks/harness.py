"""The harness: the state every benchmark set shares (scratch folders, the tools, the command
runner, the cases measured so far) and the run of every set the command line asks for."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from dataset import FULL, QUICK, Dataset
from machine import docker_version, git_version, machine_info, repro_commit
from measure import Case, Runner
from sets import cluster, container, experiments, files, pipeline, plots, registry, s3, ssh, startup
from tools import DVC, Repro, Tool, install_repro
from trash import Trash

GIT_ENV = {
    "GIT_AUTHOR_NAME": "repro bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "repro bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}

# The cases without a dataset, measured first, each when --ops names it (or names nothing).
UNSET: list[Callable[[Bench], None]] = [
    startup.run,
    container.run,
    experiments.run,
    plots.run,
    registry.run,
    cluster.run,
]
# The benchmark set of each dataset that --sets can name (dataset.FULL and QUICK).
SETS: dict[str, Callable[[Bench, Dataset], None]] = {
    "many": files.run,
    "big": files.run,
    "mnist": files.run,
    "pipeline": pipeline.run,
}
# The sets that bring their own datasets and servers, run when --sets names them.
SERVER_SETS: dict[str, Callable[[Bench], None]] = {
    "s3": s3.run,
    "ssh": ssh.run,
}


class Bench:
    """What every benchmark set uses, made once per run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scratch = Path(args.scratch).absolute()
        self.work = self.scratch / "work"
        self.trash = Trash(self.scratch / "trash")
        if self.work.exists():  # a killed run's leftovers
            self.trash.folder.mkdir(parents=True, exist_ok=True)
            self.work.rename(self.trash.folder / "work")
        self.trash.empty()
        self.work.mkdir(parents=True)
        env = dict(os.environ)
        env.update(GIT_ENV)
        env["DVC_NO_ANALYTICS"] = "1"
        env["DVC_SITE_CACHE_DIR"] = str(self.scratch / "dvc-site")
        self.code = args.code
        self.python = sys.executable  # the bare interpreter of the start-up floor
        venv: Path | None = None
        if args.code != "worktree":
            # Measure one commit of repro, not a work tree someone may be editing meanwhile,
            # installed into a virtualenv of its own, as DVC is.
            venv, self.code = install_repro(args.code, self.scratch)
            self.python = str(venv / "bin" / "python")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if not args.no_dvc:
            # DVC's experiment queue starts its workers as plain `dvc`, found on PATH; last,
            # so that no other command resolves to the virtualenv's python.
            env["PATH"] = os.pathsep.join([env.get("PATH", ""), str(Path(args.dvc_venv) / "bin")])
        self.runner = Runner(self.scratch / "logs", env)
        self.repro = Repro(self.runner, venv)
        self.dvc: DVC | None = None
        if not args.no_dvc:
            self.dvc = DVC(self.runner, Path(args.dvc_venv))
            self.dvc.ensure()
        self.cases: list[Case] = []
        self.ops = set(args.ops.split(",")) if args.ops else None

    def wanted(self, op: str) -> bool:
        return self.ops is None or op in self.ops

    @property
    def tools(self) -> list[Tool]:
        return [self.repro] + ([self.dvc] if self.dvc else [])

    def fresh(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        self.trash.discard(path)
        path.mkdir(parents=True)
        return path

    def log(self, text: str) -> None:
        print(text, flush=True)

    def record(self, case: Case) -> None:
        """Keep a measured case for the results, and say its medians."""
        self.cases.append(case)
        parts = []
        for side in ("repro", "dvc", "floor"):
            m = case.median(side)
            if m is not None:
                parts.append(f"{side} {m:.3f}s")
        self.log(f"  {case.set_name:6} {case.op:18} " + "  ".join(parts))


def measure(bench: Bench) -> dict[str, object]:
    """Every case the command line asks for; the results, as the JSON and RESULTS.md hold them."""
    args = bench.args
    started = dt.datetime.now(dt.timezone.utc)
    commit_before = repro_commit() if bench.code == "worktree" else bench.code
    load_before = os.getloadavg()
    bench.trash.wait_quiet(bench.log)  # a killed run's leftovers were just deleted
    for run_unset in UNSET:
        run_unset(bench)
    catalogue = QUICK if args.quick else FULL
    datasets = [name for name in args.sets.split(",") if name not in SERVER_SETS]
    for name in args.sets.split(","):
        if name in SERVER_SETS:
            SERVER_SETS[name](bench)
        else:
            SETS[name](bench, catalogue[name])
    info = machine_info(bench.scratch)
    info["load_before"] = [round(x, 2) for x in load_before]
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    info["started"] = started.isoformat(timespec="seconds")
    info["duration_s"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds())
    return {
        "quick": args.quick,
        "repeat": args.repeat,
        "datasets": {n: catalogue[n].describe() for n in datasets},
        "files": {n: catalogue[n].files for n in datasets},
        "machine": info,
        "versions": _versions(bench, commit_before),
        "cases": [c.to_json() for c in bench.cases],
        "command": " ".join(["python3", "benchmarks/run.py", *sys.argv[1:]]),
    }


def _versions(bench: Bench, commit_before: str) -> dict[str, str | None]:
    """What was measured: the interpreter, both tools (and repro's commit), git and Docker."""
    return {
        "python": platform.python_version(),
        "repro": bench.repro.version(),
        "repro_commit": commit_before
        if bench.code != "worktree" or commit_before == repro_commit()
        else f"{commit_before}, changed to {repro_commit()} during the run",
        "dvc": bench.dvc.version() if bench.dvc else None,
        "git": git_version(),
        "docker": docker_version(),
    }
