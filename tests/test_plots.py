"""Plots (issue 19): plot outputs declared by run, repro.yaml and plots modify; drawn by
plots show / diff / metrics as an offline HTML page (opened in a real headless Chromium with
the network off) and as PNG and SVG (vl-convert), read from git and the cache at revisions."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from xml.etree import ElementTree

import pytest
from helpers import Project, build_busybox_image, cli

import docker
from repro.metrics.plot_templates import TEMPLATES
from repro.stages import pipeline_file

IMAGE = "repro-test-busybox:plots"  # our own tag: other tests rebuild the shared one


def _loss(scale: float) -> str:
    return "epoch,loss,acc\n" + "".join(
        f"{i},{scale / (i + 1):.3f},{i / 10:.2f}\n" for i in range(8)
    )


LOSS = _loss(1)
# Records whose fields each template draws: x and y for all, classes for the confusion matrix.
DATA = {
    "confusion": (
        "classes.csv",
        "actual,predicted\n" + "".join(f"{a},{p}\n" for a in "abc" for p in "abca"),
        ["-x", "actual", "-y", "predicted"],
    ),
    "bar": (
        "sizes.json",
        json.dumps([{"name": n, "size": s} for n, s in (("a", 3), ("b", 5))]),
        [],
    ),
}


def _pixels(png: bytes) -> tuple[int, list[bytes]]:
    """The bytes per pixel and the unfiltered rows of an 8-bit RGB or RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6)
    size = 4 if color == 6 else 3
    raw, stride, rows = zlib.decompress(idat), width * size, []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride) if kind else ():
            left = line[i - size] if i >= size else 0
            up, corner = previous[i], previous[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            else:
                guess = left + up - corner
                near = min((abs(guess - v), n) for n, v in enumerate((left, up, corner)))[1]
                line[i] = (line[i] + (left, up, corner)[near]) & 255
        rows.append(bytes(line))
        previous = line
    return size, rows


def _inked(png: bytes) -> int:
    """How many pixels are neither transparent nor white."""
    size, rows = _pixels(png)
    return sum(
        1
        for row in rows
        for i in range(0, len(row), size)
        if (size == 3 or row[i + 3] > 0) and row[i : i + 3] != b"\xff\xff\xff"
    )


def _plotted(project: Project, path: str, text: str, *modify: str) -> None:
    """``path`` tracked by repro add, drawn as ``modify`` says."""
    project.write(path, text)
    project.ok("add", path)
    project.ok("plots", "modify", path, *modify)


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_draws_a_png_with_ink_and_an_svg_that_parses(
    project: Project, template: str
) -> None:
    path, text, axes = DATA.get(template, ("loss.csv", LOSS, ["-x", "epoch", "-y", "loss"]))
    _plotted(project, path, text, "--template", template, *axes, "--title", f"a {template}")
    done = project.ok("plots", "show", "-o", "out")
    assert "Wrote 1 plot to out/index.html" in done.out
    svg = ElementTree.parse(project.root / "out" / f"{path}.svg").getroot()
    assert svg.tag.endswith("svg")
    marks = [g for g in svg.iter() if "role-mark" in (g.get("class") or "")]
    assert marks, f"the {template} SVG has no marks"
    assert f"a {template}" in ElementTree.tostring(svg, encoding="unicode")
    assert _inked((project.root / "out" / f"{path}.png").read_bytes()) > 2000


def test_pictures_of_an_unchanged_plot_are_not_drawn_again(project: Project) -> None:
    _plotted(project, "loss.csv", LOSS, "-y", "loss")
    _plotted(project, "acc.csv", LOSS, "-y", "acc")
    project.ok("plots", "show")
    folder = project.root / "repro_plots"
    inodes = {p.name: p.stat().st_ino for p in folder.iterdir()}
    project.ok("plots", "modify", "acc.csv", "--title", "accuracy")
    project.ok("plots", "show")
    now = {p.name: p.stat().st_ino for p in folder.iterdir()}
    assert now["loss.csv.png"] == inodes["loss.csv.png"]
    assert now["loss.csv.svg"] == inodes["loss.csv.svg"]
    assert now["acc.csv.png"] != inodes["acc.csv.png"]
    assert "accuracy" in (folder / "acc.csv.svg").read_text()
    (folder / "loss.csv.png").unlink()  # a picture gone is drawn again
    project.ok("plots", "show")
    assert _inked((folder / "loss.csv.png").read_bytes()) > 2000


def test_plots_diff_of_two_tags_has_one_series_per_revision(project: Project) -> None:
    _plotted(project, "loss.csv", LOSS, "-x", "epoch", "-y", "loss")
    project.commit("first", tag="v1")
    project.ok("unprotect", "loss.csv")
    project.write("loss.csv", _loss(0.5))
    project.ok("commit", "-f", "loss.csv")
    project.commit("second", tag="v2")
    # The cached plot of each tag comes from the cache; the workspace's copy is v2's.
    specs = json.loads(project.ok("plots", "diff", "v1", "v2", "--json").out)
    records = specs["loss.csv"]["data"]["values"]
    assert {r["rev"] for r in records} == {"v1", "v2"}
    assert sorted(r["loss"] for r in records if r["rev"] == "v1")[-1] == 1.0
    assert sorted(r["loss"] for r in records if r["rev"] == "v2")[-1] == 0.5
    project.ok("plots", "diff", "v1", "v2")
    svg = (project.root / "repro_plots" / "loss.csv.svg").read_text()
    assert svg.count('class="mark-line role-mark') == 2
    # One revision: compared with the workspace, as DVC does.
    specs = json.loads(project.ok("plots", "diff", "v1", "--json").out)
    assert {r["rev"] for r in specs["loss.csv"]["data"]["values"]} == {"v1", "workspace"}


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed (scripts/ensure-tools.sh chromium installs it)")
    return found


def test_the_page_draws_every_plot_in_headless_chromium_with_the_network_off(
    project: Project, tmp_path: Path
) -> None:
    for template in TEMPLATES:
        path, text, axes = DATA.get(template, (f"{template}.csv", LOSS, ["-y", "loss"]))
        _plotted(project, path, text, "--template", template, *axes)
    project.ok("plots", "show")
    page = project.root / "repro_plots" / "index.html"
    offline = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shown = subprocess.run(
        [*offline, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f'data-drawn="{len(TEMPLATES)}"' in shown.stdout, shown.stdout[-3000:]
    drawn = shown.stdout.split('id="plot-')[1:]
    assert len(drawn) == len(TEMPLATES)
    assert all("<svg" in div and "role-mark" in div for div in drawn)
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    picture = tmp_path / "page.png"
    taken = subprocess.run(
        [*offline, f"--screenshot={picture}", "--window-size=1400,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert taken.returncode == 0 and picture.exists()
    assert _inked(picture.read_bytes()) > 20000


def test_a_plot_that_does_not_parse_is_one_line_and_writes_nothing(project: Project) -> None:
    _plotted(project, "loss.json", "[1, 2", "-y", "loss")
    done = project.repro("plots", "show")
    assert done.code == 1
    assert done.err.strip().count("\n") == 0
    assert "loss.json at workspace is not valid json" in done.err
    assert not (project.root / "repro_plots").exists()


def test_a_missing_field_is_one_line_and_leaves_the_last_page_alone(project: Project) -> None:
    _plotted(project, "loss.csv", LOSS, "-x", "epoch", "-y", "loss")
    project.ok("plots", "show")
    page = (project.root / "repro_plots" / "index.html").read_bytes()
    project.ok("plots", "modify", "loss.csv", "-y", "accuracy")
    done = project.repro("plots", "show")
    assert done.code == 1
    assert done.err.strip().count("\n") == 0
    assert "has no field 'accuracy' (its fields: epoch, loss, acc)" in done.err
    assert "repro plots modify loss.csv" in done.err
    assert (project.root / "repro_plots" / "index.html").read_bytes() == page


def test_other_bad_input_is_one_line_each(project: Project) -> None:
    project.write("notes.txt", "hello")
    cases = [
        (("plots", "show"), 1, "no plots found"),
        (("plots", "show", "notes.txt"), 1, "not CSV, TSV, JSON or YAML"),
        (("plots", "show", "absent.csv"), 1, "at none of the revisions"),
        (("plots", "diff", "nope", "--targets", "notes.txt"), 1, "neither a revision nor"),
        (("plots", "modify", "notes.txt", "-x", "a"), 1, "not an output of any stage"),
        (("plots", "modify", "notes.txt", "--template", "pie"), 2, "invalid choice"),
        (("plots", "metrics"), 1, "-T (tags)"),
    ]
    for args, code, message in cases:
        done = project.repro(*args)
        assert (done.code, done.err.strip().count("\n")) == (code, 0), (args, done.err)
        assert message in done.err, (args, done.err)
    assert not (project.root / "repro_plots").exists()


def test_plot_options_are_no_part_of_the_definition(project: Project) -> None:
    _plotted(project, "loss.csv", LOSS, "-y", "loss")
    stage_file = project.root / "loss.csv.repro"
    before = stage_file.read_text()
    project.ok("plots", "modify", "loss.csv", "--template", "scatter", "--x-label", "epoch")
    after = stage_file.read_text()
    assert "template: scatter" in after and "x_label: epoch" in after
    md5 = [line for line in before.splitlines() if line.startswith("md5:")]
    assert md5 == [line for line in after.splitlines() if line.startswith("md5:")]
    assert "changed" not in project.ok("status").out


def test_plots_metrics_draws_each_metric_across_tags(project: Project) -> None:
    project.write(
        "metrics.json.repro",
        "outs:\n- path: metrics.json\n  cache: false\n  metric: {}\n",
    )
    for tag, accuracy in (("0.1", 0.6), ("0.2", 0.75), ("0.3", 0.9)):
        project.write("metrics.json", json.dumps({"acc": accuracy, "name": "x"}))
        project.commit(f"accuracy {accuracy}", tag=tag)
    specs = json.loads(project.ok("plots", "metrics", "-T", "--json").out)
    assert list(specs) == ["metrics_metrics.json_acc"]
    records = specs["metrics_metrics.json_acc"]["data"]["values"]
    assert [(r["rev"], r["value"]) for r in records] == [("0.1", 0.6), ("0.2", 0.75), ("0.3", 0.9)]
    project.ok("plots", "metrics", "-T")
    assert (project.root / "repro_plots" / "metrics_metrics.json_acc.png").exists()


def test_without_the_plots_extra_the_page_is_still_written(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plotted(project, "loss.csv", LOSS, "-y", "loss")
    hidden = tmp_path / "no-vl-convert"
    hidden.mkdir()
    (hidden / "vl_convert.py").write_text("raise ImportError('not installed')\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(hidden), *filter(None, [os.environ.get("PYTHONPATH")])])
    )
    done = cli(project.root, "plots", "show", "--open")
    assert done.code == 0, done.err
    assert "pip install 'repro-pipelines[plots]'" in done.err
    assert "No browser to open here" in done.out
    assert sorted(p.name for p in (project.root / "repro_plots").iterdir()) == ["index.html"]


def test_repro_yaml_plots_take_dvc_3s_per_output_options() -> None:
    text = (
        "stages:\n  train:\n    cmd: make\n    plots:\n"
        "    - loss.csv: {x: epoch, y: loss, template: smooth, cache: false}\n"
        "    - roc.json\n"
    )
    [stage] = pipeline_file.parse("repro.yaml", text, None, lambda name: {})
    loss, roc = stage.outs
    assert loss.plot is not None and (loss.plot.x, loss.plot.template) == ("epoch", "smooth")
    assert not loss.cache and roc.cache and roc.plot is not None
    assert pipeline_file.definition_of(stage, image=False)["plots"] == [
        {"loss.csv": {"x": "epoch", "y": "loss", "template": "smooth", "cache": False}},
        "roc.json",
    ]


@pytest.fixture(scope="module")
def plots_image() -> str:
    client = docker.from_env()
    build_busybox_image(client, tag=IMAGE)
    return IMAGE


def test_run_plots_flags_declare_plot_outputs(project: Project, plots_image: str) -> None:
    script = 'awk \'BEGIN { print "epoch,loss"; for (i = 0; i < 5; i++) print i "," 1/(i+1) }\''
    project.ok(
        "run", "--image", plots_image, "--plots-no-cache", "loss.csv", f"{script} > loss.csv"
    )
    project.ok("run", "--image", plots_image, "--plots", "big.csv", f"{script} > big.csv")
    loss = (project.root / "loss.csv.repro").read_text()
    assert "cache: false\n  plot: {}" in loss
    assert "cache: true\n  plot: {}" in (project.root / "big.csv.repro").read_text()
    specs = json.loads(project.ok("plots", "show", "--json").out)
    assert sorted(specs) == ["big.csv", "loss.csv"]
    assert [r["loss"] for r in specs["loss.csv"]["data"]["values"]][:2] == [1, 0.5]
