"""A hostile repository: symlinks committed next to stage files must not carry repro out of the
project or into .git/.repro, whatever command meets them (issue 15, class 1, 3, 7)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TEST_IMAGE, Project, Result

from repro.runners.spec import Image
from repro.stages import stage as stage_mod
from repro.stages.deps.file import FileDep
from repro.stages.stage import Out, Stage

if TYPE_CHECKING:
    import docker


def _one_line_error(result: Result, *words: str) -> None:
    assert result.code == 1, (result.code, result.err, result.out)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for word in words:
        assert word in lines[0], lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (not following links), with its bytes."""
    found = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def _cached_stage(project: Project, stage_path: str, out: str, content: bytes) -> None:
    """A data stage whose output ``out`` names ``content``, which is put in the cache (as a
    clone that pulled it would have it)."""
    md5 = hashlib.md5(content).hexdigest()
    obj = project.root / ".repro" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(content)
    obj.chmod(0o444)
    stage_mod.write(project.root, Stage(path=stage_path, outs=(Out(out, md5),)).with_md5())


def test_output_through_a_link_into_git_is_never_written(project: Project) -> None:
    (project.root / "gl").symlink_to(".git")
    _cached_stage(project, "evil.repro", "gl/config", b"[core]\n\tfsmonitor = touch /tmp/pwned\n")
    before = (project.root / ".git" / "config").read_bytes()
    for command in (["checkout"], ["checkout", "-f"], ["status"], ["commit"], ["repro"]):
        _one_line_error(project.repro(*command), "evil.repro", "'gl' -> '.git'", "into .git")
    assert (project.root / ".git" / "config").read_bytes() == before


def test_output_through_a_link_into_repro_is_never_written(project: Project) -> None:
    (project.root / "rl").symlink_to(".repro")
    _cached_stage(project, "evil.repro", "rl/config.local", b"[core]\nremote = evil\n")
    _one_line_error(project.repro("checkout"), "into .repro")
    assert not (project.root / ".repro" / "config.local").exists()


def test_git_objects_are_not_deleted_through_a_link(
    project: Project, docker_client: docker.DockerClient
) -> None:
    (project.root / "gl").symlink_to(".git")
    stage_mod.write(
        project.root,
        Stage(path="wipe.repro", cmd="true", image=Image(TEST_IMAGE), outs=(Out("gl/objects"),)),
    )
    objects = _snapshot(project.root / ".git" / "objects")
    for command in (["repro"], ["repro", "wipe.repro"], ["repro", "-f", "wipe.repro"]):
        _one_line_error(project.repro(*command), "gl/objects", "into .git")
    assert _snapshot(project.root / ".git" / "objects") == objects


def test_the_engine_socket_is_never_reached_through_a_link(
    project: Project, docker_client: docker.DockerClient
) -> None:
    (project.root / "sockdir").symlink_to("/var/run")
    stage_mod.write(
        project.root,
        Stage(
            path="use.repro",
            cmd="ls -l sockdir/docker.sock > seen.txt",
            image=Image(TEST_IMAGE),
            deps=(FileDep("sockdir/docker.sock"),),
            outs=(Out("seen.txt"),),
        ),
    )
    result = project.repro("repro")
    _one_line_error(result, "sockdir/docker.sock", "out of the project", "'sockdir' -> '/var/run'")
    assert not (project.root / "seen.txt").exists()


def test_a_stage_that_plants_a_link_and_a_stage_file_gets_nothing(
    project: Project,
    docker_client: docker.DockerClient,
) -> None:
    """The stage writes a symlink to /var/run and a hidden stage file that names the engine's
    socket as an output of its own: the run fails, the stage file is moved out of the work
    tree, and a copy committed by a clone is refused at every command."""
    evil = (
        "cmd: cat sockdir/docker.sock\nimage:\n  name: "
        + TEST_IMAGE
        + "\nouts:\n- path: ../sockdir/docker.sock\n"
    )
    plant = (
        f"ln -s /var/run sockdir && mkdir -p .hidden && printf '{evil}' > .hidden/evil.repro "
        "&& echo done > a.txt"
    )
    _one_line_error(project.repro("run", "-o", "a.txt", plant), "wrote the stage file")
    assert not (project.root / ".hidden" / "evil.repro").exists()
    (project.root / ".hidden" / "evil.repro").write_text(evil.replace("\\n", "\n"))
    for command in (["repro"], ["status"], ["checkout"]):
        _one_line_error(project.repro(*command), ".hidden/evil.repro", "out of the project")
    assert os.path.exists("/var/run/docker.sock")


def test_a_link_made_by_an_upstream_stage_is_refused_at_use(
    project: Project,
    docker_client: docker.DockerClient,
) -> None:
    """Loading found no link (it did not exist yet); the first stage makes it; the second
    stage's output would delete .git/config through it."""
    project.ok(
        "run",
        "--no-exec",
        "-f",
        "first.repro",
        "-o",
        "made",
        "rm -rf gl; ln -s .git gl; echo > made",
    )
    project.ok(
        "run",
        "--no-exec",
        "-f",
        "second.repro",
        "-d",
        "made",
        "-o",
        "gl/config",
        "echo pwned > gl/config",
    )
    before = (project.root / ".git" / "config").read_bytes()
    _one_line_error(project.repro("repro"), "gl/config", "into .git")
    assert (project.root / ".git" / "config").read_bytes() == before


def test_run_and_remove_never_delete_outside_through_a_link(
    project: Project,
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    (project.root / "lnk").symlink_to(outside)
    _one_line_error(project.repro("run", "-o", "lnk/keep", "echo x > lnk/keep"), "lnk/keep")
    _one_line_error(project.repro("add", "lnk/keep"), "lnk/keep")
    _one_line_error(project.repro("unprotect", "lnk/keep"), "lnk/keep")
    stage_mod.write(project.root, Stage(path="k.repro", outs=(Out("lnk/keep"),)))
    _one_line_error(project.repro("remove", "--outs", "k.repro"), "lnk/keep")
    assert (outside / "keep").read_text() == "precious"


def test_working_directory_outside_the_project_is_refused(
    project: Project,
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    (project.root / "up").symlink_to(tmp_path)
    stage_mod.write(
        project.root,
        Stage(
            path="w.repro",
            cmd="touch here",
            wdir="up",
            image=Image(TEST_IMAGE),
            outs=(Out("up/here"),),
        ),
    )
    _one_line_error(project.repro("repro"), "out of the project")
    assert not (tmp_path / "here").exists()


def test_links_inside_the_project(project: Project, docker_client: docker.DockerClient) -> None:
    """A dependency may go through a link inside the project; what repro writes (an output, a
    stage file) is named by its real path, else it could overlap another stage's output
    while the texts of the two paths do not."""
    (project.root / "real").mkdir()
    (project.root / "real" / "a.txt").write_text("a")
    (project.root / "alias").symlink_to("real")
    _one_line_error(project.repro("add", "alias/a.txt"), "is really 'real/a.txt'")
    assert not (project.root / "real" / "a.txt.repro").exists()
    project.ok("add", "real/a.txt")
    project.ok("run", "-d", "alias/a.txt", "-o", "b.txt", "cat alias/a.txt > b.txt")
    assert (project.root / "b.txt").read_text() == "a"
    _one_line_error(project.repro("run", "-f", "alias/c.repro", "-o", "c", "true"), "really")


@pytest.mark.parametrize("where", ["../mycache", "../.hidden/c", "../data/cache"])
def test_a_cache_inside_the_project_is_refused(project: Project, where: str) -> None:
    project.write("f.txt", "x")
    project.ok("config", "cache.dir", where)
    _one_line_error(project.repro("add", "f.txt"), "inside the project")
    assert not (project.root / "f.txt.repro").exists()


@pytest.mark.parametrize("where", ["/proc/self/cache", "/dev/null", "/dev/null/cache", "/sys/x"])
def test_a_cache_on_no_disk_is_refused(project: Project, where: str) -> None:
    project.write("f.txt", "x")
    project.ok("config", "cache.dir", where)
    _one_line_error(project.repro("add", "f.txt"), "cache.dir")
    assert not (project.root / "f.txt.repro").exists()


def test_a_fifo_output_is_refused_without_hanging(project: Project) -> None:
    os.mkfifo(project.root / "pipe")
    _one_line_error(project.repro("add", "pipe"), "pipe", "fifo")


def test_a_stage_file_written_by_a_stage_is_moved_out_not_run(
    project: Project,
    docker_client: docker.DockerClient,
) -> None:
    """A stage with no network writes a stage file that would run with the host's network."""
    plant = (
        "mkdir -p .hidden && printf 'cmd: ip addr > net.txt\\nnetwork: host\\nimage:\\n  name: "
        + TEST_IMAGE
        + "\\nouts:\\n- path: ../net.txt\\n' > .hidden/p.repro && echo > a.txt"
    )
    result = project.repro("run", "-o", "a.txt", plant)
    _one_line_error(result, "wrote the stage file '.hidden/p.repro'", "fix its command")
    assert not (project.root / ".hidden" / "p.repro").exists()
    assert not (project.root / "a.txt.repro").exists()
    result = project.repro("repro")
    assert not (project.root / "net.txt").exists()
    planted = list((project.root / ".repro" / "tmp" / "planted").rglob("p.repro"))
    assert len(planted) == 1 and b"network: host" in planted[0].read_bytes()


@pytest.mark.parametrize("where", ["own", "hidden", "gitignore"])
def test_a_fifo_planted_by_a_stage_never_hangs_repro(
    project: Project,
    docker_client: docker.DockerClient,
    where: str,
) -> None:
    command = {
        "own": "echo > o; mkfifo s.repro",
        "hidden": "echo > o; mkdir -p hid; mkfifo hid/sub.repro",
        "gitignore": "mkdir -p d; echo > d/o; rm -f d/.gitignore; mkfifo d/.gitignore",
    }[where]
    out = "d/o" if where == "gitignore" else "o"
    result = project.repro("run", "-f", "s.repro", "-o", out, command)
    assert result.code == 1, result.err
    for args in (["status"], ["repro"], ["checkout"]):
        assert project.repro(*args).code in (0, 1)


@pytest.mark.parametrize("name", ["lock", "state.db", "tmp", "cache", "config.local", ""])
def test_a_symlink_in_repro_is_refused(project: Project, tmp_path: Path, name: str) -> None:
    """A clone that commits .repro/lock -> a victim file would have repro truncate it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text("precious")
    repro_dir = project.root / ".repro"
    if name:
        target = repro_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        target.symlink_to(victim / "file" if name in ("lock", "state.db") else victim)
    else:
        moved = tmp_path / "moved-repro"
        repro_dir.rename(moved)
        repro_dir.symlink_to(moved)
    project.write("f.txt", "x")
    for command in (["add", "f.txt"], ["status"], ["checkout"]):
        _one_line_error(project.repro(*command), "symlink")
    assert (victim / "file").read_text() == "precious"
    assert sorted(p.name for p in victim.iterdir()) == ["file"]


def test_tracked_per_machine_files_are_refused(project: Project) -> None:
    """Planted memos (a links ledger decides what checkout deletes) are never trusted."""
    tmp = project.root / ".repro" / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "parsed-stages").write_bytes(b"planted")
    project.git("add", "-f", ".repro/tmp/parsed-stages")
    _one_line_error(project.repro("status"), "tracks .repro/tmp/parsed-stages", "git rm")


@pytest.mark.parametrize("url", ["../.git/evil", "../data/store", "../"])
def test_a_folder_remote_inside_the_project_is_refused(project: Project, url: str) -> None:
    project.write("f.txt", "x")
    project.ok("add", "f.txt")
    project.ok("remote", "add", "-d", "r", "/tmp/placeholder")
    config = project.root / ".repro" / "config"
    config.write_text(config.read_text().replace("/tmp/placeholder", url))
    before = _snapshot(project.root / ".git")
    _one_line_error(project.repro("push"), "inside the project")
    assert _snapshot(project.root / ".git") == before
