"""Issue 17, a newcomer's first day: what a user meets, run as the user meets it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TEST_IMAGE, Project, build_busybox_image, cli, git, make_tree

from repro.remote_select import NO_REMOTE

if TYPE_CHECKING:
    import docker

LONG_CMD = "sh -c 'echo " + "a rather long line of words " * 5 + "> out.txt'"


def _clone(project: Project, name: str = "clone") -> Path:
    clone = project.root.parent / name
    git(project.root.parent, "clone", "-q", str(project.root), str(clone))
    return clone


# -- 2: -q and -v before the command ---------------------------------------------------------
def test_quiet_and_verbose_before_the_command(project: Project) -> None:
    project.write("data/a", "a\n")
    project.ok("add", "data")
    assert project.ok("repro").out != ""
    assert project.ok("-q", "repro").out == ""
    assert project.ok("repro", "-q").out == ""
    verbose = project.repro("-v", "repro", "nosuch")
    assert verbose.code == 1 and "Traceback" in verbose.err
    assert "Traceback" not in project.repro("repro", "nosuch").err
    both = project.repro("-q", "repro", "-v")
    assert both.code == 2 and "not allowed with" in both.err


def test_quiet_status_before_the_command_is_still_answered_quickly(project: Project) -> None:
    project.ok("config", "cache.type", "hardlink")  # settled files, as in test_status_memo
    make_tree(project.root / "data", 4)
    project.ok("add", "data")
    project.ok("status")  # leaves the memo behind
    probe = (
        "import sys; from repro.cli import main; code = main(['-q', 'status']); "
        "print(code, 'argparse' in sys.modules, 'repro.stages.stage' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project.root, capture_output=True, text=True, check=True
    )
    assert done.stdout == "0 False False\n"


# -- 3: a hand-written stage file without image: ------------------------------------------------
@pytest.mark.docker
def test_hand_written_stage_without_image_runs_in_core_image(docker_project: Project) -> None:
    project = docker_project
    project.write("in.txt", "hello\n")
    project.write(
        "copy.repro", "cmd: cp in.txt out.txt\ndeps:\n- path: in.txt\nouts:\n- path: out.txt\n"
    )
    result = project.ok("repro", "copy")
    assert (project.root / "out.txt").read_text() == "hello\n"
    text = (project.root / "copy.repro").read_text()
    assert f"name: {TEST_IMAGE}" in text and "id: sha256:" in text
    assert "git add copy.repro" in result.out


def test_stage_without_image_and_no_default_says_what_works(project: Project) -> None:
    project.ok("config", "--unset", "core.image")
    project.write("copy.repro", "cmd: cp in.txt out.txt\nouts:\n- path: out.txt\n")
    result = project.repro("repro")
    assert result.code == 1
    assert "image: {name: NAME}" in result.err and "repro config core.image NAME" in result.err
    assert "--image" not in result.err  # repro repro has no such option
    assert len(result.err.strip().splitlines()) == 1


# -- 4: hand-written stage files keep their text ---------------------------------------------
@pytest.mark.docker
def test_hand_written_stage_keeps_long_lines_order_and_comments(docker_project: Project) -> None:
    project = docker_project
    project.write("in.txt", "x\n")
    hand = (
        "# makes out.txt\n"
        "outs:\n"
        "- path: out.txt   # the result\n"
        f"cmd: {LONG_CMD}\n"
        "deps:\n"
        "- path: in.txt\n"
    )
    project.write("long.repro", hand)
    project.ok("repro", "long.repro")
    text = (project.root / "long.repro").read_text()
    lines = text.splitlines()
    assert f"cmd: {LONG_CMD}" in lines  # not folded at 80 columns
    assert lines[:3] == ["# makes out.txt", "outs:", "- path: out.txt   # the result"]
    assert [line.split(":")[0] for line in lines if not line.startswith((" ", "-", "#"))] == [
        "outs",
        "cmd",
        "image",
        "deps",
        "md5",
        "source_date_epoch",
    ]
    again = project.ok("repro", "-f", "long.repro")
    assert (project.root / "long.repro").read_text() == text
    assert "git add" not in again.out  # 8b: nothing changed for git


def test_stage_files_repro_writes_keep_long_commands_whole(project: Project) -> None:
    project.ok("run", "--no-exec", "-o", "out.txt", LONG_CMD)
    text = (project.root / "out.txt.repro").read_text()
    assert text.splitlines()[0] == f"cmd: {LONG_CMD}"
    assert text.index("cmd:") < text.index("image:") < text.index("outs:")


# -- 7: old tags and a remote added later ------------------------------------------------------
def _tagged_then_remote(project: Project, store: Path) -> None:
    project.write("data/a", "one\n")
    project.ok("add", "data")
    project.commit("data 0.1", tag="0.1")
    project.ok("remote", "add", "-d", "store", str(store))
    project.commit("add the remote")
    project.ok("push", "-T")


def test_old_tag_fetches_from_the_remote_of_the_branch_it_came_from(project: Project) -> None:
    store = project.root.parent / "store"
    _tagged_then_remote(project, store)
    clone = _clone(project)
    git(clone, "checkout", "-q", "0.1")
    fetched = cli(clone, "fetch", "-T")
    assert fetched.code == 0, fetched.err
    assert "using remote 'store' from the config of the previous checkout" in fetched.err
    pulled = cli(clone, "pull")
    assert pulled.code == 0, pulled.err
    assert (clone / "data" / "a").read_text() == "one\n"


def test_remote_as_url_or_folder_and_local_remote_for_every_revision(project: Project) -> None:
    store = project.root.parent / "store"
    _tagged_then_remote(project, store)
    clone = _clone(project)
    git(clone, "checkout", "-q", "--detach", "0.1")
    git(clone, "branch", "-q", "-D", "main")  # no branch left to borrow a remote from
    git(clone, "remote", "remove", "origin")
    alone = cli(clone, "fetch")
    assert alone.code == 1 and alone.err == f"error: {NO_REMOTE}\n"
    for where in (str(store), "../store", f"file://{store}"):
        got = cli(clone, "fetch", "-r", where)
        assert got.code == 0, (where, got.err)
    assert cli(clone, "status", "-c", "-r", "../store").code == 0
    assert cli(clone, "fsck", "-r", str(store)).code == 0
    assert cli(clone, "remote", "add", "--local", "-d", "mine", str(store)).code == 0
    assert cli(clone, "pull").code == 0
    assert (clone / "data" / "a").read_text() == "one\n"
    assert cli(clone, "fetch", "-r", "nosuch").err.startswith("error: no remote named 'nosuch'")


# -- 8: messages ---------------------------------------------------------------------------------
def test_pull_into_a_fresh_clone_shows_added_and_repro_there_suggests_pull(
    project: Project,
) -> None:
    store = project.root.parent / "store"
    _tagged_then_remote(project, store)
    clone = _clone(project)
    before = cli(clone, "repro")
    assert before.code == 1
    assert before.err == (
        "error: output 'data' is tracked by 'data.repro' but neither in the workspace nor in the "
        "cache; run 'repro pull' to fetch it\n"
    )
    pulled = cli(clone, "pull")
    assert pulled.code == 0, pulled.err
    assert "A\tdata" in pulled.out.splitlines() and "M\tdata" not in pulled.out


def test_large_folder_is_announced_only_when_first_hashed(project: Project) -> None:
    make_tree(project.root / "data", 250, folders=2, seed=1)
    first = project.ok("add", "data")
    assert "Computing md5 for a large directory data" in first.err + first.out
    project.commit("v1", tag="v1")
    project.ok("unprotect", "data")
    make_tree(project.root / "data", 250, folders=2, seed=2)
    project.ok("add", "data")
    project.commit("v2")
    for rev in ("v1", "main", "v1"):
        project.git("checkout", "-q", rev)
        shown = project.ok("checkout")
        assert "Computing md5" not in shown.out + shown.err
        status = project.ok("status")
        assert "Computing md5" not in status.out + status.err


@pytest.mark.docker
def test_pull_images_tags_the_recorded_name(
    project: Project, backend_free_store: Path, docker_client: docker.DockerClient
) -> None:
    name = f"repro-test-newcomer-{uuid.uuid4().hex[:8]}:v1"
    image_id = build_busybox_image(docker_client, name)
    taken = f"repro-test-newcomer-{uuid.uuid4().hex[:8]}:taken"
    try:
        project.ok("run", "--image", name, "-o", "out.txt", "echo made > out.txt")
        project.ok("remote", "add", "-d", "store", str(backend_free_store))
        project.commit("stage")
        project.ok("push", "--images")
        docker_client.images.remove(image_id, force=True)
        clone = _clone(project)
        pulled = cli(clone, "pull", "--images")
        assert pulled.code == 0, pulled.err
        assert docker_client.images.get(name).id == image_id  # docker run NAME works again
        # A name that points at another image is the user's: never moved.
        text = (clone / "out.txt.repro").read_text().replace(name, taken)
        (clone / "out.txt.repro").write_text(text)
        docker_client.images.get(TEST_IMAGE).tag(*taken.split(":"))
        assert cli(clone, "fetch", "--images").code == 0
        assert docker_client.images.get(taken).id != image_id
    finally:
        for ref in (name, taken):
            with contextlib.suppress(Exception):
                docker_client.images.remove(ref, force=True)


@pytest.fixture
def backend_free_store(tmp_path: Path) -> Path:
    return tmp_path / "store"


# -- 10: stage names as targets ------------------------------------------------------------------
def test_stage_name_without_suffix_is_a_target(project: Project) -> None:
    project.write("raw/a", "a\n")
    project.ok("add", "raw")
    project.write("sub/more/b", "b\n")
    project.ok("add", "sub/more")
    assert project.ok("repro", "raw").out.startswith("Stage 'raw.repro' didn't change.")
    assert project.ok("status", "sub/more").code == 0
    assert project.ok("checkout", "raw").code == 0
    assert project.ok("pipeline", "show", "raw").code == 0
    missing = project.repro("repro", "train")
    assert missing.code == 1 and "'train' is neither a stage file nor an output" in missing.err
