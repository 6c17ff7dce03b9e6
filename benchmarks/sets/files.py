"""The many, big and mnist sets: each data verb of both tools on one dataset, against a floor
of single commands doing the same physical work (md5sum, cp -al, cp -r, a stat walk, git
cat-file). `add` always runs: every other operation works on the project it made."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import SEED, Dataset, generate, touched_file
from measure import Case, Run, Setup, Sides, Step, alternate, check_tree, noop, quote
from tools import Tool
from trash import DEFER_FROM_FILES

if TYPE_CHECKING:
    from harness import Bench

TAGS_FULL, TAGS_QUICK = 100, 20
# diff between two tags: one file in this many is modified, as many deleted, renamed, added
DIFF_SHARE = 200


def run(bench: Bench, ds: Dataset) -> None:
    bench.log(f"dataset {ds.name}: {ds.describe()}")
    ops = Operations(bench, ds)
    ops.add()
    if bench.wanted("status"):
        ops.status()
    if bench.wanted("status_touched"):
        ops.status_touched()
    for kind, floor_cmd in (("hardlink", ops.cp_al), ("copy", ops.cp_r)):
        if bench.wanted(f"checkout_{kind}"):
            ops.checkout(kind, floor_cmd)
    if bench.wanted("push") or bench.wanted("pull"):
        ops.push()
    if bench.wanted("pull"):
        ops.pull()
    for path in ops.remotes.values():
        ops.gone(path)
    if bench.wanted("metrics"):
        ops.metrics()
    if bench.wanted("diff") and ds.files >= DIFF_SHARE:  # last: it changes the data checked above
        ops.diff()
    for proj in ops.projects.values():
        ops.gone(proj)
    ops.gone(ops.base)


class Operations:
    """One dataset's projects (one per tool), remotes and floor folder, and its cases."""

    def __init__(self, bench: Bench, ds: Dataset) -> None:
        self.bench = bench
        self.ds = ds
        self.r = bench.runner
        self.repeat: int = bench.args.repeat
        self.src = generate(ds, bench.scratch)
        bench.trash.defer = ds.files >= DEFER_FROM_FILES
        self.gone = bench.trash.discard
        self.base = bench.fresh(ds.name)
        self.floor_dir = self.base / "floor"
        self.floor_dir.mkdir()
        self.ref = self.floor_dir / "ref"  # the floor's own copy of the data, same page-cache state
        self.r.run(["cp", "-r", str(self.src), str(self.ref)], self.base)
        self.md5sum = f"find {quote(self.ref)} -type f -print0 | xargs -0 md5sum > /dev/null"
        self.statwalk = f"find {quote(self.ref)} -printf '%i %T@ %s %p\\n' > /dev/null"
        self.out = self.floor_dir / "out"
        self.out2 = self.floor_dir / "out2"
        self.cp_al = f"cp -al {quote(self.ref)} {quote(self.out)}"
        self.cp_r = f"cp -r {quote(self.ref)} {quote(self.out)}"
        self.projects: dict[str, Path] = {}
        self.remotes: dict[str, Path] = {}

    def floor(self, *commands: str, clear: bool = True) -> Step:
        """The floor's step: ``commands`` one after the other, timed as one."""

        def step() -> Run:
            if clear:
                self.gone(self.out)
                self.gone(self.out2)
            runs = [self.r.measure(c, self.floor_dir) for c in commands]
            return Run(sum(x.seconds for x in runs), max(x.peak_kb for x in runs))

        return step

    def verb(self, tool: Tool, *args: str, ok: Sequence[int] = (0,)) -> Step:
        return lambda: self.r.measure(tool.cmd(*args), self.projects[tool.name], ok)

    def checked(self, step: Step, where: Callable[[], Path], links: str | None = None) -> Step:
        """The step, then (untimed) proof that it did the whole job."""

        def run_and_check() -> Run:
            result = step()
            check_tree(where(), self.ds.files, links)
            return result

        return run_and_check

    def add(self) -> None:
        """Cold add: a fresh project per round, the data freshly copied in (untimed); the last
        round's projects are committed for the operations that follow."""
        case = Case(self.ds.name, "add", "md5sum + cp -al")
        sides = {t.name: self._add_side(t) for t in self.bench.tools}
        sides["floor"] = (noop, self.floor(self.md5sum, self.cp_al))
        alternate(case, self.repeat, sides)
        case.extra["md5sum_s"] = statistics.median(
            self.r.measure(self.md5sum, self.floor_dir).seconds for _ in range(self.repeat)
        )
        self.bench.record(case)
        for tool in self.bench.tools:
            proj = self.projects[tool.name]
            self.r.run(["git", "add", "-A"], proj)
            self.r.run(["git", "commit", "-q", "-m", "data"], proj)

    def _add_side(self, tool: Tool) -> tuple[Setup, Step]:
        def setup(i: int) -> None:
            if i:
                self.gone(self.base / f"{tool.name}-{i - 1}")
            proj = self.bench.fresh(self.ds.name, f"{tool.name}-{i}")
            tool.init(proj)
            self.r.run(["cp", "-r", str(self.src), str(proj / "data")], proj)
            self.projects[tool.name] = proj

        return setup, lambda: self.r.measure(
            tool.cmd("add", "-q", "data"), self.projects[tool.name]
        )

    def status(self) -> None:
        """status, nothing changed (after one warm-up each)."""
        case = Case(self.ds.name, "status", "stat walk (find -printf)")
        sides: Sides = {t.name: (noop, self.verb(t, "status", "-q")) for t in self.bench.tools}
        sides["floor"] = (noop, self.floor(self.statwalk, clear=False))
        for _setup, step in sides.values():
            step()
        alternate(case, self.repeat, sides)
        self.bench.record(case)

    def status_touched(self) -> None:
        """status, one file touched (mtime bumped, content the same: one file to re-hash)."""
        rel = touched_file(self.src).relative_to(self.src)

        def toucher(path_of: Callable[[], Path]) -> Setup:
            def setup(_i: int) -> None:
                now = time.time_ns()
                os.utime(path_of(), ns=(now, now))

            return setup

        case = Case(self.ds.name, "status_touched", "stat walk + md5sum of that file")
        sides: Sides = {
            t.name: (
                toucher(lambda t=t: self.projects[t.name] / "data" / rel),  # type: ignore[misc]
                self.verb(t, "status", "-q"),
            )
            for t in self.bench.tools
        }
        sides["floor"] = (
            toucher(lambda: self.ref / rel),
            self.floor(self.statwalk, f"md5sum {quote(self.ref / rel)} > /dev/null", clear=False),
        )
        alternate(case, self.repeat, sides)
        self.bench.record(case)

    def checkout(self, kind: str, floor_cmd: str) -> None:
        """checkout after rm -rf of the data, with ``kind`` links ("hardlink" or "copy")."""
        tools = self.bench.tools

        def remover(tool: Tool) -> Setup:
            return lambda _i: self.gone(self.projects[tool.name] / "data")

        if kind == "copy":
            for t in tools:
                t.set_link(self.projects[t.name], "copy")
        case = Case(self.ds.name, f"checkout_{kind}", " ".join(floor_cmd.split(" ")[:2]))
        sides: Sides = {
            t.name: (
                remover(t),
                self.checked(
                    self.verb(t, "checkout", "-q"),
                    lambda t=t: self.projects[t.name] / "data",  # type: ignore[misc]
                    "linked" if kind == "hardlink" else "copied",
                ),
            )
            for t in tools
        }
        sides["floor"] = (noop, self.floor(floor_cmd))
        alternate(case, self.repeat, sides)
        self.bench.record(case)
        if kind == "copy":
            for t in tools:
                t.set_link(self.projects[t.name], None)
                self.gone(self.projects[t.name] / "data")
                self.r.run(t.cmd("checkout", "-q"), self.projects[t.name])

    def push(self) -> None:
        """push to a fresh folder remote (a new folder every round); pull needs it even when
        push itself is not measured (then one round, not recorded)."""

        def to_fresh_remote(tool: Tool) -> Setup:
            def setup(i: int) -> None:
                old = self.remotes.get(tool.name)
                if old is not None:
                    self.gone(old)
                self.remotes[tool.name] = self.bench.fresh(self.ds.name, f"remote-{tool.name}-{i}")
                tool.set_remote(self.projects[tool.name], self.remotes[tool.name])

            return setup

        case = Case(self.ds.name, "push", "cp -r")
        sides: Sides = {
            t.name: (
                to_fresh_remote(t),
                self.checked(self.verb(t, "push", "-q"), lambda t=t: self.remotes[t.name]),  # type: ignore[misc]
            )
            for t in self.bench.tools
        }
        sides["floor"] = (noop, self.floor(self.cp_r))
        measured = self.bench.wanted("push")
        alternate(case, self.repeat if measured else 1, sides)
        if measured:
            self.bench.record(case)

    def pull(self) -> None:
        """pull into a fresh clone (a new one every round) from the last remote pushed."""
        clones: dict[str, Path] = {}

        def cloner(tool: Tool) -> Setup:
            def setup(i: int) -> None:
                old = clones.get(tool.name)
                if old is not None:
                    self.gone(old)
                clone = self.base / f"clone-{tool.name}-{i}"
                self.r.run(
                    ["git", "clone", "-q", str(self.projects[tool.name]), str(clone)], self.base
                )
                tool.set_remote(clone, self.remotes[tool.name])
                clones[tool.name] = clone

            return setup

        def pull(tool: Tool) -> Step:
            return self.checked(
                lambda: self.r.measure(tool.cmd("pull", "-q"), clones[tool.name]),
                lambda: clones[tool.name] / "data",
                "linked",
            )

        case = Case(self.ds.name, "pull", "cp -r + md5sum + cp -al")
        sides: Sides = {t.name: (cloner(t), pull(t)) for t in self.bench.tools}
        sides["floor"] = (
            noop,
            self.floor(
                self.cp_r,
                f"find {quote(self.out)} -type f -print0 | xargs -0 md5sum > /dev/null",
                f"cp -al {quote(self.out)} {quote(self.out2)}",
            ),
        )
        alternate(case, self.repeat, sides)
        for clone in clones.values():
            self.gone(clone)
        self.bench.record(case)

    def metrics(self) -> None:
        """metrics show -T over many tags (the workspace keeps the data)."""
        tags = TAGS_QUICK if self.bench.args.quick else TAGS_FULL
        for tool in self.bench.tools:
            self._tag_metrics(tool, tags)
        git_floor = (
            "git for-each-ref --format='%(refname:short):metrics.json' refs/tags "
            "| git cat-file --batch > /dev/null"
        )
        case = Case(self.ds.name, "metrics_tags", f"git cat-file --batch ({tags} blobs)")
        sides: Sides = {
            t.name: (noop, self.verb(t, "metrics", "show", "-T")) for t in self.bench.tools
        }
        repro_project = self.projects[self.bench.repro.name]
        sides["floor"] = (noop, lambda: self.r.measure(git_floor, repro_project))
        for _setup, step in sides.values():
            step()
        alternate(case, self.repeat, sides)
        case.note = f"{tags} tags"
        self.bench.record(case)

    def _tag_metrics(self, tool: Tool, tags: int) -> None:
        """``tags`` commits of the tool's project, each changing metrics.json, each tagged."""
        proj = self.projects[tool.name]
        tool.declare_metric(proj)
        rng = random.Random(f"{SEED}:metrics")
        for n in range(tags):
            acc, loss = rng.random(), rng.random()
            (proj / "metrics.json").write_text(json.dumps({"acc": acc, "loss": loss}) + "\n")
            self.r.run(["git", "add", "-A"], proj)
            self.r.run(["git", "commit", "-q", "-m", f"metrics {n}"], proj)
            self.r.run(["git", "tag", "-a", f"v{n:03d}", "-m", f"v{n}"], proj)

    def diff(self) -> None:
        """diff between two tags: the data as added, then with files modified, deleted,
        renamed and added (the same changes in each tool's project), added again."""
        rng = random.Random(f"{SEED}:diff")
        files = sorted(p.relative_to(self.src).as_posix() for p in self.src.rglob("*.bin"))
        changes = len(files) // DIFF_SHARE
        picked = rng.sample(files, 3 * changes)
        modified, deleted, renamed = (picked[n * changes : (n + 1) * changes] for n in range(3))
        new_bytes = {rel: rng.randbytes(self.ds.size) for rel in modified}
        new_bytes.update({f"new/{n:04d}.bin": rng.randbytes(self.ds.size) for n in range(changes)})
        manifests = []
        for tool in self.bench.tools:
            proj = self.projects[tool.name]
            self.r.run(["git", "tag", "diff-a"], proj)
            data = proj / "data"
            for rel in deleted:
                (data / rel).unlink()
            for rel in renamed:
                (data / rel).rename(data / f"{rel}.moved")
            (data / "new").mkdir()
            for rel, content in new_bytes.items():
                path = data / rel
                path.unlink(missing_ok=True)  # hardlinked to the cache: never written in place
                path.write_bytes(content)
            self.r.run(tool.cmd("add", "-q", "data"), proj)
            self.r.run(["git", "add", "-A"], proj)
            self.r.run(["git", "commit", "-q", "-m", "data changed"], proj)
            self.r.run(["git", "tag", "diff-b"], proj)
            if tool is self.bench.repro:
                manifests = [self._manifest(proj, tag) for tag in ("diff-a", "diff-b")]
        sorted_lists = [self.floor_dir / f"manifest-{n}" for n in range(2)]
        floor_cmd = " && ".join(
            [
                *(
                    f"tr '{{' '\\n' < {quote(m)} | sort > {quote(out)}"
                    for m, out in zip(manifests, sorted_lists, strict=True)
                ),
                f"comm -3 {' '.join(map(quote, sorted_lists))} > /dev/null",
            ]
        )
        steps = {
            t.name: self.verb(t, "diff", "--json", "diff-a", "diff-b") for t in self.bench.tools
        }
        steps["floor"] = self.floor(floor_cmd, clear=False)
        for step in steps.values():  # one warm-up each: the tags' objects were just written
            step()
        case = Case(self.ds.name, "diff", "tr + sort + comm of the two manifests")
        alternate(case, self.repeat, {name: (noop, step) for name, step in steps.items()})
        case.note = f"{changes} files each modified, deleted, renamed and added"
        self.bench.record(case)

    def _manifest(self, proj: Path, tag: str) -> Path:
        """The cache path of the data's manifest that repro's stage file records at ``tag``."""
        stage_file = subprocess.run(
            ["git", "show", f"{tag}:data.repro"],
            cwd=proj,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        oid = stage_file.split("md5: ", 1)[1].split()[0]
        return proj / ".repro" / "cache" / "files" / "md5" / oid[:2] / oid[2:]
