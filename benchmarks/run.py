#!/usr/bin/env python3
"""Benchmarks of repro against DVC and against the physical floor of the same work.

    python3 benchmarks/run.py [--quick] [--sets many,big,mnist,pipeline] [--repeat N] [--no-dvc]
                              [--ops add,status,...] [--scratch DIR] [--out FILE] [--json FILE]

Datasets are generated with a fixed seed under the scratch folder (default /tmp/repro-bench):
  many   20,000 files of 4 KiB in 100 folders      (quick: 2,000 files in 20 folders)
  big    one 1 GiB file                            (quick: 64 MiB)
  mnist  5,000 files of ~1 KiB in 10 folders       (quick: 500 files)
  pipeline  the walkthrough's shape: data of 1,000 files of ~1 KiB (quick: 200) tracked with
         `add`, then load -> train -> evaluate, each stage in the tests' busybox image
         (scripts/busybox-image.py; DVC: the same three stages in a dvc.yaml, run on the
         host); only `status` is timed
  s3     (only when named) push and pull of many and big through a moto S3 server on
         loopback, for repro, DVC, s5cmd, rclone and `aws s3 sync` (quick: 300 files, 48 MiB)

Every operation runs as a fresh child process per measurement, alternating repro, DVC and the
floor (the order rotates each round, so all three see the same conditions); medians are
reported. Peak memory is the maximum resident set of the command's process tree, as
/usr/bin/time reports it (a direct child of this process would inherit its high-water mark).
The page cache is not dropped (that needs root and a quiet machine): every tool reads warm data.
Trees removed between rounds are moved aside and deleted when the run ends (trash.py): on
ext4 without a journal, deleting thousands of files slows every file created in the next
minutes, whoever creates it.

This file is the command line. harness.py runs the sets asked for, measure.py times each
command, report.py writes RESULTS.md and targets.py checks the targets; each benchmark set is
a module of sets/ (see sets/__init__.py for adding one).

DVC is installed into its own virtualenv (--dvc-venv, default /tmp/repro-bench-dvc-venv) with
`pip install 'dvc==3.*'` the first time. repro is measured the same way: one commit (--code,
default HEAD) is extracted to the scratch dir and pip-installed, as a user would install it,
into a virtualenv of its own; both tools then start from a clean interpreter, without whatever
.pth files the running Python has. With --code worktree (the default of --quick) it is the
`repro` console script next to the running Python, importing the live work tree.

A full run takes about 20 minutes on 2 cores; --quick --no-dvc about 90 seconds. The sets
against servers on loopback run only when --sets names them: s3 (moto; about 35 minutes) and
ssh (a private sshd; about 20); --server-data big moves only the 1 GiB file through them.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dataset import FULL
from harness import SERVER_SETS, Bench, measure
from report import render
from trash import rmtree

HERE = Path(__file__).resolve().parent


SETS = "many,big,mnist,pipeline"  # a full run's


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        Path(args.out or HERE / "RESULTS.md").write_text(render(result))
        return 0
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.code is None:
        args.code = "worktree" if args.quick else "HEAD"
    full = not args.quick and args.ops is None and args.sets == SETS and not args.no_dvc
    if args.out is None and full:
        # Only a full run replaces the table; a partial one would overwrite it with a few rows.
        args.out = str(HERE / "RESULTS.md")
    for name in args.sets.split(","):
        if name not in FULL and name not in SERVER_SETS:
            known = ", ".join([*FULL, *SERVER_SETS])
            parser.error(f"unknown dataset {name!r}; choose from {known}")
    for name in args.server_data.split(","):
        if name not in ("many", "big"):
            parser.error(f"unknown --server-data {name!r}; choose from many, big")
    bench = Bench(args)
    try:
        result = measure(bench)
    finally:
        rmtree(bench.work)
        rmtree(bench.trash.folder)
        if not args.keep_data:
            rmtree(bench.scratch / "datasets")
            for snapshot in bench.scratch.glob("code-*"):
                rmtree(snapshot)
        rmtree(bench.scratch / "dvc-site")  # DVC's per-project indexes: 1 GB after a full run
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.out:
        Path(args.out).write_text(render(result))
        print(f"wrote {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small datasets, fewer tags")
    parser.add_argument("--sets", default=SETS, help="comma list of datasets")
    parser.add_argument("--repeat", type=int, default=None, help="rounds per operation")
    parser.add_argument("--no-dvc", action="store_true", help="repro and the floor only")
    parser.add_argument(
        "--ops",
        help="only these operations (comma list: version, container, "
        "add, status, status_touched, checkout_hardlink, checkout_copy, push, "
        "pull, metrics, sweep, exp_show, status_yaml, plots_show, diff, import, cluster_stage, "
        "cluster_fan_out, ssh_push, ssh_pull); add always "
        "runs, the others build on it",
    )
    parser.add_argument(
        "--scratch", default=os.environ.get("REPRO_BENCH_SCRATCH", "/tmp/repro-bench")
    )
    parser.add_argument("--dvc-venv", default="/tmp/repro-bench-dvc-venv")
    parser.add_argument(
        "--out",
        help="write the Markdown table here (default: "
        "benchmarks/RESULTS.md for a full run, nothing for a partial one)",
    )
    parser.add_argument("--json", help="write the machine-readable results here")
    parser.add_argument(
        "--code",
        help="repro to measure: a git revision of this repository, extracted to the scratch "
        "dir (default HEAD; --quick: the live work tree), or 'worktree'",
    )
    parser.add_argument("--render", metavar="JSON", help="only write --out from a --json file")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated datasets")
    parser.add_argument(
        "--server-data",
        default="many,big",
        help="the datasets the s3 and ssh sets move (comma list of many, big; default both)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
