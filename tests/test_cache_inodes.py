"""The cache shares no inode with anything a stage or a user can write, and root loses no old
version by editing an output in place (issue 15, classes 2 and 4)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import Project, run_as

if TYPE_CHECKING:
    import docker


def _object(project: Project, content: bytes) -> Path:
    import hashlib

    md5 = hashlib.md5(content).hexdigest()
    return project.root / ".repro" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def test_a_stage_hardlink_never_becomes_the_cache_object(
    project: Project,
    docker_client: docker.DockerClient,
) -> None:
    """A stage writes o.txt and keeps a hardlink of it; a later stage rewrites that link."""
    project.ok("config", "cache.type", "hardlink")
    project.ok("run", "-f", "one.repro", "-o", "o.txt", "echo good > o.txt && ln o.txt .scratch")
    obj = _object(project, b"good\n")
    assert obj.stat().st_ino != (project.root / ".scratch").stat().st_ino
    assert (project.root / "o.txt").stat().st_ino == obj.stat().st_ino  # still linked
    project.ok(
        "run",
        "-f",
        "two.repro",
        "-o",
        "t.txt",
        "chmod u+w .scratch && echo evil > .scratch && echo > t.txt",
    )
    assert obj.read_bytes() == b"good\n"
    assert project.ok("fsck").code == 0
    project.ok("status")


def test_a_hardlinked_file_added_by_hand_is_copied_in(project: Project) -> None:
    project.ok("config", "cache.type", "hardlink")
    project.write("data/a.txt", "shared")
    os.link(project.root / "data" / "a.txt", project.root / "elsewhere.txt")
    project.ok("add", "data")
    obj = _object(project, b"shared")
    assert obj.stat().st_ino != (project.root / "elsewhere.txt").stat().st_ino
    os.chmod(project.root / "elsewhere.txt", 0o644)
    (project.root / "elsewhere.txt").write_text("changed")
    assert obj.read_text() == "shared"


def test_root_default_keeps_old_versions_when_editing_in_place(project: Project) -> None:
    assert os.geteuid() == 0
    project.write("f.txt", "v1\n")
    project.ok("add", "f.txt")
    project.commit("v1", tag="v1")
    with open(project.root / "f.txt", "w") as handle:  # root edits in place
        handle.write("v2\n")
    project.ok("commit")
    project.commit("v2")
    assert _object(project, b"v1\n").read_text() == "v1\n"
    project.git("checkout", "-q", "v1")
    project.ok("checkout")
    assert (project.root / "f.txt").read_text() == "v1\n"
    assert project.ok("fsck").code == 0


def _edit_in_place_with_hardlinks(project: Project) -> None:
    project.ok("config", "cache.type", "hardlink")
    project.write("f.txt", "v1\n")
    project.ok("add", "f.txt")
    project.commit("v1", tag="v1")
    target = project.root / "f.txt"
    os.chmod(target, 0o644)  # root needs not even this; an ordinary user would
    with open(target, "w") as handle:
        handle.write("v2 is longer\n")


def test_an_in_place_edit_as_root_is_caught_at_checkout(project: Project) -> None:
    _edit_in_place_with_hardlinks(project)
    result = project.repro("checkout", "-f")
    assert "edited in place" in result.err and "quarantined" in result.err
    assert result.code == 1 and "not in the cache: f.txt" in result.err
    assert (project.root / "f.txt").read_text() == "v2 is longer\n"  # the edit is not lost
    quarantine = project.root / ".repro" / "cache" / "quarantine"
    assert [p.read_text() for p in quarantine.iterdir()] == ["v2 is longer\n"]
    assert not _object(project, b"v1\n").exists()
    assert project.ok("fsck").code == 0


def test_an_in_place_edit_is_caught_by_status_and_commit(project: Project) -> None:
    _edit_in_place_with_hardlinks(project)
    result = project.repro("status")
    assert result.code == 1 and "quarantined" in result.err
    assert not _object(project, b"v1\n").exists()
    project.ok("commit")
    project.commit("v2")
    assert _object(project, b"v2 is longer\n").read_text() == "v2 is longer\n"
    project.git("checkout", "-q", "v1")
    result = project.repro("checkout")
    assert result.code == 1 and "not in the cache: f.txt" in result.err
    assert (project.root / "f.txt").read_text() == "v2 is longer\n"


def test_a_quarantined_object_comes_back_from_a_remote(project: Project, tmp_path: Path) -> None:
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    project.ok("config", "cache.type", "hardlink")
    project.write("f.txt", "v1\n")
    project.ok("add", "f.txt")
    project.commit("v1", tag="v1")
    project.ok("push")
    os.chmod(project.root / "f.txt", 0o644)
    (project.root / "f.txt").write_text("v2\n")  # same inode: the object changes too
    project.ok("commit")
    project.commit("v2")
    project.ok("push")  # v2 goes up; v1 was quarantined, never pushed as v1
    assert (tmp_path / "store" / "files" / "md5").exists()
    project.git("checkout", "-q", "v1")
    assert project.repro("checkout").code == 1
    project.ok("pull")
    assert (project.root / "f.txt").read_text() == "v1\n"


def test_an_ordinary_user_editing_a_chmodded_link_is_caught(
    public_project: Project,
) -> None:
    """As nobody (hardlinks by default): chmod u+w, edit, then checkout the old version."""
    project = public_project
    target = project.root / "f.txt"
    target.write_text("v1\n")
    for path in [project.root, *project.root.rglob("*")]:
        os.lchown(path, 65534, 65534)
    home = project.root / ".home"
    assert run_as(65534, project.root, home, "add", "f.txt").code == 0
    assert target.stat().st_nlink == 2  # hardlinked: nobody's default
    assert target.stat().st_mode & 0o777 == 0o444
    edit = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            f"chmod u+w {target} && echo v2 > {target}",
        ],
        capture_output=True,
        text=True,
    )
    assert edit.returncode == 0, edit.stderr
    done = run_as(65534, project.root, home, "checkout", "-f")
    code, err = done.code, done.err
    assert code == 1
    assert "quarantined" in err and "not in the cache: f.txt" in err, err
    assert target.read_text() == "v2\n"


def test_an_in_place_edit_is_never_pushed(project: Project, tmp_path: Path) -> None:
    """Edited, then pushed straight away: the damaged object does not travel as v1."""
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    _edit_in_place_with_hardlinks(project)
    result = project.repro("push")
    assert "quarantined" in result.err
    v1 = (
        tmp_path
        / "store"
        / _object(project, b"v1\n").relative_to(project.root / ".repro" / "cache")
    )
    assert not v1.exists() or v1.read_bytes() == b"v1\n"
    assert result.code == 1 and "could not be pushed" in result.err
