"""Bit for bit anywhere: stages run in one canonical environment, whoever runs them and
wherever the project lives, and ``repro repro --check`` names what a re-run makes otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Project, git
from test_pipeline import _run_as
from test_signals import _wait_until

from repro.pipeline import runcache
from repro.runners.spec import Image
from repro.stages.deps.file import FileDep
from repro.stages.stage import Out, Stage

# What a stage could learn of where and by whom it runs; the canonical environment fixes each.
FACTS = (
    'echo "$HOME"; hostname; pwd; id -un; id -gn; date +%Z; umask; echo "FOO=${FOO-unset}"; '
    "touch $HOME/written && echo home-writable"
)
# busybox's date has no %N: the kernel's fresh uuid stands in for a stage that reads the clock.
UNSTABLE = "cat /proc/sys/kernel/random/uuid"
SCRATCH = ".repro/tmp/check"


@pytest.fixture
def other_place() -> Iterator[Path]:
    """A folder other users can reach, at another path than the project's."""
    folder = Path(tempfile.mkdtemp(prefix="repro-elsewhere-", dir="/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file and link under ``root``, the hash memo included (the check's scratch and the
    lock aside): bytes, mode, mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_folder, d)) != SCRATCH]
        for name in [*files, *dirs]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if rel == ".repro/lock":
                continue
            data = b"" if not os.path.isfile(path) else Path(path).read_bytes()
            found[rel] = (data, st.st_mode, st.st_mtime_ns if not os.path.isdir(path) else 0)
    return found


def test_two_clones_run_by_root_and_by_a_user_make_the_same_bytes(
    public_project: Project,
    other_place: Path,
    docker_client: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOO", "from the caller")
    project = public_project
    project.ok("run", "-o", "facts.txt", f"{{ {FACTS}; }} > facts.txt")
    project.commit("facts")
    made_by_root = (project.root / "facts.txt").read_bytes()
    assert made_by_root.decode().splitlines() == [
        "/home/repro",
        "repro",
        "/project",
        "repro",
        "repro",
        "UTC",
        "0022",
        "FOO=unset",
        "home-writable",
    ]

    clone = other_place / "clone"
    git(other_place, "clone", "-q", str(project.root), str(clone))
    home = other_place / "home"
    home.mkdir()
    uid = 4242
    for path in [other_place, *other_place.rglob("*")]:
        os.lchown(path, uid, uid)
    monkeypatch.setenv("HOME", str(home))
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    code = _run_as(uid, uid, socket_gid, clone, ["repro", "--pinned", "-f", "facts.txt.repro"])
    assert code == 0
    assert (clone / "facts.txt").stat().st_uid == uid  # files stay the caller's
    assert (clone / "facts.txt").read_bytes() == made_by_root
    # the recorded md5 came out again (root reads a repository the user owns)
    assert git(clone, "-c", f"safe.directory={clone}", "status", "--porcelain") == ""


def test_check_names_the_file_the_line_and_the_member_that_differ(
    docker_project: Project,
) -> None:
    """An input the stage does not declare (``choice``) stands in for any nondeterminism."""
    project = docker_project
    project.write("choice", "a\n")
    project.write("lines/a", "one\ntwo\nthree\n")
    project.write("lines/b", "one\nTWO\nthree\n")
    for name in ("a", "b"):
        with _new_zip(project.root / f"zips/{name}.zip") as archive:
            archive.writestr("model/weights", b"same")
            archive.writestr("model/code/train.py", f"# built at {name}\n")
    project.ok("run", "-o", "text.txt", 'cp "lines/$(cat choice)" text.txt')
    project.ok("run", "-o", "model.zip", 'cp "zips/$(cat choice).zip" model.zip')
    project.ok(
        "run", "-o", "folder", "mkdir folder && echo same > folder/same && cp choice folder/"
    )
    project.commit("three stages")
    assert project.ok("repro", "--pinned", "--check").code == 0

    project.write("choice", "b\n")
    result = project.repro("repro", "--pinned", "--check")
    assert result.code == 1
    assert "'text.txt' of 'text.txt.repro' differs" in result.out
    assert "line 2: 'two' became 'TWO'" in result.out
    assert "member" in result.out and "'model/code/train.py' differs" in result.out
    assert "'model/weights'" not in result.out
    assert "files 'choice' differs" in result.out and "'same'" not in result.out
    assert result.err.strip().splitlines() == [
        "error: not reproducible: folder, model.zip, text.txt came out other than recorded; "
        "see 'Reproducing a result exactly' in the README"
    ]


def _new_zip(path: Path) -> zipfile.ZipFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    return zipfile.ZipFile(path, "w")


def test_check_never_reads_through_what_the_stage_made_instead_of_its_output(
    docker_project: Project,
) -> None:
    """A check's stage may leave a symlink to a host file, or a fifo, where its output was:
    the check names what it found, and reads neither (no host bytes in the log, no hang)."""
    project = docker_project
    project.write("choice", "file\n")
    project.ok(
        "run",
        "-o",
        "out.txt",
        'case "$(cat choice)" in link) ln -s /etc/hostname out.txt;; '
        "fifo) mkfifo out.txt;; *) echo made > out.txt;; esac",
    )
    project.commit("a stage")
    project.write("choice", "link\n")
    result = project.repro("repro", "--pinned", "--check")
    assert result.code == 1
    assert "is a symlink now (to /etc/hostname)" in result.out
    assert Path("/etc/hostname").read_text().strip() not in result.out + result.err
    project.write("choice", "fifo\n")
    result = project.repro("repro", "--pinned", "--check")
    assert result.code == 1 and "fifo, socket or device" in result.out


def test_check_flags_an_unstable_stage_and_changes_nothing(docker_project: Project) -> None:
    project = docker_project
    project.ok("run", "-o", "stamp.txt", f"{UNSTABLE} > stamp.txt")
    project.ok("run", "-d", "stamp.txt", "-M", "m.json", "echo '{\"n\": 1}' > m.json")
    project.commit("an unstable stage")
    before = _snapshot(project.root)
    result = project.repro("repro", "--pinned", "--check", "-j", "2")
    assert result.code == 1
    assert "Output 'stamp.txt' of 'stamp.txt.repro' differs" in result.out
    assert "Stage 'm.json.repro' made its outputs exactly as recorded." in result.out
    assert "stamp.txt came out other than recorded" in result.err
    assert _snapshot(project.root) == before
    assert os.listdir(project.root / SCRATCH) == []


def test_a_stage_stamping_the_date_makes_its_bytes_again_after_the_commit(
    docker_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SOURCE_DATE_EPOCH is HEAD's time when a stage runs, and it runs before the commit that
    records it: the value is recorded, so a forced re-run, a check and the run-cache give the
    stage the time it first had, and only a change of its inputs gives it a new one."""
    project = docker_project
    project.write("in.txt", "1\n")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    project.commit("the input")
    stamp = "echo $SOURCE_DATE_EPOCH > stamp.txt; cat in.txt >> stamp.txt"
    project.ok("run", "-d", "in.txt", "-o", "stamp.txt", stamp)
    assert (project.root / "stamp.txt").read_text() == "1700000000\n1\n"
    assert "source_date_epoch: 1700000000\n" in (project.root / "stamp.txt.repro").read_text()
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1800000000 +0000")
    project.commit("the stamp")

    project.ok("repro", "-f", "--pinned")
    assert project.git("status", "--porcelain") == ""
    assert project.repro("repro", "--pinned", "--check").code == 0

    project.write("in.txt", "2\n")
    project.ok("repro", "--pinned")
    assert (project.root / "stamp.txt").read_text() == "1800000000\n2\n"
    project.write("in.txt", "1\n")
    assert "Restored 'stamp.txt.repro' from the run-cache" in project.ok("repro", "--pinned").out
    assert project.git("status", "--porcelain") == ""  # the first run's time came back with it


def test_check_stops_at_what_is_out_of_date(docker_project: Project) -> None:
    project = docker_project
    project.write("in.txt", "1\n")
    project.ok("run", "-d", "in.txt", "-o", "a.txt", "cp in.txt a.txt")
    project.ok("run", "-d", "a.txt", "-o", "b.txt", "cp a.txt b.txt")
    project.write("in.txt", "2\n")
    result = project.repro("repro", "--pinned", "--check", "b.txt.repro")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "error: cannot check 'a.txt.repro': Dependency 'in.txt' of 'a.txt.repro' changed; "
        "reproduce it first ('repro repro a.txt.repro'), commit the result, then check"
    ]
    assert (project.root / "b.txt").read_text() == "1\n"
    assert project.repro("repro", "--pinned", "--check", "--dry").code == 2


def test_ctrl_c_during_a_check_leaves_the_project_as_it_was(
    docker_project: Project, docker_client: object
) -> None:
    project = docker_project
    project.ok("run", "-o", "out.txt", "echo done > out.txt")
    project.commit("a stage")
    project.write(
        "out.txt.repro",
        (project.root / "out.txt.repro")
        .read_text()
        .replace("echo done > out.txt", "sleep 30; echo done > out.txt"),
    )
    project.ok("commit", "-f", "out.txt.repro")  # recorded as is: up to date, a slow command
    project.commit("slow")
    before = _snapshot(project.root)
    check = [sys.executable, "-m", "repro", "repro", "--pinned", "--check"]
    proc = subprocess.Popen(check, cwd=project.root, stderr=subprocess.PIPE, text=True)
    label = {"label": f"repro.project={project.root}"}
    _wait_until(
        lambda: docker_client.containers.list(filters=label),  # type: ignore[attr-defined]
        60,
        "the check's container never started",
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _snapshot(project.root) == before
    assert os.listdir(project.root / SCRATCH) == []


def test_env_is_recorded_part_of_the_stage_and_nothing_else_leaks(
    docker_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = docker_project
    monkeypatch.setenv("FROM_HERE", "taken")
    monkeypatch.setenv("LEAK", "secret")
    project.ok("run", "-e", "GREETING=hi there", "-e", "FROM_HERE", "-o", "g.txt", "env > g.txt")
    seen = (project.root / "g.txt").read_text().splitlines()
    assert "GREETING=hi there" in seen and "FROM_HERE=taken" in seen
    assert not [line for line in seen if "secret" in line]
    text = (project.root / "g.txt.repro").read_text()
    assert "env:\n  FROM_HERE: taken\n  GREETING: hi there\n" in text
    project.write("g.txt.repro", text.replace("hi there", "hello"))
    assert "Stage 'g.txt.repro' changed." in project.repro("status").out
    project.ok("repro")
    assert "GREETING=hello" in (project.root / "g.txt").read_text().splitlines()

    bad = project.repro("run", "-e", "1ST=x", "-o", "h.txt", "true")
    assert bad.code == 2 and "--env 1ST=x" in bad.err
    monkeypatch.delenv("LEAK")
    unset = project.repro("run", "-e", "LEAK", "-o", "h.txt", "true")
    assert unset.code == 1
    assert unset.err.strip() == (
        "error: --env LEAK: LEAK is not set here; give its value: --env LEAK=VALUE"
    )
    assert not (project.root / "h.txt.repro").exists()


def test_env_joins_the_definition_and_run_key_only_when_given() -> None:
    """Older stages keep their md5s (tests/test_stage_schema.py); these are pinned for new."""
    stage = Stage(
        "s.repro",
        cmd="env > e",
        image=Image("i", "sha256:" + "1" * 64),
        deps=(FileDep("in", "a" * 32),),
        outs=(Out("e"),),
    )
    values = {"in": "a" * 32}
    with_env = stage._replace(env=(("A", "1"),))
    plain = (stage.definition_md5(), runcache.key(stage, "sha256:" + "1" * 64, values))
    assert plain == (
        stage._replace(env=()).definition_md5(),
        runcache.key(stage._replace(env=()), "sha256:" + "1" * 64, values),
    )
    assert (with_env.definition_md5(), runcache.key(with_env, "sha256:" + "1" * 64, values)) == (
        "dc5d99f3518155f32c38e367e95a45ee",
        "3a4578fe80843dbc2d7f3060ab84c58f",
    )
    assert with_env.definition_md5() != plain[0]


def test_an_experiment_makes_the_bytes_a_workspace_run_makes(docker_project: Project) -> None:
    """Experiments run in copies under .repro/tmp/exps, at another path than the project:
    the canonical environment makes their outputs the same bytes, and --check of an applied
    experiment finds nothing different."""
    project = docker_project
    project.write("params.yaml", "train:\n  lr: 0.1\n")
    project.ok(
        "run", "-p", "train.lr", "-o", "where.txt", f"{{ {FACTS}; cat params.yaml; }} > where.txt"
    )
    project.commit("pipeline")
    project.ok("exp", "run", "--queue", "-S", "train.lr=0.2", "-n", "faster")
    project.ok("exp", "run", "--run-all")
    project.ok("exp", "apply", "faster")
    from_experiment = (project.root / "where.txt").read_bytes()
    assert b"/project\n" in from_experiment
    project.ok("repro", "--check")

    project.git("checkout", "-q", "--", ".")
    project.write("params.yaml", "train:\n  lr: 0.2\n")
    project.ok("repro", "-f", "--no-run-cache")
    assert (project.root / "where.txt").read_bytes() == from_experiment


def test_the_check_copy_has_a_stand_in_for_every_read_only_path(tmp_path: Path) -> None:
    """Top-level ones too: else the engine makes the mount points, as root, in the scratch."""
    from repro.pipeline.check import _copy_project

    root, scratch = tmp_path / "project", tmp_path / "scratch"
    for folder in (".git", ".repro", "data/sub"):
        (root / folder).mkdir(parents=True)
    (root / "in.txt").write_text("dep\n")
    (root / "data" / "sub" / "deep.txt").write_text("dep\n")
    (root / "code.py").write_text("print()\n")
    stage = Stage("s.repro", cmd="true", outs=(Out("out/model.bin"),))
    _copy_project(root, scratch, stage, (root / "in.txt", root / "data" / "sub" / "deep.txt"))
    assert (scratch / ".git").is_dir() and not os.listdir(scratch / ".git")
    assert (scratch / ".repro").is_dir() and not os.listdir(scratch / ".repro")
    assert (scratch / "in.txt").read_text() == ""
    assert (scratch / "data" / "sub" / "deep.txt").read_text() == ""
    assert (scratch / "code.py").read_text() == "print()\n"
    assert (scratch / "out").is_dir() and not (scratch / "out" / "model.bin").exists()
