"""Remotes as a user meets them: push, clone, pull -T, through the CLI, on every backend."""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import TEST_IMAGE, Project, cli, git, make_tree, on_terminal
from remotes.remote_helpers import Backend
from remotes.remote_servers import make_bucket

if TYPE_CHECKING:
    import docker

TAGS = ("0.1", "0.2", "0.3")


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def three_tags(project: Project, files: int = 60) -> dict[str, dict[str, str]]:
    """Data that grows over three tags; returns each tag's file digests.

    Hardlinks, so that unprotect gives each file a new inode: make_tree rewrites files in
    place with the same size and a restored mtime, which a copy (root's default) would hide
    from the (inode, mtime, size) memo (test_data.py's xfail says so)."""
    project.ok("config", "cache.type", "hardlink")
    expected = {}
    for number, tag in enumerate(TAGS, start=1):
        make_tree(project.root / "data", files * number, folders=3, size=512, seed=number)
        project.ok("add", "data")
        project.commit(f"data {tag}", tag=tag)
        expected[tag] = _digest_tree(project.root / "data")
        project.ok("unprotect", "data")
    return expected


def add_remote(project: Project, backend: Backend) -> None:
    project.ok("remote", "add", "-d", "store", backend.url)
    for key, value in backend.options.items():
        project.ok("remote", "modify", "store", key, value)
    project.commit("configure remote")


def test_fresh_clone_pulls_every_tag_byte_identical(project: Project, backend: Backend) -> None:
    expected = three_tags(project)
    add_remote(project, backend)
    result = project.ok("push", "-T")
    assert "Pushed" in result.out
    again = project.ok("push", "-T")
    assert "Pushed 0 objects" in again.out

    clone = project.root.parent / "clone"
    git(project.root.parent, "clone", "-q", str(project.root), str(clone))
    assert not (clone / "data").exists()
    pulled = cli(clone, "pull", "-T")
    assert pulled.code == 0, pulled.err
    for tag in TAGS:
        git(clone, "checkout", "-q", tag)
        done = cli(clone, "checkout")
        assert done.code == 0, done.err
        assert _digest_tree(clone / "data") == expected[tag], tag
    assert cli(clone, "fsck").code == 0
    branch = project.git("symbolic-ref", "--short", "HEAD").strip()
    git(clone, "checkout", "-q", branch)  # the tags predate the remote's configuration
    assert cli(clone, "checkout").code == 0
    assert cli(clone, "status", "-c").code == 0


def test_corrupt_remote_object_never_enters_the_cache(project: Project, backend: Backend) -> None:
    project.write("model.bin", "the real weights")
    project.ok("add", "model.bin")
    add_remote(project, backend)
    project.ok("push")
    md5 = hashlib.md5(b"the real weights").hexdigest()
    backend.write_raw(f"files/md5/{md5[:2]}/{md5[2:]}", b"the fake weights")  # same size
    shutil.rmtree(project.root / ".repro" / "cache")
    (project.root / "model.bin").unlink()
    result = project.repro("pull")
    assert result.code == 1
    assert md5 in result.err or md5 in result.out
    objects = [p for p in (project.root / ".repro/cache").rglob("*") if p.is_file()]
    assert objects == []
    assert not (project.root / "model.bin").exists()
    assert project.repro("fsck", "-r", "store").code == 1


def test_kill_9_during_push_leaves_no_partial_object(project: Project, backend: Backend) -> None:
    if backend.name == "s3":
        pytest.skip("S3 puts are atomic by protocol; the folder and ssh stores rename")
    make_tree(project.root / "data", 1500, folders=10, size=8192, seed=7)
    project.ok("add", "data")
    add_remote(project, backend)
    rng = random.Random(3)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "repro", "push", "-q"], cwd=project.root)
        time.sleep(rng.uniform(0.2, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = [
        n
        for n in backend.stored_names()
        if "/files/md5/" in "/" + n and not n.rsplit("/", 1)[-1].startswith(".")
    ]
    # Everything under a final name is whole: fsck -r downloads and hashes each one.
    assert cli(project.root, "fsck", "-r", "store").code == 0 or final == []
    result = cli(project.root, "push")
    assert result.code == 0, result.err
    assert cli(project.root, "status", "-c").code == 0
    assert cli(project.root, "fsck", "-r", "store").code == 0


@pytest.mark.docker
def test_images_travel_and_pinned_runs_the_same_id(
    project: Project, backend: Backend, docker_client: docker.DockerClient
) -> None:
    if backend.name != "local":
        pytest.skip("one backend is enough for the image path; the object path is shared")
    tag = "repro-test-travel:latest"
    docker_client.images.get(TEST_IMAGE).tag("repro-test-travel", "latest")
    project.ok("run", "--image", tag, "-o", "out.txt", "echo made > out.txt")
    image_id = docker_client.images.get(tag).id
    add_remote(project, backend)
    project.commit("stage")
    result = project.ok("push", "--images")
    assert "Pushed 1 image(s)" in result.out
    docker_client.images.remove(tag)
    docker_client.images.remove(TEST_IMAGE, force=True)
    try:
        assert docker_client.images.list(filters={"reference": tag}) == []
        clone = project.root.parent / "clone"
        git(project.root.parent, "clone", "-q", str(project.root), str(clone))
        pulled = cli(clone, "pull", "--images")
        assert pulled.code == 0, pulled.err
        assert docker_client.images.get(image_id).id == image_id
        (clone / "out.txt").unlink()
        again = cli(clone, "repro", "--pinned")
        assert again.code == 0, again.err
        assert (clone / "out.txt").read_text() == "made\n"
        assert f"id: {image_id}" in (clone / "out.txt.repro").read_text()
    finally:
        from helpers import build_busybox_image

        build_busybox_image(docker_client)


def test_remote_that_disappears_mid_push(project: Project, home: Path) -> None:
    """The S3 server goes away during a push: one clear line, exit 1, the cache intact, and a
    push to a store that is back completes."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = make_bucket(endpoint)
    make_tree(project.root / "data", 3000, folders=10, size=4096, seed=11)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", f"s3://{bucket}/p")
    project.ok("remote", "modify", "store", "endpointurl", endpoint)
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro", "push", "-q"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    server.stop()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert cli(project.root, "fsck").code == 0

    again = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    again.start()
    try:
        host, port = again.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = make_bucket(endpoint)
        project.ok("remote", "add", "-f", "-d", "store", f"s3://{bucket}/p")
        project.ok("remote", "modify", "store", "endpointurl", endpoint)
        result = cli(project.root, "push")
        assert result.code == 0, result.err
        assert cli(project.root, "status", "-c").code == 0
    finally:
        again.stop()


def test_many_objects_move_in_forked_workers_and_still_fail_one_by_one(
    project: Project, tmp_path: Path
) -> None:
    """A folder remote moves thousands of objects in forked workers: a corrupt object and a
    missing one are still reported by name, and every good object still lands."""
    make_tree(project.root / "data", 2400, folders=12, size=256, seed=11)
    project.ok("add", "data")
    remote = tmp_path / "store"
    project.ok("remote", "add", "-d", "store", str(remote))
    # A separate process, as a user runs it: no threads of the test run keep it from forking.
    pushed = cli(project.root, "push")
    assert pushed.code == 0, pushed.err
    assert "Pushed 2401 objects" in pushed.out
    objects = sorted(p for p in (remote / "files" / "md5").rglob("*") if p.is_file())
    assert len(objects) == 2401
    files = [p for p in objects if not p.name.endswith(".dir")]
    corrupt, gone = files[100], files[-100]  # in the first and in the last worker's share
    corrupt.chmod(0o644)
    corrupt.write_bytes(bytes(len(corrupt.read_bytes())))
    gone.unlink()

    shutil.rmtree(project.root / ".repro" / "cache")
    shutil.rmtree(project.root / "data")
    result = cli(project.root, "pull")
    assert result.code == 1
    said = result.out + result.err
    assert corrupt.parent.name + corrupt.name in said
    assert gone.parent.name + gone.name in said
    cached = {
        p.parent.name + p.name for p in (project.root / ".repro/cache").rglob("*") if p.is_file()
    }
    good = {p.parent.name + p.name for p in files} - {
        corrupt.parent.name + corrupt.name,
        gone.parent.name + gone.name,
    }
    assert cached == good  # every good object, nothing corrupt, no temp file
    assert project.repro("fsck").code == 0


def test_a_fetch_stopped_by_the_remote_leaves_no_pending_manifest(
    project: Project, tmp_path: Path
) -> None:
    make_tree(project.root / "data", 40, folders=2, size=128, seed=5)
    project.ok("add", "data")
    remote = tmp_path / "store"
    project.ok("remote", "add", "-d", "store", str(remote))
    project.ok("push")
    # One object becomes a folder: reading it fails on the remote's side, which stops the fetch.
    victim = next(
        p
        for p in sorted((remote / "files" / "md5").rglob("*"))
        if p.is_file() and not p.name.endswith(".dir")
    )
    victim.unlink()
    victim.mkdir()
    shutil.rmtree(project.root / ".repro" / "cache")
    result = project.repro("fetch")
    assert result.code == 1
    assert "Traceback" not in result.err
    leftovers = [
        p.name
        for p in (project.root / ".repro" / "cache").rglob("*")
        if p.name.startswith(".repro-")
    ]
    assert leftovers == []
    assert project.repro("fsck").code == 0


def test_push_and_pull_draw_a_bar_only_on_a_terminal(project: Project, tmp_path: Path) -> None:
    """On a terminal, push and pull show files moved, bytes and rates; piped, not a character of it
    (and with -q, nothing on the terminal either)."""
    make_tree(project.root / "data", 700, folders=7, size=2048, seed=5)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    code, screen = on_terminal(project.root, "push")
    assert code == 0, screen
    assert "push: 100%" in screen and "701/701" in screen, screen
    # Files and their rate, the time left, the bytes moved and their rate.
    assert "file/s" in screen and "<00:00" in screen and "MB " in screen, screen
    assert screen.count("B/s]") > 1, screen
    shutil.rmtree(project.root / ".repro" / "cache")
    shutil.rmtree(project.root / "data")
    piped = cli(project.root, "pull")
    assert piped.code == 0, piped.err
    assert "701/701" not in piped.out + piped.err and "fetch" not in piped.err
    shutil.rmtree(project.root / ".repro" / "cache")
    shutil.rmtree(project.root / "data")
    code, screen = on_terminal(project.root, "pull")
    assert code == 0, screen
    assert "fetch: 100%" in screen and "701/701" in screen, screen
    shutil.rmtree(project.root / ".repro" / "cache")
    shutil.rmtree(project.root / "data")
    code, screen = on_terminal(project.root, "pull", "-q")
    assert code == 0 and "701/701" not in screen, screen
