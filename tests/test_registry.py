"""repro ls, get, import and update against a second repository on this machine (over ssh with
an S3 remote: tests/remotes/test_registry_ssh.py): what users see, and bad input refused in one
line with nothing left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import Project, git, make_tree


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _objects(project: Project) -> list[Path]:
    return [p for p in (project.root / ".repro" / "cache").rglob("*") if p.is_file()]


def repository(root: Path, capsys: pytest.CaptureFixture[str]) -> Project:
    """A new git repository at ``root`` with repro initialised (and no commit)."""
    root.mkdir()
    git(root, "init", "-q")
    made = Project(root, capsys)
    made.ok("init")
    return made


@pytest.fixture
def source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Project:
    """A registry: data/images (20 files in 2 folders) tracked and pushed to a folder remote,
    tagged v1; a README in git."""
    root = tmp_path / "registry"
    registry = repository(root, capsys)
    make_tree(root / "data" / "images", 20, folders=2)
    registry.write("README", "a registry\n")
    registry.ok("add", "data/images")
    registry.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    registry.ok("push")
    registry.commit("v1", tag="v1")
    return registry


def _new_version(source: Project) -> None:
    source.ok("unprotect", "data/images")
    (source.root / "data/images/d000/f00000").write_bytes(b"changed")
    (source.root / "data/images/extra").write_text("new file\n")
    source.ok("add", "data/images")
    source.ok("push")
    source.commit("v2")


def test_import_status_update(project: Project, source: Project) -> None:
    url = str(source.root)
    result = project.ok("import", url, "data/images", "-o", "images")
    assert "git add images.repro" in result.out
    assert _tree(project.root / "images") == _tree(source.root / "data/images")
    recorded = (project.root / "images.repro").read_text()
    commit = source.git("rev-parse", "HEAD").strip()
    assert f"url: {url}" in recorded and f"rev_lock: {commit}" in recorded
    assert "images" in (project.root / ".gitignore").read_text()
    assert project.repro("status").code == 0

    _new_version(source)
    status = project.repro("status")
    assert status.code == 1
    assert "moved" in status.out and "repro update images.repro" in status.out
    assert project.ok("repro").code == 0  # a repro keeps the import as it is
    assert project.repro("status").code == 1

    project.ok("update", "images.repro")
    assert _tree(project.root / "images") == _tree(source.root / "data/images")
    assert source.git("rev-parse", "HEAD").strip() in (project.root / "images.repro").read_text()
    assert project.repro("status").code == 0
    assert "up to date" in project.ok("update", "images").out


def test_update_to_a_tag_and_a_file_in_a_folder(project: Project, source: Project) -> None:
    url = str(source.root)
    _new_version(source)
    project.ok("import", url, "data/images/d000/f00000", "-o", "one")
    assert (project.root / "one").read_bytes() == b"changed"
    project.ok("update", "one.repro", "--rev", "v1")
    assert (project.root / "one").read_bytes() != b"changed"
    assert "rev: v1" in (project.root / "one.repro").read_text()
    project.ok("import", url, "data/images/d001", "-o", "half", "--rev", "v1")
    assert _tree(project.root / "half") == _tree(source.root / "data/images/d001")


def test_ls(source: Project, project: Project) -> None:
    top = project.ok("ls", str(source.root))
    lines = top.out.splitlines()
    assert any(line.endswith("  README") and line.split()[0] == "11" for line in lines)
    assert any(line.endswith("  data/") for line in lines)
    inside = project.ok("ls", str(source.root), "data")
    assert "images/" in inside.out and "images.repro" in inside.out
    every = json.loads(project.ok("ls", str(source.root), "data/images", "-R", "--json").out)
    files = {e["path"]: e for e in every}
    assert len(files) == 20 and files["d000/f00000"]["isout"]
    assert files["d000/f00000"]["size"] == 64
    whole = json.loads(project.ok("ls", str(source.root), "-R", "--json").out)
    assert {"README", "data/images/d001/f00001"} <= {e["path"] for e in whole}


def test_get(tmp_path: Path, source: Project, project: Project) -> None:
    _new_version(source)
    project.ok("get", str(source.root), "data/images", "-o", "latest")
    assert _tree(project.root / "latest") == _tree(source.root / "data/images")
    project.ok("get", str(source.root), "data/images", "-o", "old", "--rev", "v1")
    assert "extra" not in _tree(project.root / "old")
    assert not list(project.root.glob("?*.repro")), "get tracks nothing"
    again = project.repro("get", str(source.root), "data/images", "-o", "old")
    assert again.code == 1 and "exists" in again.err
    # From the source's remote when its cache does not have the data
    shutil.rmtree(source.root / ".repro" / "cache")
    project.ok("get", str(source.root), "README", "-o", "readme")
    project.ok("get", "file://" + str(source.root), "data/images/extra", "-o", "extra")
    assert (project.root / "extra").read_text() == "new file\n"


def _refused(project: Project, *args: str) -> str:
    result = project.repro(*args)
    assert result.code == 1, result
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not list(project.root.glob("?*.repro"))
    assert not list(project.root.glob("out*"))
    assert _objects(project) == []
    return result.err


def test_bad_input_is_one_line_and_leaves_nothing(
    tmp_path: Path, project: Project, source: Project
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    git(plain, "init", "-q")
    git(plain, "commit", "-q", "--allow-empty", "-m", "nothing")
    assert "not a repro repository" in _refused(project, "import", str(plain), "x", "-o", "out")
    err = _refused(project, "import", str(tmp_path), "x", "-o", "out")
    assert "cannot read the git repository" in err
    err = _refused(project, "import", str(source.root), "data/nothing", "-o", "out")
    assert "'data/nothing' is neither data repro tracks nor a file" in err
    assert "not a branch or tag" in _refused(
        project, "import", str(source.root), "README", "--rev", "v9", "-o", "out"
    )
    # The source's remote is gone and its cache does not hold the data
    shutil.rmtree(source.root / ".repro" / "cache")
    shutil.rmtree(tmp_path / "store")
    err = _refused(project, "import", str(source.root), "data/images", "-o", "out")
    assert "repro push" in err or "cannot fetch" in err
    assert "not a branch" in _refused(project, "get", str(source.root), "README", "--rev", "v9")


def test_an_unreachable_source_makes_status_say_so(
    tmp_path: Path, project: Project, source: Project
) -> None:
    project.ok("import", str(source.root), "README", "-o", "readme")
    shutil.move(source.root, tmp_path / "moved")
    status = project.repro("status")
    assert status.code == 1 and "unreachable" in status.out
    assert project.repro("update", "readme.repro").code == 1
    assert (project.root / "readme").read_text() == "a registry\n"


def test_update_refuses_a_stage_that_is_no_import(project: Project) -> None:
    project.write("data.txt", "x")
    project.ok("add", "data.txt")
    result = project.repro("update", "data.txt.repro")
    assert result.code == 1 and "is not an import" in result.err
