"""metrics across tags read from git history; gc scopes; git hooks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import Project


def tagged_metrics(project: Project) -> None:
    """Three tags whose metrics differ; metrics declared as a stage would (uncached, in git)."""
    for tag, acc, data in (("0.1", 0.9, "a"), ("0.2", 0.92, "ab"), ("0.3", 0.96, "abc")):
        project.write("data/train.txt", data)
        project.ok("add", "data")
        project.write("metrics.json", json.dumps({"acc": acc, "loss": 1 - acc}))
        if tag == "0.1":
            project.write("evaluate.repro", "outs:\n- path: metrics.json\n  cache: false\n"
                                            "  metric:\n    type: json\n")
        project.commit(f"version {tag}", tag=tag)
        project.ok("unprotect", "data")


def _mtimes(project: Project) -> dict[Path, int]:
    """Every file's mtime but git's and the per-machine caches' (state db, parsed stages)."""
    caches = (project.root / ".git", project.root / ".repro" / "tmp")
    return {
        p: p.stat().st_mtime_ns
        for p in project.root.rglob("*")
        if not any(p == c or c in p.parents for c in caches) and "state.db" not in p.name
    }


def test_metrics_of_every_tag_without_touching_the_workspace(project: Project) -> None:
    tagged_metrics(project)
    project.write("metrics.json", json.dumps({"acc": 0.5, "loss": 0.5}))  # uncommitted work
    before = _mtimes(project)
    status_before = project.git("status", "--porcelain")
    result = project.ok("metrics", "show", "-T", "--json")
    assert json.loads(result.out) == {
        "0.1": {"metrics.json": {"acc": 0.9, "loss": pytest.approx(0.1)}},
        "0.2": {"metrics.json": {"acc": 0.92, "loss": pytest.approx(0.08)}},
        "0.3": {"metrics.json": {"acc": 0.96, "loss": pytest.approx(0.04)}},
    }
    after = _mtimes(project)
    assert after == before
    assert project.git("status", "--porcelain") == status_before
    table = project.ok("metrics", "show", "-T").out.splitlines()
    assert table[0].split() == ["revision", "metrics.json:acc", "metrics.json:loss"]
    assert table[1].split()[:2] == ["0.1", "0.9"]
    workspace = json.loads(project.ok("metrics", "show", "--json").out)
    assert workspace == {"workspace": {"metrics.json": {"acc": 0.5, "loss": 0.5}}}


def test_modify_xpath_applies_to_every_revision_and_diff(project: Project) -> None:
    tagged_metrics(project)
    project.ok("metrics", "modify", "metrics.json", "--type", "json", "--xpath", "acc")
    assert "xpath: acc" in (project.root / "evaluate.repro").read_text()
    # The tags' stage files predate the modify: the workspace's setting applies to them too.
    shown = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert shown == {"0.1": {"metrics.json": 0.9}, "0.2": {"metrics.json": 0.92},
                     "0.3": {"metrics.json": 0.96}}
    table = project.ok("metrics", "show", "-T").out.splitlines()
    assert table[0].split() == ["revision", "metrics.json:acc"]
    diff = project.ok("metrics", "diff", "0.1", "0.3").out.splitlines()
    assert diff[0].split() == ["path", "metric", "0.1", "0.3", "change"]
    assert diff[1].split() == ["metrics.json", "acc", "0.9", "0.96", "+0.06"]


def test_metric_types_and_xpaths(project: Project) -> None:
    project.write("m.yaml", "train:\n  loss: 0.25\nlayers:\n- units: 32\n")
    project.write("m.csv", "epoch,acc\n1,0.5\n2,0.75\n")
    project.write("m.tsv", "acc\tloss\n0.8\t0.2\n")
    project.write("m.txt", "0.875\n")
    def show(*args: str) -> object:
        return json.loads(project.ok("metrics", "show", "--json", *args).out)["workspace"]
    assert show("m.yaml", "--xpath", "train.loss") == {"m.yaml": 0.25}
    assert show("m.yaml", "--xpath", "layers[0].units") == {"m.yaml": 32}
    assert show("m.csv", "--xpath", "acc") == {"m.csv": [0.5, 0.75]}
    assert show("m.csv", "--xpath", "acc[1]") == {"m.csv": 0.75}
    assert show("m.tsv", "--xpath", "loss") == {"m.tsv": 0.2}
    assert show("m.txt") == {"m.txt": 0.875}
    result = project.ok("metrics", "show", "m.yaml", "--xpath", "nope")
    assert "nothing at 'nope'" in result.out


def test_cached_metric_is_read_from_the_cache(project: Project) -> None:
    project.write("scores.json", '{"acc": 0.7}')
    project.ok("add", "scores.json")
    stage = (project.root / "scores.json.repro").read_text()
    project.write("scores.json.repro", stage.replace("cache: true", "cache: true\n  metric:\n    type: json"))
    project.commit("cached metric", tag="m1")
    assert json.loads(project.ok("metrics", "show", "-T", "--json").out) == {
        "m1": {"scores.json": {"acc": 0.7}}}
    import shutil

    shutil.rmtree(project.root / ".repro" / "cache")
    result = project.ok("metrics", "show", "-T")
    assert "repro pull" in result.out


def test_gc_needs_a_scope_and_keeps_every_tag(project: Project) -> None:
    tagged_metrics(project)
    project.write("scratch/junk.bin", "unused " * 100)
    project.ok("add", "scratch")
    project.ok("remove", "scratch.repro", "--outs")
    result = project.repro("gc")
    assert result.code == 2 and "scope" in result.err
    result = project.repro("gc", "-T")  # not a terminal: confirmation is required
    assert result.code == 1 and "-f" in result.err
    objects_before = len(list((project.root / ".repro/cache/files/md5").rglob("*")))
    result = project.ok("gc", "-T", "-f")
    assert "Freed" in result.out
    assert len(list((project.root / ".repro/cache/files/md5").rglob("*"))) < objects_before
    for tag, data in (("0.1", "a"), ("0.2", "ab"), ("0.3", "abc")):
        project.git("checkout", "-q", tag)
        project.ok("checkout", "--force")
        assert (project.root / "data/train.txt").read_text() == data
    assert project.ok("fsck").code == 0


def test_gc_workspace_scope_drops_old_tags(project: Project) -> None:
    tagged_metrics(project)
    project.ok("gc", "-w", "-f")
    project.git("checkout", "-q", "0.1")
    result = project.repro("checkout")
    assert result.code == 1 and "repro pull" in result.err


def test_install_hooks_bring_data_with_git_checkout(project: Project) -> None:
    tagged_metrics(project)
    hooks = project.root / ".git" / "hooks"
    (hooks / "post-checkout").write_text("#!/bin/sh\necho user-hook-ran >> .user-hook\n")
    os.chmod(hooks / "post-checkout", 0o755)
    project.ok("install")
    project.git("checkout", "-q", "0.1")
    assert (project.root / "data/train.txt").read_text() == "a"
    assert (project.root / ".user-hook").read_text() == "user-hook-ran\n"
    project.git("checkout", "-q", "0.3")
    assert (project.root / "data/train.txt").read_text() == "abc"


def test_history_reads_every_kind_of_ref_and_nested_stage_files(project: Project) -> None:
    """Lightweight and annotated tags, a tag of a tree, a branch, stage files in a subfolder,
    and a stage file that was broken at one tag: each read straight from git objects."""
    project.write("eval/score.repro", "outs:\n- path: score.json\n  cache: false\n"
                                      "  metric:\n    type: json\n")
    project.write("eval/score.json", json.dumps({"f1": 0.5}))
    project.commit("first")
    project.git("tag", "light")  # lightweight
    project.write("eval/score.json", json.dumps({"f1": 0.6}))
    project.write("eval/score.repro", "outs: [this is not: a stage\n")  # broken at this tag
    project.git("add", "-A")
    project.git("commit", "-q", "-m", "broken")
    project.git("tag", "-a", "annotated", "-m", "an annotated tag")
    project.write("eval/score.repro", "outs:\n- path: score.json\n  cache: false\n"
                                      "  metric:\n    type: json\n")
    project.write("eval/score.json", json.dumps({"f1": 0.7}))
    project.commit("fixed")
    tree = project.git("rev-parse", "HEAD^{tree}").strip()
    project.git("tag", "a-tree", tree)  # no commit: no stage files, skipped
    project.git("branch", "side")

    tags = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert tags == {"light": {"eval/score.json": {"f1": 0.5}}}  # the broken tag declares none
    both = json.loads(project.ok("metrics", "show", "-a", "-T", "--json").out)
    assert both["side"] == {"eval/score.json": {"f1": 0.7}}
    assert "a-tree" not in both
    named = json.loads(project.ok("metrics", "show", "-T", "--json", "eval/score.json").out)
    assert named["annotated"] == {"eval/score.json": {"f1": 0.6}}  # read by path all the same
