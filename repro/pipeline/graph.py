"""The pipeline DAG: a stage depends on every stage whose output its deps touch."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter
from typing import NamedTuple

from repro.errors import ReproError
from repro.paths import overlaps
from repro.stages.stage import Stage


class Graph(NamedTuple):
    stages: dict[str, Stage]  # by address (Stage.address)
    parents: dict[str, frozenset[str]]  # address -> the stages it depends on

    def children(self, name: str) -> set[str]:
        return {child for child, ups in self.parents.items() if name in ups}

    def ancestors(self, targets: Iterable[str]) -> set[str]:
        """The targets and everything upstream of them."""
        seen: set[str] = set()
        todo = list(targets)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.parents[name])
        return seen

    def descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for child in self.children(todo.pop()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def order(self, names: Iterable[str]) -> list[str]:
        """``names`` upstream first; ties broken by name, so output is stable."""
        sorter = self.sorter(names)
        result: list[str] = []
        sorter.prepare()
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            result.extend(ready)
            sorter.done(*ready)
        return result

    def sorter(self, names: Iterable[str]) -> TopologicalSorter[str]:
        """A topological sorter over ``names`` and the edges between them."""
        wanted = set(names)
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for name in sorted(wanted):
            sorter.add(name, *sorted(self.parents[name] & wanted))
        return sorter


class _Outputs:
    """Every output path with its stage, found by overlap in a few dictionary and bisect steps
    (a foreach or matrix makes thousands of stages: comparing every pair would take minutes)."""

    def __init__(self) -> None:
        self.producer: dict[str, str] = {}  # out path -> stage address
        self.paths: list[str] = []  # sorted

    def add(self, path: str, address: str) -> None:
        self.producer[path] = address
        bisect.insort(self.paths, path)

    def overlapping(self, path: str) -> list[str]:
        """The output paths that ``path`` is, lies in, or holds (paths.overlaps)."""
        parts = path.split("/")
        above = ("/".join(parts[:n]) for n in range(1, len(parts) + 1))
        found = [p for p in above if p in self.producer]
        below = path + "/"
        at = bisect.bisect_left(self.paths, below)
        while at < len(self.paths) and self.paths[at].startswith(below):
            found.append(self.paths[at])
            at += 1
        return found


def build(stages: Iterable[Stage]) -> Graph:
    """Build the graph; refuse two stages producing overlapping outputs, and cycles."""
    by_name = {stage.address: stage for stage in stages}
    outputs = _Outputs()
    for stage in by_name.values():
        for out in stage.outs:
            for other_path in outputs.overlapping(out.path):
                raise ReproError(
                    f"output '{out.path}' of '{stage.address}' overlaps output '{other_path}' "
                    f"of '{outputs.producer[other_path]}'; an output belongs to one stage: "
                    "remove one of them"
                )
            outputs.add(out.path, stage.address)
    parents: dict[str, frozenset[str]] = {}
    for stage in by_name.values():
        ups = {
            outputs.producer[out_path]
            for dep in stage.deps
            for out_path in outputs.overlapping(dep.path)
        } - {stage.address}
        own = [d.path for d in stage.deps if any(overlaps(d.path, o) for o in stage.out_paths())]
        if own:
            raise ReproError(
                f"'{stage.address}' depends on its own output '{own[0]}'; a stage cannot read "
                "what it writes"
            )
        parents[stage.address] = frozenset(ups)
    graph = Graph(by_name, parents)
    try:
        graph.order(by_name)
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise ReproError(
            f"the pipeline has a cycle ({cycle}); break it by removing a dep"
        ) from None
    return graph
