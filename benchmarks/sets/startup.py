"""Start-up: `--version` of each tool against the bare interpreter, which every Python
command pays before it does anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from measure import Case, Sides, alternate, noop

if TYPE_CHECKING:
    from harness import Bench


def run(bench: Bench) -> None:
    if not bench.wanted("version"):
        return
    r = bench.runner
    case = Case("-", "version", "python3 -c pass")
    here = bench.work
    sides: Sides = {
        "repro": (noop, lambda: r.measure(bench.repro.cmd("--version"), here)),
        "floor": (noop, lambda: r.measure([bench.python, "-c", "pass"], here)),
    }
    if bench.dvc:
        dvc = bench.dvc
        sides["dvc"] = (noop, lambda: r.measure(dvc.cmd("--version"), here))
    for _name, (_setup, step) in sides.items():
        step()  # warm the page cache of the interpreters and packages
    alternate(case, bench.args.repeat, sides)
    bench.record(case)
