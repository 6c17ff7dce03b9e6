"""repro diff: files added, deleted, renamed and modified inside tracked data, between two tags
of a 2,000-file folder, a tag and the workspace, and the outputs of both kinds of stage; read
from manifests, never by a checkout; bad revisions, targets and missing manifests."""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING, Any

import pytest
from helpers import OLD_NS, Project, build_busybox_image, make_tree

from repro.history.diff import diff_data
from repro.history.revisions import History
from repro.project import Project as ReproProject

if TYPE_CHECKING:
    import docker

IMAGE = "repro-test-diff:latest"  # this module's own: another session's rebuild moves no pin
FILES = 2000


def _tag_two_versions(project: Project) -> dict[str, Any]:
    """v1 (tagged): a 2,000-file folder and a model file; then in the workspace some of the
    folder's files changed, deleted, renamed and added, and the model changed. What changed."""
    data = project.root / "data"
    make_tree(data, FILES, folders=20)
    project.write("model.bin", "v1\n")
    project.ok("add", "data", "model.bin")
    project.commit("v1", tag="v1")
    files = sorted(p.relative_to(project.root).as_posix() for p in data.rglob("*") if p.is_file())
    modified, deleted, renamed = files[:7], files[100:105], files[200:203]
    for rel in modified:
        project.write(rel, f"changed {rel}\n")
    for rel in deleted:
        (project.root / rel).unlink()
    moves = {rel: rel.replace("/f", "/moved-f") for rel in renamed}
    for old, new in moves.items():
        os.rename(project.root / old, project.root / new)
    added = [f"data/new/{n}" for n in range(4)]
    for rel in added:
        project.write(rel, f"new {rel}\n")
    project.write("model.bin", "v2, longer\n")
    for rel in [*modified, *added, "model.bin"]:  # written before the command, as in real life
        os.utime(project.root / rel, ns=(OLD_NS, OLD_NS))
    return {
        "modified": ["data/", *modified, "model.bin"],
        "deleted": deleted,
        "renamed": moves,
        "added": added,
    }


def _commit_v2(project: Project) -> None:
    project.ok("add", "data", "model.bin")
    project.commit("v2", tag="v2")


def _paths(report: dict[str, Any], state: str) -> list[Any]:
    return [entry["path"] for entry in report[state]]


def test_two_tags_of_a_2000_file_folder_report_exactly_the_changed_files(
    project: Project,
) -> None:
    changed = _tag_two_versions(project)
    _commit_v2(project)
    shutil.rmtree(project.root / "data")  # read from manifests: the workspace plays no part

    report = json.loads(project.ok("diff", "v1", "v2", "--json").out)

    assert _paths(report, "added") == changed["added"]
    assert _paths(report, "deleted") == changed["deleted"]
    assert _paths(report, "modified") == changed["modified"]
    assert {e["path"]["old"]: e["path"]["new"] for e in report["renamed"]} == changed["renamed"]
    assert report["not in cache"] == []
    first = report["modified"][1]
    assert first["size"] == {"old": 64, "new": len(f"changed {first['path']}\n")}
    assert first["hash"]["old"] != first["hash"]["new"]
    assert "size" not in report["modified"][0]  # the folder's line
    assert report["modified"][0]["hash"]["new"].endswith(".dir")
    assert all(e["size"] == 64 for e in report["deleted"] + report["renamed"])
    assert report["added"][0]["size"] == len("new data/new/0\n")

    text = project.ok("diff", "v1", "v2").out
    # Folders are not counted, as dvc counts: 7 data files and the model.
    assert "files summary: 4 added (60 B), 5 deleted (320 B), 3 renamed, 8 modified (" in text
    assert f"Deleted:\n    {changed['deleted'][0]}\n" in text
    old, new = next(iter(changed["renamed"].items()))
    assert f"Renamed:\n    {old} -> {new}\n" in text
    assert not (project.root / "data").exists()  # nothing was checked out

    markdown = project.ok("diff", "v1", "v2", "--md").out
    assert markdown.startswith("| Status | Path |\n|--------|------|\n| added | data/new/0 |\n")
    assert "| modified | model.bin |" in markdown


def test_head_against_the_workspace_hashes_only_what_changed(project: Project) -> None:
    changed = _tag_two_versions(project)
    repro_project = ReproProject(project.root, progress=False)
    history = History(project.root)
    found = diff_data(
        repro_project, history, history.resolve("HEAD"), history.resolve("workspace"), []
    )

    assert [e.path for e in found.added] == changed["added"]
    assert [e.path for e in found.deleted] == changed["deleted"]
    assert [e.path for e in found.modified] == changed["modified"]
    assert {e.old_path: e.path for e in found.renamed} == changed["renamed"]
    # add hashed every file once; the diff reads only the files written since.
    written = len(changed["modified"]) - 1 + len(changed["added"])  # less the folder's line
    assert repro_project.hasher.files_hashed == written

    # The CLI's defaults are the same: HEAD against the workspace.
    default = json.loads(project.ok("diff", "--json").out)
    assert _paths(default, "added") == changed["added"]
    assert _paths(json.loads(project.ok("diff", "v1", "--json").out), "added") == changed["added"]


def test_nothing_changed_says_so(project: Project) -> None:
    make_tree(project.root / "data", 10)
    project.ok("add", "data")
    project.commit("v1", tag="v1")

    assert project.ok("diff").out == "No changes in tracked data between HEAD and workspace.\n"
    report = json.loads(project.ok("diff", "v1", "HEAD", "--json").out)
    assert report == {"added": [], "deleted": [], "modified": [], "renamed": [], "not in cache": []}


def test_targets_limit_the_diff_to_outputs_and_paths_inside_them(project: Project) -> None:
    changed = _tag_two_versions(project)
    _commit_v2(project)

    def diff(*targets: str) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(
            project.ok("diff", "v1", "v2", "--json", "--targets", *targets).out
        )
        return report

    only_model = diff("model.bin")
    assert _paths(only_model, "modified") == ["model.bin"]
    assert only_model["added"] == only_model["deleted"] == only_model["renamed"] == []

    folder = changed["modified"][1].rsplit("/", 1)[0]  # data/d000, where the edits are
    inside = diff(folder)
    assert _paths(inside, "modified") == changed["modified"][1:-1]  # no "data/" line, no model
    assert inside["added"] == inside["deleted"] == inside["renamed"] == []

    whole = diff("data", "model.bin")
    assert _paths(whole, "modified") == changed["modified"]
    assert _paths(whole, "deleted") == changed["deleted"]

    one_file = diff(changed["deleted"][0])
    assert _paths(one_file, "deleted") == changed["deleted"][:1]
    assert _paths(one_file, "modified") == []


def test_bad_revisions_and_targets_fail_in_one_line(project: Project) -> None:
    _tag_two_versions(project)

    for args, hint in (
        (("no-such-tag",), "'no-such-tag' is not a revision of this repository"),
        (("v1", "--bad"), "error: unrecognized arguments: --bad"),
        (("v1", "--targets", "nowhere"), "'nowhere' is not tracked data at v1 or workspace"),
        (("--targets", "../outside"), "'../outside'"),
        (("--targets", "/etc"), "is absolute"),
    ):
        result = project.repro("diff", *args)
        assert result.code in (1, 2), args
        assert result.out == ""
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert hint in result.err
    assert project.repro("diff", "v1", "--bad").code == 2


def test_a_manifest_missing_from_the_cache_is_named_and_compared_whole(
    project: Project,
) -> None:
    _tag_two_versions(project)
    _commit_v2(project)
    old_folder = project.git("show", "v1:data.repro").split("md5: ")[1].split()[0]
    stored = project.root / ".repro/cache/files/md5" / old_folder[:2] / old_folder[2:]
    stored.unlink()

    result = project.repro("diff", "v1", "v2", "--json")
    assert result.code == 0
    report = json.loads(result.out)
    assert report["not in cache"] == [{"path": "data/", "hash": old_folder, "revision": "v1"}]
    assert _paths(report, "modified") == ["data/", "model.bin"]
    assert report["added"] == report["deleted"] == report["renamed"] == []
    assert result.err.count("\n") == 1
    assert "not in the cache; run 'repro fetch -a -T'" in result.err

    text = project.ok("diff", "v1", "v2").out
    assert "Not in cache:\n    data/ (v1)\n" in text
    assert text.rstrip().endswith("1 not in cache")


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> str:
    return build_busybox_image(docker_client, IMAGE)


def test_outputs_of_stage_files_and_repro_yaml_stages(docker_project: Project, image: str) -> None:
    project = docker_project
    project.ok("config", "core.image", IMAGE)
    project.write("n.txt", "3\n")
    project.ok(
        "run", "-f", "gen.repro", "-d", "n.txt", "-o", "gen",
        "mkdir gen && for i in $(seq $(cat n.txt)); do echo $i > gen/$i; done",
    )  # fmt: skip
    project.ok("run", "-n", "count", "-d", "gen", "-M", "count.txt", "ls gen | wc -l > count.txt")
    project.commit("three", tag="three")
    project.write("n.txt", "4\n")
    project.ok("repro")

    report = json.loads(project.ok("diff", "three", "--json").out)

    assert _paths(report, "added") == ["gen/4"]
    assert _paths(report, "modified") == ["count.txt", "gen/"]
    assert report["deleted"] == report["renamed"] == []
