"""The pipeline set: `status` of a project shaped like the walkthrough, tracked data then
load -> train -> evaluate.

repro's stages are pinned to an image, so its status also asks the engine whether the image
name still points at the pinned ID. The floor is therefore the stat walk of every path status
must look at (the data, the stages' outputs, configs and stage files) plus that one question
to the engine: a `curl` of /images/NAME/json over its unix socket (`docker image inspect`
where curl is missing: a slower, easier floor). DVC runs the same three stages from a
dvc.yaml, on the host.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import Dataset, generate
from machine import BENCH_IMAGE, build_image, docker_ok
from measure import Case, Sides, alternate, noop
from tools import Tool

if TYPE_CHECKING:
    from harness import Bench

STAGES = [  # name, deps, (flag, out), command
    ("load", ["raw", "config/load.json"], ("-o", "data"), "cp -r raw data"),
    ("train", ["data", "config/train.json"], ("-o", "model.bin"),
     "cat data/*/* config/train.json > model.bin"),
    ("evaluate", ["model.bin"], ("-M", "metrics.json"),
     "echo '{\"acc\": 0.5}' > metrics.json"),
]  # fmt: skip


def run(bench: Bench, ds: Dataset) -> None:
    bench.log(f"dataset {ds.name}: {ds.describe()}, three stages")
    if not docker_ok():
        bench.log("  no Docker engine answers: the pipeline set is skipped")
        return
    if not bench.wanted("status"):
        return
    build_image()
    src = generate(ds, bench.scratch)
    base = bench.fresh(ds.name)
    projects: dict[str, Path] = {}
    for tool in bench.tools:
        projects[tool.name] = _project(bench, tool, base / tool.name, src)
    r = bench.runner
    rp = projects[bench.repro.name]
    walked = "raw data model.bin metrics.json config *.repro"
    statwalk = f"find {walked} -printf '%i %T@ %s %p\\n' > /dev/null"
    if shutil.which("curl"):
        engine = (
            "curl -sf --unix-socket /var/run/docker.sock "
            f"http://docker/images/{BENCH_IMAGE}/json > /dev/null"
        )
    else:
        engine = f"docker image inspect {BENCH_IMAGE} > /dev/null"
    case = Case(ds.name, "status", "stat walk + one engine GET")
    sides: Sides = {
        t.name: (noop, lambda t=t: r.measure(t.cmd("status", "-q"), projects[t.name]))  # type: ignore[misc]
        for t in bench.tools
    }
    sides["floor"] = (noop, lambda: r.measure(f"{statwalk} && {engine}", rp))
    for _setup, step in sides.values():
        step()  # warm-up; repro's first status also leaves its memo
    alternate(case, bench.args.repeat, sides)
    case.note = f"3 stages in {BENCH_IMAGE}; floor: `{statwalk}` then `{engine}`"
    bench.record(case)
    for proj in projects.values():
        bench.trash.discard(proj)
    bench.trash.discard(base)


def _project(bench: Bench, tool: Tool, proj: Path, src: Path) -> Path:
    """The tool's project at ``proj``: the data tracked, the three stages run, all committed."""
    r = bench.runner
    proj.mkdir()
    tool.init(proj)
    r.run(["cp", "-r", str(src), str(proj / "raw")], proj)
    (proj / "config").mkdir()
    (proj / "config" / "load.json").write_text('{ "num_images" : 1000 }\n')
    (proj / "config" / "train.json").write_text('{ "num_conv_filters" : 32 }\n')
    r.run(tool.cmd("add", "-q", "raw"), proj)
    for name, deps, (flag, out), command in STAGES:
        dep_args = [arg for dep in deps for arg in ("-d", dep)]
        if tool is bench.repro:
            r.run(tool.cmd("run", "-q", "-f", f"{name}.repro", "--image", BENCH_IMAGE,
                           *dep_args, flag, out, command), proj)  # fmt: skip
        else:
            r.run(tool.cmd("stage", "add", "-q", "-n", name, *dep_args, flag, out,
                           command), proj)  # fmt: skip
    if tool is not bench.repro:
        r.run(tool.cmd("repro", "-q"), proj)
    r.run(["git", "add", "-A"], proj)
    r.run(["git", "commit", "-q", "-m", "pipeline"], proj)
    return proj
