"""Property: whatever tree of symlinks, hardlinks and paths a cloned repository holds, no repro
command writes, deletes, chmods or mounts anything outside the project, nor inside .git or
.repro's config (issue 15, acceptance: the generated half of the path-safety tests)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import TypedDict

import pytest
from helpers import GIT_ENV, TEST_IMAGE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.cli import main
from repro.errors import ReproError
from repro.stages import stage as stage_mod
from repro.stages.stage import Out, Stage

FIGURES = {"examples": 0, "commands": 0, "refused": 0, "mount checks": 0}

# Where a planted link may point: the project's own secrets, the host, outside folders, and
# harmless places inside the project.
LINK_TARGETS = [
    ".git",
    ".git/objects",
    ".git/hooks",
    ".repro",
    ".repro/cache",
    "/var/run",
    "/etc",
    "OUTSIDE",
    "OUTSIDE/sub",
    "..",
    "../..",
    "inner",
    "inner/deep",
    ".",
    "gl",
    "dangling",
]
NAMES = ["gl", "lnk", "inner", "x", "sockdir", ".hidden"]
LEAVES = ["config", "objects", "docker.sock", "keep", "f.txt", "new", "HEAD", "passwd"]


class Tree(TypedDict):
    """What a hostile clone holds: links by name, hardlinks to a file outside, paths named by
    stage files; then the commands run on it, and the cache's link type."""

    links: dict[str, str]
    hardlinks: list[str]
    paths: list[str]
    commands: list[str]
    link_type: str


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    links = draw(st.dictionaries(st.sampled_from(NAMES), st.sampled_from(LINK_TARGETS), max_size=4))
    hardlinks = draw(st.lists(st.sampled_from(["inner/f.txt", "x", "new"]), max_size=2))
    paths = draw(
        st.lists(
            st.one_of(
                st.builds(lambda a, b: f"{a}/{b}", st.sampled_from(NAMES), st.sampled_from(LEAVES)),
                st.builds(
                    lambda a, b, c: f"{a}/{b}/{c}",
                    st.sampled_from(NAMES),
                    st.sampled_from(NAMES),
                    st.sampled_from(LEAVES),
                ),
                st.sampled_from(
                    [
                        "../x",
                        "/etc/passwd",
                        "a/../../x",
                        ".git/config",
                        "./gl/config",
                        "inner/f.txt",
                        "new",
                        "x",
                        "gl//config",
                        "OUTSIDE/keep",
                    ]
                ),
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    commands = draw(
        st.lists(
            st.sampled_from(
                [
                    "add",
                    "checkout",
                    "checkout-f",
                    "commit",
                    "remove",
                    "unprotect",
                    "status",
                    "mount",
                    "run-no-exec",
                ]
            ),
            min_size=1,
            max_size=4,
        )
    )
    link_type = draw(st.sampled_from(["hardlink", "copy"]))
    return {
        "links": links,
        "hardlinks": hardlinks,
        "paths": paths,
        "commands": commands,
        "link_type": link_type,
    }


def _snapshot(*folders: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry below ``folders`` (links not followed): mode, inode and bytes or target."""
    found: dict[str, tuple[int, int, bytes | str]] = {}
    for folder in folders:
        for dirpath, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = os.path.join(dirpath, name)
                st_ = os.lstat(path)
                if os.path.islink(path):
                    what: bytes | str = os.readlink(path)
                elif os.path.isfile(path):
                    what = Path(path).read_bytes()
                else:
                    what = ""
                found[path] = (st_.st_mode, st_.st_ino, what)
    return found


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    """An initialised project to copy for each example (git init and repro init are slow)."""
    base = Path(tempfile.mkdtemp(prefix="repro-prop-"))
    root = base / "proj"
    root.mkdir()
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run(
        [shutil.which("python3") or "python3", "-m", "repro", "init", "--image", TEST_IMAGE],
        cwd=root,
        check=True,
        env=env,
        capture_output=True,
    )
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _repro(root: Path, *args: str) -> int:
    old = os.getcwd()
    os.chdir(root)
    try:
        with redirect_stdout(StringIO()), redirect_stderr(StringIO()) as err:
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        os.chdir(old)
    assert code != 3, f"internal error for {args}: {err.getvalue()}"
    FIGURES["commands"] += 1
    if code:
        FIGURES["refused"] += 1
    return code


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=trees())
def test_no_command_touches_anything_outside_the_project(template: Path, tree: Tree) -> None:
    work = Path(tempfile.mkdtemp(prefix="repro-prop-"))
    try:
        _check_one(template, work, tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_one(template: Path, work: Path, tree: Tree) -> None:
    FIGURES["examples"] += 1
    root = work / "proj"
    shutil.copytree(template / "proj", root, symlinks=True)
    outside = work / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep").write_text("precious")
    (outside / "sub" / "config").write_text("outside config")
    (root / "inner" / "deep").mkdir(parents=True)
    (root / "inner" / "f.txt").write_text("inner")
    (root / "x").write_text("x")
    (root / ".repro" / "config").write_text(
        (root / ".repro" / "config").read_text() + f"[cache]\n\ttype = {tree['link_type']}\n"
    )
    for name, target in dict(tree["links"]).items():
        target = str(target).replace("OUTSIDE", str(outside))
        link = root / name
        if os.path.lexists(link):
            shutil.rmtree(link) if link.is_dir() and not link.is_symlink() else link.unlink()
        link.symlink_to(target)
    for rel in tree["hardlinks"]:
        source = outside / "keep"
        dest = root / str(rel)
        if os.path.lexists(dest) or not os.path.isdir(os.path.dirname(dest)):
            continue
        try:
            os.link(source, dest)  # shares its inode with a file outside
        except OSError:
            continue
    # A stage file naming every generated path, its object cached, as a hostile clone has.
    content = b"planted"
    md5 = hashlib.md5(content).hexdigest()
    obj = root / ".repro" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(content)
    obj.chmod(0o444)
    paths = list(tree["paths"])
    for index, rel in enumerate(paths):
        try:
            stage = Stage(path=f"s{index}.repro", outs=(Out(str(rel), md5),)).with_md5()
            stage_mod.write(root, stage)
        except (ReproError, OSError):
            continue
    before = _snapshot(outside, root / ".git")
    etc_before = {p: os.lstat(os.path.join("/etc", p)).st_mtime_ns for p in os.listdir("/etc")}
    run_before = set(os.listdir("/var/run"))
    config_before = (root / ".repro" / "config").read_bytes()
    outside_mode = os.stat(outside / "keep").st_mode
    for command in tree["commands"]:
        for rel in paths:
            rel = str(rel)
            if command == "add":
                _repro(root, "add", rel)
            elif command == "unprotect":
                _repro(root, "unprotect", rel)
            elif command == "run-no-exec":
                _repro(root, "run", "--no-exec", "-f", "r.repro", "--overwrite", "-o", rel, "true")
            elif command == "mount":
                _check_mount(root, rel)
        if command in ("checkout", "commit", "status"):
            _repro(root, command)
        elif command == "checkout-f":
            _repro(root, "checkout", "-f")
        elif command == "remove":
            for index in range(len(paths)):
                if (root / f"s{index}.repro").exists():
                    _repro(root, "remove", "--outs", f"s{index}.repro")
    assert _snapshot(outside, root / ".git") == before, "outside the project or .git changed"
    assert os.stat(outside / "keep").st_mode == outside_mode
    etc_after = {p: os.lstat(os.path.join("/etc", p)).st_mtime_ns for p in os.listdir("/etc")}
    assert etc_after == etc_before
    assert not ({*LEAVES} & (set(os.listdir("/var/run")) - run_before))
    assert (root / ".repro" / "config").read_bytes() == config_before
    assert not (root / ".repro" / "config.local").exists()


def _check_mount(root: Path, rel: str) -> None:
    """What the runner would bind-mount for a stage reading ``rel``: only real paths in the
    project (never a socket, device or FIFO, never through a link out of it)."""
    from repro.runners.docker.runner import mount_target

    FIGURES["mount checks"] += 1
    if rel.startswith("/") or ".." in rel.split("/"):
        return  # refused on its text before any runner sees it
    try:
        target = mount_target(root, root / os.path.normpath(rel))
    except ReproError:
        return
    if target is None:
        return
    real = os.path.realpath(target)
    base = os.path.realpath(root)
    assert real == base or real.startswith(base + os.sep), (rel, real)
    mode = os.lstat(real).st_mode
    assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), (rel, real)
