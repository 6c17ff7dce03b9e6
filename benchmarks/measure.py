"""Timing: every measured command is a fresh child process, and the sides of a case alternate.

A case (one operation on one dataset) has sides: repro, DVC and the floor. Each runs as a new
process per sample, in rounds whose order rotates, so all sides see the same conditions;
the table reports medians.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


@dataclass
class Run:
    seconds: float
    peak_kb: int


class Failed(RuntimeError):
    pass


class Runner:
    """Runs commands as fresh children; times them and reads their peak RSS from wait4."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(log_dir / "commands.log", "ab")  # noqa: SIM115

    def measure(
        self,
        argv: Sequence[str] | str,
        cwd: Path,
        ok: Sequence[int] = (0,),
        env: dict[str, str] | None = None,
    ) -> Run:
        shown = argv if isinstance(argv, str) else " ".join(argv)
        self.log.write(f"\n$ cd {cwd} && {shown}\n".encode())
        self.log.flush()
        command = ["/bin/sh", "-c", argv] if isinstance(argv, str) else list(argv)
        peak_file = None
        if TIME:
            # A direct child of this (large) process would inherit its RSS high-water mark
            # through fork/exec; /usr/bin/time is tiny and reports its child's own peak.
            fd, peak_file = tempfile.mkstemp(prefix="peak-", dir=self.log_dir)
            os.close(fd)
            command = [TIME, "-f", "%M", "-o", peak_file, *command]
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = usage.ru_maxrss
        if peak_file:
            lines = Path(peak_file).read_text().split()
            os.unlink(peak_file)
            if lines and lines[-1].isdigit():
                peak_kb = int(lines[-1])
        self.log.write(f"# exit {proc.returncode} in {seconds:.3f}s, {peak_kb} KB\n".encode())
        self.log.flush()
        if proc.returncode not in ok:
            raise Failed(
                f"{shown} (in {cwd}) exited {proc.returncode}; see {self.log_dir / 'commands.log'}"
            )
        return Run(seconds, peak_kb)

    def run(self, argv: Sequence[str] | str, cwd: Path, ok: Sequence[int] = (0,)) -> None:
        """Setup and teardown steps: same as measure, result unused."""
        self.measure(argv, cwd, ok)


@dataclass
class Case:
    """One operation on one dataset: samples of each side."""

    set_name: str
    op: str
    floor_desc: str
    samples: dict[str, list[Run]] = field(default_factory=dict)
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def add(self, side: str, run: Run) -> None:
        self.samples.setdefault(side, []).append(run)

    def median(self, side: str) -> float | None:
        runs = self.samples.get(side)
        return statistics.median(r.seconds for r in runs) if runs else None

    def peak_mb(self, side: str) -> float | None:
        runs = self.samples.get(side)
        return max(r.peak_kb for r in runs) / 1024 if runs else None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "set": self.set_name,
            "op": self.op,
            "floor_cmd": self.floor_desc,
            "note": self.note,
            "extra": self.extra,
        }
        for side, runs in self.samples.items():
            out[side] = {
                "median_s": self.median(side),
                "runs_s": [round(r.seconds, 4) for r in runs],
                "peak_mb": self.peak_mb(side),
            }
        return out


Step = Callable[[], Run]
Setup = Callable[[int], None]
Sides = dict[str, tuple[Setup, Step]]


def alternate(case: Case, repeat: int, sides: Sides) -> None:
    """``repeat`` rounds; in each, every side runs once (setup untimed, then the timed step),
    in an order that rotates by one each round so no side always goes first."""
    names = list(sides)
    for i in range(repeat):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            setup, step = sides[name]
            setup(i)
            # Write back what the setup (or the previous side) left dirty, so nobody's timing
            # pays for someone else's writes.
            os.sync()
            case.add(name, step())


def noop(_i: int) -> None:
    """The setup of a side that needs none."""


def check_tree(root: Path, files: int, links: str | None) -> None:
    """At least ``files`` regular files below ``root``; hardlinked or private copies if asked."""
    found = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            if links == "linked" and st.st_nlink < 2:
                raise Failed(f"{folder}/{name} is not hardlinked to a cache")
            if links == "copied" and st.st_nlink != 1:
                raise Failed(f"{folder}/{name} is a hardlink, not a copy")
            found += 1
    if found < files:
        raise Failed(f"{root} holds {found} files, expected {files}")


def quote(path: Path | str) -> str:
    """``path`` as one word of a shell command (the floors are shell command lines)."""
    return shlex.quote(str(path))
