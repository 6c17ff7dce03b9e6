"""The registry set: ``import`` of the mnist dataset (5,000 files; 500 with --quick) from a
second repository, each tool from its own registry made by itself.

Each registry tracks the data, names a folder remote in its tracked config, has pushed to it
and has no cache left, as a registry's clone on another machine would: both tools fetch every
object from the remote. Every round imports into a fresh project. The floor is the physical
work: a shallow ``git clone`` of the registry and a ``cp -r`` of the remote's objects.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import FULL, QUICK, generate
from measure import Case, Run, Setup, Sides, Step, alternate, check_tree, quote
from tools import Tool

if TYPE_CHECKING:
    from harness import Bench


def run(bench: Bench) -> None:
    if not bench.wanted("import"):
        return
    dataset = (QUICK if bench.args.quick else FULL)["mnist"]
    data = generate(dataset, bench.scratch)
    r = bench.runner
    case = Case("mnist", "import", "git clone --depth 1 + cp -r")
    sides: Sides = {}
    for tool in bench.tools:
        registry = bench.fresh("registry", tool.name, "source")
        remote = bench.work / "registry" / tool.name / "remote"
        tool.init(registry)
        shutil.copytree(data, registry / "data")
        r.run(tool.cmd("add", "-q", "data"), registry)
        r.run(tool.cmd("remote", "add", "-d", "store", str(remote)), registry)
        r.run(tool.cmd("push", "-q"), registry)
        r.run(["git", "add", "-A"], registry)
        r.run(["git", "commit", "-q", "-m", "registry"], registry)
        cache = ".repro/cache" if tool is bench.repro else ".dvc/cache"
        shutil.rmtree(registry / cache)
        sides[tool.name] = _sides(bench, tool, registry, dataset.files)
    floor_dir = bench.fresh("registry", "floor")
    floor_remote = bench.work / "registry" / bench.repro.name / "remote"
    floor_source = bench.work / "registry" / bench.repro.name / "source"

    def floor_setup(_i: int) -> None:
        bench.trash.discard(floor_dir / "out")

    floor = (
        f"git clone -q --depth 1 file://{quote(floor_source)} out/git && "
        f"cp -r {quote(floor_remote)} out/objects"
    )
    sides["floor"] = (floor_setup, lambda: r.measure(floor, floor_dir))
    alternate(case, bench.args.repeat, sides)
    case.note = (
        "from a registry (file://) whose data is on a folder remote; a fresh project a round"
    )
    bench.record(case)


def _sides(bench: Bench, tool: Tool, registry: Path, files: int) -> tuple[Setup, Step]:
    r = bench.runner
    target = bench.work / "registry" / tool.name / "target"

    def setup(i: int) -> None:
        bench.trash.discard(target)
        target.mkdir(parents=True)
        tool.init(target)

    def step() -> Run:
        url = f"file://{registry}"
        done = r.measure(tool.cmd("import", "-q", url, "data", "-o", "data"), target)
        check_tree(target / "data", files, None)
        return done

    return setup, step
