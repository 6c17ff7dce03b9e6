"""A stage running `true`: repro's cost of one stage in a container, against a bare
`docker run` of the same image (DVC runs it on the host: its column is for scale); and the
canonical environment's share of it, as an A/B of the same engine calls with and without it
(canonical_probe.py)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from machine import BENCH_IMAGE, build_image, docker_ok
from measure import Case, Run, Sides, alternate, noop

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness import Bench


def run(bench: Bench) -> None:
    if not bench.wanted("container"):
        return
    r = bench.runner
    if not docker_ok():
        bench.log("  no Docker engine answers: the container case is skipped")
        return
    build_image()
    case = Case("-", "container", "docker run --rm --network none IMAGE true")
    rp = bench.fresh("container", "repro")
    bench.repro.init(rp)
    r.run(bench.repro.cmd("run", "-q", "-f", "t.repro", "--image", BENCH_IMAGE, "true"), rp)
    sides: Sides = {
        "repro": (
            noop,
            lambda: r.measure(
                bench.repro.cmd("repro", "-q", "-f", "--no-run-cache", "t.repro"), rp
            ),
        ),
        "floor": (
            noop,
            lambda: r.measure(
                ["docker", "run", "--rm", "--network", "none", BENCH_IMAGE, "true"], rp
            ),
        ),
    }
    if bench.dvc:
        dvc = bench.dvc
        dp = bench.fresh("container", "dvc")
        dvc.init(dp)
        r.run(dvc.cmd("stage", "add", "-q", "-n", "t", "true"), dp)
        r.run(dvc.cmd("repro", "-q"), dp)
        sides["dvc"] = (noop, lambda: r.measure(dvc.cmd("repro", "-q", "-f", "t"), dp))
    alternate(case, bench.args.repeat, sides)
    direct = [r.measure(["true"], rp).seconds for _ in range(bench.args.repeat)]
    case.extra["true_directly_s"] = statistics.median(direct)
    case.note = (
        "DVC runs `true` without a container; its column is for scale, not a like-for-like "
        "comparison"
    )
    bench.record(case)
    _canonical(bench, rp)


PROBE = Path(__file__).resolve().parent.parent / "canonical_probe.py"


def _canonical(bench: Bench, project: Path) -> None:
    """The canonical environment against the options stages ran with before it: one
    container each, through the same client, in the same project."""
    r = bench.runner
    case = Case("-", "canonical", "the same container without the canonical environment")

    def probe(mode: str) -> Callable[[], Run]:
        argv = [bench.repro.python, str(PROBE), mode, str(project), BENCH_IMAGE]
        return lambda: r.measure(argv, project)

    # The first run of an image writes its passwd and group once; every stage after reads them.
    r.run([bench.repro.python, str(PROBE), "canonical", str(project), BENCH_IMAGE], project)
    sides: Sides = {"repro": (noop, probe("canonical")), "floor": (noop, probe("plain"))}
    alternate(case, bench.args.repeat, sides)
    case.note = "both sides are one Python process making the same engine calls"
    bench.record(case)
