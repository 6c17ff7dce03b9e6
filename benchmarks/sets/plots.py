"""The plots set: ``plots diff`` of 10 plot files across 5 tags, each tool writing its HTML
page (repro's with the Vega scripts inlined, DVC's loading them from a CDN).

- ``plots_show``: 10 CSV files of 200 points each, committed at 5 tags, overlaid in one page
  (``plots diff v1 … v5 --targets p0.csv … p9.csv -o DIR``): every revision's files read
  from git, parsed, and written as one page.

repro is measured as installed without its ``[plots]`` extra, so both tools write the page
alone; the PNG and SVG that the extra adds cost about 0.6 s per 1,000-point plot (vl-convert
runs the same spec in its own JavaScript engine, ~1.7 s to start). No floor: no single
command does this.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from measure import Case, Sides, alternate

if TYPE_CHECKING:
    from harness import Bench

PLOTS = 10
TAGS = 5
POINTS = 200


def run(bench: Bench) -> None:
    if not bench.wanted("plots_show"):
        return
    r = bench.runner
    case = Case("plots", "plots_show", "-")
    sides: Sides = {}
    targets = [f"p{k}.csv" for k in range(PLOTS)]
    tags = [f"v{t + 1}" for t in range(TAGS)]
    for tool in bench.tools:
        proj = bench.fresh("plots", tool.name)
        tool.init(proj)
        numbers = random.Random(0)  # both tools get the same files
        for tag in tags:
            for target in targets:
                rows = [f"{i},{numbers.random():.4f},{numbers.random():.4f}" for i in range(POINTS)]
                (proj / target).write_text("\n".join(["step,acc,loss", *rows]) + "\n")
            r.run(["git", "add", "-A"], proj)
            r.run(["git", "commit", "-q", "-m", tag], proj)
            r.run(["git", "tag", tag], proj)
        argv = tool.cmd("plots", "diff", *tags, "--targets", *targets, "-o", "page")

        def clear(_i: int, proj: Path = proj) -> None:
            bench.trash.discard(proj / "page")

        sides[tool.name] = (clear, lambda argv=argv, proj=proj: r.measure(argv, proj))  # type: ignore[misc]
    for _setup, step in sides.values():
        step()  # warm-up
    alternate(case, bench.args.repeat, sides)
    case.note = f"{PLOTS} plots × {TAGS} tags, {POINTS} points each; one HTML page"
    bench.record(case)
