"""The experiments set: the daily DVC 3 workflow on a project of trivial stages, so that what
is measured is each tool's own overhead, not the stages' work.

- ``sweep``: queue a 4-point parameter sweep and run it, two at a time
  (``exp run --queue -S …`` ×4, then ``exp run --run-all -j 2``). Every sample sweeps values
  never used before, so neither tool restores a point from its run-cache.
- ``exp_show``: ``exp show --json`` over 20 experiments.
- ``status_yaml``: ``status`` of a 10-stage one-file pipeline (repro.yaml / dvc.yaml), nothing
  changed.

repro runs each stage in a container (the bench image), DVC on the host: repro's column pays
for container starts that DVC's does not. There is no floor: no single command does what
either tool does here.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from machine import BENCH_IMAGE, build_image, docker_ok
from measure import Case, Run, Sides, alternate, noop
from tools import Tool

if TYPE_CHECKING:
    from harness import Bench

SWEEP = 4
SHOWN = 20
CHAIN = 10
# One stage reading two params and writing a metric; sh, cat and echo are all it needs.
TRAIN: dict[str, object] = {
    "cmd": "cat params.yaml > model.txt && echo '{\"acc\": 0.5}' > metrics.json",
    "params": ["train.lr", "train.epochs"],
    "outs": ["model.txt"],
    "metrics": [{"metrics.json": {"cache": False}}],
}


def run(bench: Bench) -> None:
    wanted = [op for op in ("sweep", "exp_show", "status_yaml") if bench.wanted(op)]
    if not wanted:
        return
    if not docker_ok():
        bench.log("  no Docker engine answers: the experiments set is skipped")
        return
    build_image()
    if "sweep" in wanted:
        _sweep(bench)
    if "exp_show" in wanted:
        _exp_show(bench)
    if "status_yaml" in wanted:
        _status(bench)


def _project(bench: Bench, tool: Tool, case: str, stages: dict[str, dict[str, object]]) -> Path:
    """A committed project of ``stages`` in the tool's one-file pipeline, run once."""
    import yaml

    proj = bench.fresh("experiments", case, tool.name)
    r = bench.runner
    tool.init(proj)
    (proj / "params.yaml").write_text("train:\n  lr: 0.1\n  epochs: 1\n")
    pipeline: dict[str, object] = {"stages": stages}
    name = "dvc.yaml"
    if tool is bench.repro:
        pipeline = {"image": BENCH_IMAGE, **pipeline}
        name = "repro.yaml"
    (proj / name).write_text(yaml.safe_dump(pipeline, sort_keys=False))
    r.run(tool.cmd("repro", "-q"), proj)
    r.run(["git", "add", "-A"], proj)
    r.run(["git", "commit", "-q", "-m", "pipeline"], proj)
    return proj


def _sweep(bench: Bench) -> None:
    r = bench.runner
    case = Case("exps", "sweep", "-")
    sides: Sides = {}
    fresh = itertools.count(1)  # values no sample used before: nothing from a run-cache
    for tool in bench.tools:
        proj = _project(bench, tool, "sweep", {"train": TRAIN})

        def clear(_i: int, tool: Tool = tool, proj: Path = proj) -> None:
            r.run(tool.cmd("exp", "remove", "--all"), proj)

        def sweep(tool: Tool = tool, proj: Path = proj) -> Run:
            base = next(fresh) * SWEEP
            queue = " && ".join(
                " ".join(tool.cmd("exp", "run", "-q", "--queue", "-S", f"train.lr={base + k}"))
                for k in range(SWEEP)
            )
            run_all = " ".join(tool.cmd("exp", "run", "-q", "--run-all", "-j", "2"))
            return r.measure(f"{queue} && {run_all}", proj)

        sides[tool.name] = (clear, sweep)
    alternate(case, bench.args.repeat, sides)
    case.note = (
        f"{SWEEP} points, one trivial stage each, 2 at a time; repro starts a container per "
        "point, DVC runs on the host"
    )
    bench.record(case)


def _exp_show(bench: Bench) -> None:
    r = bench.runner
    case = Case("exps", "exp_show", "-")
    sides: Sides = {}
    for tool in bench.tools:
        proj = _project(bench, tool, "show", {"train": TRAIN})
        for k in range(SHOWN):
            r.run(tool.cmd("exp", "run", "-q", "--queue", "-S", f"train.epochs={k + 2}"), proj)
        r.run(tool.cmd("exp", "run", "-q", "--run-all", "-j", "2"), proj)
        sides[tool.name] = (
            noop,
            lambda tool=tool, proj=proj: r.measure(tool.cmd("exp", "show", "--json"), proj),  # type: ignore[misc]
        )
    for _setup, step in sides.values():
        step()  # warm-up
    alternate(case, bench.args.repeat, sides)
    case.note = f"{SHOWN} experiments of one baseline"
    bench.record(case)


def _status(bench: Bench) -> None:
    r = bench.runner
    chain: dict[str, dict[str, object]] = {}
    for k in range(CHAIN):
        source = "params.yaml" if k == 0 else f"s{k - 1}.txt"
        chain[f"s{k}"] = {
            "cmd": f"cat {source} > s{k}.txt",
            "deps": [source],
            "outs": [f"s{k}.txt"],
        }
    case = Case("exps", "status_yaml", "-")
    sides: Sides = {}
    for tool in bench.tools:
        proj = _project(bench, tool, "status", chain)
        sides[tool.name] = (
            noop,
            lambda tool=tool, proj=proj: r.measure(tool.cmd("status", "-q"), proj),  # type: ignore[misc]
        )
    for _setup, step in sides.values():
        step()  # warm-up; repro's first status leaves its memo
    alternate(case, bench.args.repeat, sides)
    case.note = f"a chain of {CHAIN} stages in one repro.yaml / dvc.yaml"
    bench.record(case)
