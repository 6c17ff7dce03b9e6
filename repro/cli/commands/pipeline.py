"""Verbs that show the DAG: pipeline show and pipeline list."""

from __future__ import annotations

import argparse
import json

from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.pipeline.graph import Graph, build
from repro.pipeline.targets import resolve_targets


def _selected(args: argparse.Namespace, ui: UI) -> tuple[Graph, list[str]]:
    project = open_project(ui)
    stages = project.stages()
    graph = build(stages)
    if getattr(args, "target", None):
        targets = [s.address for s in resolve_targets(project, stages, [args.target])]
        return graph, graph.order(graph.ancestors(targets))
    return graph, graph.order(graph.stages)


def _edges(graph: Graph, names: list[str], outs: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Nodes and edges to draw: stages, or with ``outs`` the outputs they make."""
    chosen = set(names)
    if not outs:
        edges = [(up, name) for name in names for up in sorted(graph.parents[name] & chosen)]
        return names, edges
    nodes: list[str] = []
    edges = []
    for name in names:
        stage = graph.stages[name]
        nodes.extend(stage.out_paths())
        for up in sorted(graph.parents[name] & chosen):
            for up_out in graph.stages[up].out_paths():
                for out in stage.out_paths():
                    edges.append((up_out, out))
    return nodes, edges


def _label(graph: Graph, node: str, commands: bool) -> str:
    stage = graph.stages.get(node)
    if commands and stage is not None:
        return stage.cmd or f"(data) {node}"
    return node


def render_ascii(nodes: list[str], edges: list[tuple[str, str]], labels: dict[str, str]) -> str:
    """Boxes in layers, upstream on top, arrows pointing downstream."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for up, down in edges:
        parents[down].append(up)
    layer: dict[str, int] = {}
    for node in nodes:  # nodes come upstream first
        layer[node] = 1 + max((layer[p] for p in parents[node]), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in nodes:
        layers[layer[node]].append(node)
    # Odd widths give every box a middle column for the arrows.
    widths = {n: len(labels[n]) + 4 + (len(labels[n]) % 2 == 1) for n in nodes}
    gap = 3
    row_width = max(
        (sum(widths[n] for n in row) + gap * (len(row) - 1) for row in layers), default=0
    )
    centers: dict[str, int] = {}
    lines: list[str] = []
    skipped: list[tuple[str, str]] = []
    axis = row_width // 2  # every row is centred on one axis, so a chain lines up exactly
    for index, row in enumerate(layers):
        total = sum(widths[n] for n in row) + gap * (len(row) - 1)
        x = axis - total // 2
        top, mid = [" "] * row_width, [" "] * row_width
        for node in row:
            w = widths[node]
            centers[node] = x + w // 2
            top[x : x + w] = "+" + "-" * (w - 2) + "+"
            mid[x : x + w] = "| " + labels[node].center(w - 4) + " |"
            x += w + gap
        if index > 0:
            incoming = [(u, d) for u, d in edges if d in row and layer[u] == index - 1]
            skipped.extend((u, d) for u, d in edges if d in row and layer[u] < index - 1)
            lines.extend(_connector(incoming, centers, row_width))
        lines.extend(["".join(top).rstrip(), "".join(mid).rstrip(), "".join(top).rstrip()])
    for up, down in skipped:
        lines.append(f"(also {labels[up]} -> {labels[down]})")
    return "\n".join(lines)


def _connector(edges: list[tuple[str, str]], centers: dict[str, int], width: int) -> list[str]:
    if not edges:
        return []
    ups = sorted({centers[u] for u, _ in edges})
    downs = sorted({centers[d] for _, d in edges})
    stem = [" "] * width
    for x in ups:
        stem[x] = "|"
    rows = ["".join(stem).rstrip()]
    if ups != downs or len(ups) > 1:
        bar = [" "] * width
        lo, hi = min(ups + downs), max(ups + downs)
        for x in range(lo, hi + 1):
            bar[x] = "-"
        for x in set(ups) | set(downs):
            bar[x] = "+"
        rows.append("".join(bar).rstrip())
    arrow = [" "] * width
    for x in downs:
        arrow[x] = "v"
    rows.append("".join(arrow).rstrip())
    return rows


def render_dot(nodes: list[str], edges: list[tuple[str, str]], labels: dict[str, str]) -> str:
    lines = ["strict digraph {"]
    lines += [f'\t"{labels[n]}";' for n in nodes]
    lines += [f'\t"{labels[u]}" -> "{labels[d]}";' for u, d in edges]
    lines.append("}")
    return "\n".join(lines)


def render_mermaid(nodes: list[str], edges: list[tuple[str, str]], labels: dict[str, str]) -> str:
    ids = {n: f"node{i}" for i, n in enumerate(nodes)}
    lines = ["flowchart TD"]
    lines += [f'\t{ids[n]}["{labels[n]}"]' for n in nodes]
    lines += [f"\t{ids[u]} --> {ids[d]}" for u, d in edges]
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace, ui: UI) -> int:
    graph, names = _selected(args, ui)
    nodes, edges = _edges(graph, names, args.outs)
    labels = {n: _label(graph, n, args.commands) for n in nodes}
    if args.dot:
        ui.out(render_dot(nodes, edges, labels))
    elif args.mermaid:
        ui.out(render_mermaid(nodes, edges, labels))
    elif nodes:
        ui.out(render_ascii(nodes, edges, labels))
    else:
        ui.info("No stages yet: 'repro run' or 'repro add' makes one.")
    return 0


def cmd_list(args: argparse.Namespace, ui: UI) -> int:
    graph, names = _selected(args, ui)
    if args.json:
        payload = [
            {
                "stage": name,
                "cmd": graph.stages[name].cmd,
                "deps": [d.path for d in graph.stages[name].deps],
                "outs": graph.stages[name].out_paths(),
                "upstream": sorted(graph.parents[name]),
            }
            for name in names
        ]
        ui.out(json.dumps(payload, indent=2))
        return 0
    for name in names:
        ui.out(name)
    return 0
