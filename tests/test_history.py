"""metrics across tags read from git history; gc scopes; git hooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from helpers import Project, git

from repro.errors import ReproError
from repro.history.revisions import History, Revision


def tagged_metrics(project: Project) -> None:
    """Three tags whose metrics differ; metrics declared as a stage would (uncached, in git)."""
    for tag, acc, data in (("0.1", 0.9, "a"), ("0.2", 0.92, "ab"), ("0.3", 0.96, "abc")):
        project.write("data/train.txt", data)
        project.ok("add", "data")
        project.write("metrics.json", json.dumps({"acc": acc, "loss": 1 - acc}))
        if tag == "0.1":
            project.write(
                "evaluate.repro",
                "outs:\n- path: metrics.json\n  cache: false\n  metric:\n    type: json\n",
            )
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
    assert shown == {
        "0.1": {"metrics.json": 0.9},
        "0.2": {"metrics.json": 0.92},
        "0.3": {"metrics.json": 0.96},
    }
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
    project.write("m.bad.yaml", "a: [1\n")
    assert "not valid yaml (" in project.ok("metrics", "show", "m.bad.yaml").out
    project.write("huge.csv", "a\n" + "x" * 200_000 + "\n")  # over csv's field size limit
    result = project.ok("metrics", "show", "huge.csv")
    assert "huge.csv at workspace is not valid csv (field larger than field limit" in result.out


def test_cached_metric_is_read_from_the_cache(project: Project) -> None:
    project.write("scores.json", '{"acc": 0.7}')
    project.ok("add", "scores.json")
    stage = (project.root / "scores.json.repro").read_text()
    metric = "cache: true\n  metric:\n    type: json"
    project.write("scores.json.repro", stage.replace("cache: true", metric))
    project.commit("cached metric", tag="m1")
    assert json.loads(project.ok("metrics", "show", "-T", "--json").out) == {
        "m1": {"scores.json": {"acc": 0.7}}
    }
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
    project.write(
        "eval/score.repro", "outs:\n- path: score.json\n  cache: false\n  metric:\n    type: json\n"
    )
    project.write("eval/score.json", json.dumps({"f1": 0.5}))
    project.commit("first")
    project.git("tag", "light")  # lightweight
    project.write("eval/score.json", json.dumps({"f1": 0.6}))
    project.write("eval/score.repro", "outs: [this is not: a stage\n")  # broken at this tag
    project.git("add", "-A")
    project.git("commit", "-q", "-m", "broken")
    project.git("tag", "-a", "annotated", "-m", "an annotated tag")
    project.write(
        "eval/score.repro", "outs:\n- path: score.json\n  cache: false\n  metric:\n    type: json\n"
    )
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


# -- History read straight from git objects, with the git CLI -----------------------------------
METRIC_STAGE = "outs:\n- path: metrics.json\n  cache: false\n  metric:\n    type: json\n"


def fast_import(project: Project, commits: list[tuple[dict[str, str], str | None]]) -> None:
    """Commit each (files, annotated tag) on top of HEAD in one git process, then check out."""

    def data(text: str) -> str:
        return f"data {len(text.encode())}\n{text}\n"

    stream = []
    parent = project.git("rev-parse", "HEAD").strip()
    who = "Repro Test <test@example.invalid> 1700000000 +0000"
    for mark, (files, tag) in enumerate(commits, start=1):
        stream.append(f"commit refs/heads/main\nmark :{mark}\ncommitter {who}\n{data('c')}")
        if mark == 1:
            stream.append(f"from {parent}\n")
        stream += [f"M 100644 inline {path}\n{data(text)}" for path, text in files.items()]
        if tag:
            stream.append(f"tag {tag}\nfrom :{mark}\ntagger {who}\n{data(tag)}")
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=project.root,
        check=True,
        input="".join(stream).encode(),
    )
    project.git("reset", "-q", "--hard")


class GitCalls:
    """Every git process started (however it is started), and the objects asked of cat-file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[str]] = []
        self.objects_asked = 0
        real_init = subprocess.Popen.__init__
        real_communicate = subprocess.Popen.communicate

        def init(popen: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            if list(args[:1]) == ["git"]:
                self.calls.append(list(args))
            real_init(popen, args, *rest, **kwargs)

        def communicate(popen: subprocess.Popen[Any], input: Any = None, **kwargs: Any) -> Any:
            # repro starts git with a list of str (the init above counts it so too)
            if "cat-file" in cast("list[str]", popen.args):
                self.objects_asked += (input or b"").count(b"\n")
            return real_communicate(popen, input, **kwargs)

        monkeypatch.setattr(subprocess.Popen, "__init__", init)
        monkeypatch.setattr(subprocess.Popen, "communicate", communicate)


def hundred_tags(project: Project) -> None:
    commits: list[tuple[dict[str, str], str | None]] = [
        ({"metrics.repro": METRIC_STAGE, "src/eval/model.py": "print()\n"}, None)
    ]
    commits += [
        ({"metrics.json": json.dumps({"acc": n / 100, "n": n})}, f"v{n}") for n in range(1, 101)
    ]
    fast_import(project, commits)


def test_a_hundred_tags_are_read_in_a_few_batched_git_calls(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    hundred_tags(project)
    git_calls = GitCalls(monkeypatch)
    shown = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert list(shown) == [f"v{n}" for n in range(1, 101)]  # natural order: v2 before v10
    assert shown["v42"] == {"metrics.json": {"acc": 0.42, "n": 42}}
    # for-each-ref; root trees; src/ and .repro/; src/eval/; stage files; metric files.
    assert len(git_calls.calls) <= 6, git_calls.calls
    # Each object once: 100 root trees, 100 metric files, a few shared folders and stage files.
    assert git_calls.objects_asked <= 210

    git_calls.calls.clear()
    project.ok("gc", "-T", "-f")
    # gc first asks once whether the repository tracks .repro's per-machine files (planted
    # memos must not decide what it deletes); the history is read in as few calls as before.
    safety = [call for call in git_calls.calls if call[1] == "ls-files"]
    history = [call for call in git_calls.calls if call[1] != "ls-files"]
    assert len(safety) == 1, git_calls.calls
    assert len(history) <= 5, git_calls.calls  # no metric files to read


def test_history_caches_trees_and_stage_files_by_object(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    hundred_tags(project)
    history = History(project.root)
    revisions = history.revisions(branches=False, tags=True, commits=False)
    history.prefetch(revisions)
    git_calls = GitCalls(monkeypatch)
    stages = [history.stages_at(revision) for revision in revisions]
    assert git_calls.calls == []  # all read already
    assert all(s == stages[0] for s in stages) and stages[0][0].path == "metrics.repro"
    assert history.read(revisions[0], "src/eval/model.py") == b"print()\n"
    assert git_calls.calls == [["git", "cat-file", "--batch"]]  # one blob; no tree read again
    contents = history.read_many([(r, "metrics.json") for r in revisions[:3]])
    assert [json.loads(c or b"")["n"] for c in contents] == [1, 2, 3]
    for missing in ("nope.json", "src", "src/eval", "metrics.json/x", "src/nope/x"):
        assert history.read(revisions[0], missing) is None


def test_tags_of_tags_blobs_and_trees(project: Project) -> None:
    project.write("metrics.repro", METRIC_STAGE)
    project.write("metrics.json", '{"acc": 0.5}')
    project.commit("first", tag="v1")
    project.git("tag", "-a", "v1-again", "-m", "a tag of a tag", "v1")
    project.git("tag", "-a", "v1-thrice", "-m", "a tag of a tag of a tag", "v1-again")
    project.git("tag", "a-blob", project.git("rev-parse", "HEAD:metrics.json").strip())
    project.git("tag", "-a", "a-tree", "-m", "annotated tree", "HEAD^{tree}")
    project.git("tag", "-a", "tag-of-a-tree", "-m", "deeper", "a-tree")
    history = History(project.root)
    revisions = history.revisions(branches=False, tags=True, commits=False)
    head = project.git("rev-parse", "HEAD").strip()
    assert revisions == [
        Revision("v1", head),
        Revision("v1-again", head),
        Revision("v1-thrice", head),
    ]
    shown = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert list(shown) == ["v1", "v1-again", "v1-thrice"]


def test_submodules_and_odd_names_are_read_from_trees(project: Project) -> None:
    """A gitlink (submodule) entry has no object here: it is skipped, not read."""
    project.write(
        "my eval/é.repro", "outs:\n- path: scöre.json\n  cache: false\n  metric:\n    type: json\n"
    )
    project.write("my eval/scöre.json", '{"f1": 0.25}')
    project.git("add", "-A")
    elsewhere = "0123456789abcdef0123456789abcdef01234567"  # a commit of another repository
    project.git("update-index", "--add", "--cacheinfo", f"160000,{elsewhere},vendor/lib")
    project.git("commit", "-q", "-m", "submodule")
    project.git("tag", "with-submodule")
    history = History(project.root)
    (revision,) = history.revisions(branches=False, tags=True, commits=False)
    assert [s.path for s in history.stages_at(revision)] == ["my eval/é.repro"]
    assert history.read(revision, "vendor/lib") is None
    assert history.read(revision, "vendor/lib/x") is None
    shown = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert shown == {"with-submodule": {"my eval/scöre.json": {"f1": 0.25}}}


def test_broken_stage_files_at_old_revisions_are_skipped(project: Project) -> None:
    project.write("metrics.json", '{"acc": 0.5}')
    project.write("good.repro", METRIC_STAGE)
    project.write("bad.repro", "outs: [this is not: a stage\n")
    (project.root / "binary.repro").write_bytes(b"\xff\xfe not utf-8")
    project.write("wrong.repro", "outs: 3\n")
    project.commit("mixed", tag="mixed")
    history = History(project.root)
    (revision,) = history.revisions(branches=False, tags=True, commits=False)
    assert [s.path for s in history.stages_at(revision)] == ["good.repro"]


def test_all_commits_and_branches(project: Project) -> None:
    project.write("metrics.repro", METRIC_STAGE)
    for acc in (0.1, 0.2):
        project.write("metrics.json", json.dumps({"acc": acc}))
        project.commit(f"acc {acc}")
    project.git("checkout", "-q", "-b", "side")
    project.write("metrics.json", json.dumps({"acc": 0.3}))
    project.commit("side")
    project.git("checkout", "-q", "main")
    shas = project.git("rev-list", "--all").split()
    history = History(project.root)
    everything = history.revisions(branches=False, tags=False, commits=True)
    assert [r.label for r in everything] == shas and all(r.sha == r.label for r in everything)
    shown = json.loads(project.ok("metrics", "show", "--all-commits", "--json").out)
    assert list(shown) == shas[:3]  # in git's order; the first commit declares no metric
    assert sorted(v["metrics.json"]["acc"] for v in shown.values()) == [0.1, 0.2, 0.3]
    branches = json.loads(project.ok("metrics", "show", "-a", "--json").out)
    assert branches == {
        "main": {"metrics.json": {"acc": 0.2}},
        "side": {"metrics.json": {"acc": 0.3}},
    }


def test_a_repository_without_commits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    project = Project(root, capsys)
    project.ok("init")
    history = History(root)
    assert history.revisions(branches=True, tags=True, commits=True) == []
    for scope in ("-T", "-a", "--all-commits"):
        result = project.repro("metrics", "show", scope)
        assert result.code == 1 and "no revisions match" in result.err
    result = project.repro("metrics", "diff")
    assert result.code == 1
    assert (
        result.err == "error: 'HEAD' is not a revision of this repository; name a tag, "
        "branch or commit\n"
    )
    project.ok("gc", "--all-commits", "-f")


def test_errors_are_one_line_and_say_what_is_wrong(project: Project) -> None:
    tagged_metrics(project)
    for rev in ("nope", "0.1:metrics.json", "HEAD^{tree}", "0.1 0.2"):
        result = project.repro("metrics", "diff", rev, "0.3")
        assert result.code == 1, rev
        assert result.err == (
            f"error: '{rev}' is not a revision of this repository; name a tag, branch or commit\n"
        )
    for option in ("--all", "-h", "--output=x", "a\0b"):  # never handed to git as an option
        with pytest.raises(ReproError, match="is not a revision"):
            History(project.root).resolve(option)
    assert not (project.root / "x").exists()
    diff = json.loads(project.ok("metrics", "diff", "0.1", "0.3~0", "--json").out)
    assert diff["metrics.json"]["acc"]["new"] == 0.96
    shutil.rmtree(project.root / ".git")
    for args in (("metrics", "show", "-T"), ("metrics", "diff"), ("gc", "-a", "-f")):
        result = project.repro(*args)
        assert result.code == 1
        assert (
            result.err == f"error: {project.root} is not a git repository; run 'git init' there\n"
        )
    assert project.ok("metrics", "show", "--json").code == 0  # the workspace needs no git


def test_a_git_dir_exported_for_another_repository_is_ignored(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooks and wrappers export GIT_DIR and friends; the project's own repository is read."""
    tagged_metrics(project)
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    shown = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert list(shown) == ["0.1", "0.2", "0.3"]


def test_sha256_repositories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Object ids are 32 bytes there: trees are parsed by the repository's id size."""
    root = tmp_path / "sha256"
    root.mkdir()
    try:
        git(root, "init", "-q", "--object-format=sha256")
    except subprocess.CalledProcessError:
        pytest.skip("this git cannot make sha256 repositories")
    project = Project(root, capsys)
    project.ok("init")
    project.write("eval/metrics.repro", METRIC_STAGE)
    project.write("eval/metrics.json", '{"acc": 0.75}')
    project.commit("sha256", tag="v1")
    shown = json.loads(project.ok("metrics", "show", "-T", "--json").out)
    assert shown == {"v1": {"eval/metrics.json": {"acc": 0.75}}}
