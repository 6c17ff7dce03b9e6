"""Bad input from a user, a stage file, a config file or a remote: refused in one line, with
nothing written (issue 15)."""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
from pathlib import Path

import pytest
from helpers import Project, Result, git
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.errors import ReproError
from repro.objects.digest import bytes_md5
from repro.objects.ids import manifest_id
from repro.objects.manifest import parse_manifest
from repro.runners.spec import Resources
from repro.stages import stage as stage_mod
from repro.workspace import gitignore

MD5 = "0123456789abcdef0123456789abcdef"


def _refused(result: Result, code: int, *fragments: str) -> None:
    """Exit ``code`` and exactly one line on stderr, an error that says what went wrong."""
    assert result.code == code, (result.code, result.err, result.out)
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _files(project: Project) -> dict[str, bytes]:
    """Every file of the workspace and the project's config and cache, with its bytes:
    what a refused command must leave as it was (scratch under .repro/tmp aside)."""
    found = {}
    for folder, dirs, names in os.walk(project.root):
        rel_folder = os.path.relpath(folder, project.root)
        dirs[:] = [d for d in dirs if os.path.join(rel_folder, d) not in ("./.git", "./.repro/tmp")]
        for name in names:
            rel = os.path.normpath(os.path.join(rel_folder, name))
            if rel.startswith(".repro/") and not rel.startswith((".repro/config", ".repro/cache")):
                continue  # the state db and lock: bookkeeping, not the user's
            found[rel] = Path(folder, name).read_bytes()
    return found


def _stage_file(project: Project, rel: str, text: str) -> None:
    project.write(rel, text)
    project.commit(f"hand-written {rel}")


RUN = ("run", "--no-exec")  # refusals come before any container; no engine needed


# -- 1. wdir ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stage_file", "wdir", "why"),
    [
        ("s.repro", "../../../etc", "leads outside the project"),
        ("s.repro", "..", "leads outside the project"),
        ("sub/s.repro", "../..", "leads outside the project"),
        ("s.repro", "sub/../../x", "leads outside the project"),
        ("s.repro", "/etc", "is absolute"),
        ("s.repro", ".git", "leads into .git/"),
        ("sub/s.repro", "../.repro/cache", "leads into .repro/"),
        ("s.repro", "", "wdir must be a non-empty string"),
    ],
)
def test_a_stage_file_wdir_outside_the_project_is_refused(
    project: Project, stage_file: str, wdir: str, why: str
) -> None:
    _stage_file(project, stage_file, f"cmd: cat /etc/passwd\nwdir: '{wdir}'\nimage:\n  name: img\n")
    for command in (("status",), ("repro", "--dry")):
        _refused(
            project.repro(*command),
            1,
            f"stage file '{stage_file}' is malformed: ",
            why,
            "restore it with git checkout",
        )


@pytest.mark.parametrize(
    ("stage_file", "wdir", "work_dir"),
    [("s.repro", ".", "."), ("sub/s.repro", "..", "."), ("sub/s.repro", "../code", "code")],
)
def test_a_wdir_inside_the_project_is_fine(stage_file: str, wdir: str, work_dir: str) -> None:
    stage = stage_mod.parse(stage_file, f"cmd: echo hi\nwdir: '{wdir}'\nimage:\n  name: img\n")
    assert stage.work_dir == work_dir


@pytest.mark.parametrize("wdir", ["../..", "/etc", ".git", ".repro/cache", "sub/../../x"])
def test_run_refuses_a_working_directory_outside_the_project(project: Project, wdir: str) -> None:
    before = _files(project)
    result = project.repro(*RUN, "-w", wdir, "-o", "out", "echo", "hi")
    _refused(result, 1)
    assert _files(project) == before


# -- 2. resources ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--memory", "lots"),
        ("--memory", "5m"),  # below the engine's 6m
        ("--memory", "1e3"),
        ("--memory", "-1g"),
        ("--memory", ""),
        ("--gpus", "abc"),
        ("--gpus", "0"),
        ("--gpus", "-1"),
        ("--gpus", "1.5"),
        ("--cpus", "nan"),
        ("--cpus", "inf"),
        ("--cpus", "0"),
        ("--cpus", "-1"),
        ("--cpus", "0.001"),
        ("--cpus", "abc"),
    ],
)
def test_run_refuses_resources_docker_would_not_take(
    project: Project, option: str, value: str
) -> None:
    before = _files(project)
    _refused(project.repro(*RUN, "-o", "out", f"{option}={value}", "echo", "hi"), 2, option)
    assert _files(project) == before


def test_run_keeps_resources_docker_takes(project: Project) -> None:
    project.ok(*RUN, "-o", "out", "--memory", "1.5g", "--gpus", "all", "--cpus", "0.5", "echo")
    stage = stage_mod.load(project.root, "out.repro")
    assert stage.resources == Resources(0.5, "1.5g", "all")
    for memory in ("512m", "2g", "2GB", "8192k", "1073741824"):
        project.ok(*RUN, "-f", "m.repro", "--overwrite", "--memory", memory, "echo")
        assert stage_mod.load(project.root, "m.repro").resources.memory == memory


@pytest.mark.parametrize(
    "resources",
    [
        "memory: lots",
        "memory: true",
        "memory: 1024",  # bytes, but fewer than 6m
        "gpus: abc",
        "gpus: 0",
        "gpus: true",
        "cpus: .nan",
        "cpus: .inf",
        "cpus: 0",
        "cpus: -1",
        "cpus: true",
        "cpus: [1]",
        "disk: 1g",
    ],
)
def test_a_stage_file_with_bad_resources_is_refused(project: Project, resources: str) -> None:
    text = f"cmd: echo hi\nimage:\n  name: img\nresources:\n  {resources}\n"
    _stage_file(project, "s.repro", text)
    _refused(project.repro("status"), 1, "stage file 's.repro' is malformed: ", "resources.")


def test_a_stage_file_with_numbers_docker_takes_loads() -> None:
    text = "cmd: echo\nimage: {name: img}\nresources: {cpus: 2, memory: 1073741824, gpus: 1}\n"
    assert stage_mod.parse("s.repro", text).resources == Resources(2.0, "1073741824", "1")


# -- 3. not UTF-8 ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["config", "config.local"])
def test_a_config_file_that_is_not_utf8_is_named(project: Project, name: str) -> None:
    config = project.root / ".repro" / name
    config.write_bytes(b"[core]\n\timage = caf\xe9\n")
    before = _files(project)
    for command in (("checkout",), ("config", "core.image"), ("config", "core.image", "other")):
        _refused(project.repro(*command), 1, str(config), "not valid UTF-8", "fix it")
    assert _files(project) == before


def test_a_config_value_that_is_not_one_utf8_line_is_refused(project: Project) -> None:
    before = _files(project)
    for value in (os.fsdecode(b"caf\xe9"), "two\nlines", "cr\rhere"):
        _refused(project.repro("config", "core.image", value), 1, "core.image")
    assert _files(project) == before


NOT_UTF8 = os.fsdecode(b"caf\xe9.csv")  # what argv holds for a Latin-1 name on Linux


@pytest.mark.parametrize("option", ["-o", "-O", "-M", "-d", "-f"])
def test_run_refuses_a_name_that_is_not_utf8(project: Project, option: str) -> None:
    (project.root / NOT_UTF8).write_bytes(b"x")  # a real file
    before = _files(project)
    result = project.repro(*RUN, "-o", "out", option, NOT_UTF8, "echo", "hi")
    _refused(result, 1, "caf\\xe9.csv", "not valid UTF-8; rename it")
    assert _files(project) == before


def test_run_refuses_a_command_that_is_not_utf8(project: Project) -> None:
    before = _files(project)
    _refused(project.repro(*RUN, "-o", "out", "echo", NOT_UTF8), 1, "not valid UTF-8")
    assert _files(project) == before


def test_add_refuses_a_name_that_is_not_utf8(project: Project) -> None:
    data = project.root / NOT_UTF8
    assert os.fsencode(data) == os.fsencode(project.root) + b"/caf\xe9.csv"
    data.write_bytes(b"1,2\n")
    result = project.repro("add", NOT_UTF8)
    _refused(result, 1, "caf\\xe9.csv", "not valid UTF-8; rename it")
    assert sorted(os.listdir(os.fsencode(project.root))) == sorted(
        [b".git", b".repro", b"caf\xe9.csv"]
    )  # no stage file, no .gitignore
    assert data.read_bytes() == b"1,2\n"


# -- 4. long names ---------------------------------------------------------------------------
@pytest.mark.parametrize("cached_before", [False, True])
def test_a_230_byte_name_is_added_and_checked_out(project: Project, cached_before: bool) -> None:
    name = "é" * 100 + "x" * 30  # 230 bytes, 130 characters: the limit is on bytes
    assert len(name.encode()) == 230
    if cached_before:
        project.write("same.txt", "content\n")
        project.ok("add", "same.txt")
    project.write(name, "content\n")
    project.ok("add", name)
    assert (project.root / ".gitignore").read_text().splitlines()[-1] == f"/{name}"
    (project.root / name).unlink()
    project.ok("checkout")
    assert (project.root / name).read_text() == "content\n"
    project.ok("unprotect", name)  # a private copy: made beside it under a temp name too
    assert (project.root / name).read_text() == "content\n"
    assert [p for p in os.listdir(project.root) if p.endswith(".tmp")] == []


@pytest.mark.parametrize("cached_before", [False, True])
def test_a_250_byte_name_cannot_have_a_stage_file(project: Project, cached_before: bool) -> None:
    name = "y" * 250  # name.repro would be 256 bytes
    if cached_before:
        project.write("same.txt", "content\n")
        project.ok("add", "same.txt")
    project.write(name, "content\n")
    result = project.repro("add", name)
    _refused(result, 1, "longer than 255 bytes", "rename it")
    assert (
        not (project.root / ".gitignore").exists()
        or name not in (project.root / ".gitignore").read_text()
    )
    assert (project.root / name).read_text() == "content\n"
    assert [p for p in os.listdir(project.root) if p.startswith(f"{name}.")] == []


def test_temp_names_fit_and_stay_hidden_and_unique() -> None:
    from repro.fsutil import NAME_MAX, tmp_name

    for name in ("a", "b" * 200, "c" * 255, "é" * 127, os.fsdecode(b"\xff" * 255)):
        made = {tmp_name(Path("/x") / name).name for _ in range(50)}
        assert len(made) == 50
        for tmp in made:
            assert tmp.startswith(".") and tmp.endswith(".tmp")
            assert len(os.fsencode(tmp)) <= NAME_MAX


# -- 5. manifests ----------------------------------------------------------------------------
def _manifest(rels: list[str]) -> bytes:
    return json.dumps([{"md5": MD5, "relpath": rel} for rel in rels]).encode()


def _parse(data: bytes) -> list[tuple[str, str]]:
    """parse_manifest of bytes under their own id: only the entries are judged."""
    return parse_manifest(data, manifest_id(bytes_md5(data)), "m")


@pytest.mark.parametrize(
    ("rels", "culprit"),
    [
        (["a", "b", "a"], "'a' (listed twice)"),
        (["a", "a/b"], "'a' (both a file and a folder)"),
        (["a", "a-b", "a.c", "a/b"], "'a' (both a file and a folder)"),  # not adjacent
        (["x/a", "x/a/b/c"], "'x/a' (both a file and a folder)"),
        (["."], "'.'"),
        (["x/."], "'x/.'"),
        (["a/", "b"], "'a/'"),
        (["./a"], "'./a'"),
        (["x//a"], "'x//a'"),
        (["a/./b"], "'a/./b'"),
        (["a/../b"], "'a/../b'"),
        (["ok", ""], "''"),
        (["/etc/passwd"], "'/etc/passwd'"),
        (["a\0b"], "'a\\x00b'"),
    ],
)
def test_a_manifest_entry_that_is_not_one_canonical_path_is_refused(
    rels: list[str], culprit: str
) -> None:
    with pytest.raises(ReproError) as caught:
        _parse(_manifest(rels))
    assert f"has a bad entry {culprit}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_manifest_of_dvc_order_is_fine() -> None:
    # DVC sorts by path parts, not by string: a/b before a-b. Both orders are fine.
    rels = ["a/b", "a-b", "a.c", "b/c/d", "b/c/e", ".hidden", "x/..y", "x/y.."]
    assert [rel for rel, _md5 in _parse(_manifest(rels))] == rels


def _canonical_and_apart(rels: list[str]) -> bool:
    """The rule, spelled out the slow way."""
    for rel in rels:
        if not rel or "\0" in rel or rel.startswith("/") or posixpath.normpath(rel) != rel:
            return False
        if rel in (".", "..") or rel.startswith("../"):
            return False
    if len(set(rels)) != len(rels):
        return False
    return not any(other.startswith(rel + "/") for rel in rels for other in rels)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.text(alphabet="ab./-\0", max_size=7), max_size=6))
def test_manifest_relpaths_follow_the_rule(rels: list[str]) -> None:
    try:
        _parse(_manifest(rels))
    except ReproError as exc:
        assert not _canonical_and_apart(rels)
        assert "has a bad entry '" in str(exc)  # a culprit is always named
    else:
        assert _canonical_and_apart(rels)


def test_checkout_refuses_a_manifest_whose_entries_clash(project: Project) -> None:
    data = _manifest(["a", "a/b"])
    import hashlib

    oid = hashlib.md5(data).hexdigest()
    obj = project.root / ".repro" / "cache" / "files" / "md5" / oid[:2] / f"{oid[2:]}.dir"
    obj.parent.mkdir(parents=True)
    obj.write_bytes(data)
    _stage_file(project, "data.repro", f"outs:\n- path: data\n  md5: {oid}.dir\n  cache: true\n")
    _refused(project.repro("checkout"), 1, "has a bad entry 'a' (both a file and a folder)")
    assert not (project.root / "data").exists()


# -- 6. names with line breaks, and gitignore patterns ---------------------------------------
@pytest.mark.parametrize("name", ["two\nlines", "cr\rhere", "end\n"])
def test_run_refuses_an_output_with_a_line_break(project: Project, name: str) -> None:
    before = _files(project)
    _refused(project.repro(*RUN, "-o", name, "echo", "hi"), 1, "line break", "rename it")
    assert _files(project) == before


@pytest.mark.parametrize("name", ["two\nlines", "cr\rhere"])
def test_add_refuses_a_name_with_a_line_break(project: Project, name: str) -> None:
    project.write(name, "x")
    _refused(project.repro("add", name), 1, "line break", "rename it")
    assert not (project.root / f"{name}.repro").exists()
    assert not (project.root / ".gitignore").exists()


ODD_NAMES = ["#hash", "!bang", "a*b", "a?b", "[ab]", "back\\slash", "trail ", "two  ", "**"]


def test_each_gitignore_line_ignores_exactly_its_name(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    decoys = ["aXb", "a", "b", "axb", "trail", "two", "two ", "backslash", "hash", "x"]
    for name in ODD_NAMES + decoys:
        (tmp_path / "sub" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "sub" / name).write_text(name)
    for name in ODD_NAMES:
        assert gitignore.add(tmp_path, f"sub/{name}")
        assert not gitignore.add(tmp_path, f"sub/{name}")  # once
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "-z", "--stdin"],
        cwd=tmp_path,
        input="\0".join(f"sub/{name}" for name in ODD_NAMES + decoys),
        capture_output=True,
        text=True,
    )
    ignored = sorted(path[4:] for path in checked.stdout.split("\0") if path)
    assert ignored == sorted(ODD_NAMES)
    for name in ODD_NAMES:
        assert gitignore.remove(tmp_path, f"sub/{name}")
    assert not (tmp_path / "sub" / ".gitignore").exists()


def test_add_ignores_an_odd_name_and_nothing_else(project: Project) -> None:
    for name in ("a*b", "aXb"):
        project.write(name, name)
    project.ok("add", "a*b")
    assert project.git("check-ignore", "a*b").strip() == "a*b"
    assert project.git("status", "--porcelain", "--untracked-files=all").count("aXb") == 1


# -- 7. repro run's options after the command ------------------------------------------------
@pytest.mark.parametrize(
    ("words", "option"),
    [
        (["echo", "hi", "-d", "dep"], "-d"),
        (["echo", "hi", "-o", "x"], "-o"),
        (["python", "t.py", "-M", "m.json"], "-M"),
        (["echo", "-f", "x.repro"], "-f"),
        (["echo", "--image", "other"], "--image"),
        (["echo", "--image=other"], "--image"),
        (["echo", "--network=host"], "--network"),
        (["echo", "--no-exec"], "--no-exec"),
        (["echo", "--overwrite"], "--overwrite"),
        (["echo", "-w", "sub"], "-w"),
        (["echo", "--cpus=3"], "--cpus"),
    ],
)
def test_an_option_of_run_after_the_command_is_refused(
    project: Project, words: list[str], option: str
) -> None:
    before = _files(project)
    result = project.repro("run", "--no-exec", "-o", "out", *words)
    _refused(result, 2, f"option '{option}' comes after the command", "'--' before the command")
    assert _files(project) == before


@pytest.mark.parametrize(
    ("words", "cmd"),
    [
        (["--", "mytool", "-d", "x"], "mytool -d x"),
        (["--", "echo", "--image=x", "-o", "y"], "echo --image=x -o y"),
        (["echo", "-v", "-q", "-h", "--dep"], "echo -v -q -h --dep"),  # not run's own
        (["sh", "-c", "tool -d x"], "sh -c tool -d x"),  # one word
        (["tool", "--", "-x"], "tool -- -x"),
    ],
)
def test_a_command_keeps_its_own_options(project: Project, words: list[str], cmd: str) -> None:
    project.ok("run", "--no-exec", "-o", "out", "--overwrite", *words)
    stage = stage_mod.load(project.root, "out.repro")
    assert stage.cmd == cmd
    assert stage.deps == ()
