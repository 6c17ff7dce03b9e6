"""repro init --from-dvc: a project made by the real DVC 3 converts, then repro finds it up to
date without hashing a tracked file again, moves nothing to or from DVC's remote, and re-runs
only the stages whose params changed, in the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from helpers import Project, build_busybox_image, git

import repro.workspace.hashing as hashing
from repro.objects.digest import file_md5, file_md5_links

if TYPE_CHECKING:
    import docker

ROOT = Path(__file__).resolve().parent.parent
# Shared with the benchmarks, which install DVC 3 there too.
DVC_VENV = Path(os.environ.get("REPRO_DVC_VENV", "/tmp/repro-bench-dvc-venv"))
# A tag of this module's own: other tests rebuild the shared test image as they run.
IMAGE = "repro-test-fromdvc:latest"

# DVC's example pipeline (prepare → featurize → train → evaluate), with commands that run
# alike on the host (dvc repro) and in busybox (repro repro).
PIPELINE = {
    "stages": {
        "prepare": {
            "cmd": "grep split params.yaml > prepared.txt && sort data/raw.txt >> prepared.txt",
            "deps": ["data/raw.txt"],
            "params": ["prepare.split"],
            "outs": ["prepared.txt"],
        },
        "featurize": {
            "cmd": "mkdir -p features && head -n 2 prepared.txt > features/head.txt"
            " && tail -n 1 prepared.txt > features/tail.txt"
            " && grep ngrams params.yaml >> features/head.txt",
            "deps": ["prepared.txt"],
            "params": ["featurize.ngrams"],
            "outs": ["features"],
        },
        "train": {
            "cmd": "cat features/head.txt features/tail.txt > model.txt"
            " && grep lr params.yaml >> model.txt",
            "deps": ["features"],
            "params": ["train.lr"],
            "outs": ["model.txt"],
            "desc": "fits the model",
        },
        "evaluate": {
            "cmd": """printf '{"lines": %s}' $(wc -l < model.txt) > scores.json""",
            "deps": ["model.txt"],
            "metrics": [{"scores.json": {"cache": False}}],
        },
    }
}
PARAMS = "prepare:\n  split: 0.2\nfeaturize:\n  ngrams: 2\ntrain:\n  lr: 0.1\n"


# -- DVC ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dvc_exe() -> str:
    """DVC 3 in a virtualenv of its own (installed once, as the benchmarks do)."""
    exe = DVC_VENV / "bin" / "dvc"
    if not os.access(exe, os.X_OK):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from tools import make_venv

        try:
            make_venv(DVC_VENV, "dvc==3.*", what="DVC 3")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"DVC 3 could not be installed from PyPI (unreachable?): {exc}")
    return str(exe)


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> str:
    build_busybox_image(docker_client, IMAGE)
    return IMAGE


def make_dvc_project(root: Path, dvc: Callable[..., str]) -> None:
    """DVC's example layout: an added data file, params.yaml, four stages (one makes a
    folder), run by dvc repro and pushed to a local remote."""
    git(root, "init", "-q")
    dvc("init", "-q")
    dvc("config", "core.analytics", "false")
    (root / "data").mkdir()
    (root / "data" / "raw.txt").write_text("pear\napple\nfig\n")
    dvc("add", "-q", "data/raw.txt")
    (root / "params.yaml").write_text(PARAMS)
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    dvc("repro", "-q")
    dvc("remote", "add", "-d", "storage", "../dvc-remote")
    dvc("push", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a DVC project")


@pytest.fixture
def dvc_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dvc_exe: str
) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    # DVC's memo lives in a folder shared by the machine's users: this test's own.
    env = {**os.environ, "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> str:
        done = subprocess.run([dvc_exe, *args], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    os.environ["DVC_SITE_CACHE_DIR"] = env["DVC_SITE_CACHE_DIR"]
    try:
        make_dvc_project(root, dvc)
        yield Project(root, capsys)
    finally:
        del os.environ["DVC_SITE_CACHE_DIR"]


def count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the hasher reads from now on."""
    read: list[str] = []

    def counting(digest: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(path: Any, *args: Any) -> Any:
            read.append(str(path))
            return digest(path, *args)

        return wrapper

    monkeypatch.setattr(hashing, "file_md5", counting(file_md5))
    monkeypatch.setattr(hashing, "file_md5_links", counting(file_md5_links))
    return read


def remote_objects(root: Path) -> list[str]:
    remote = root.parent / "dvc-remote"
    return sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())


# -- the whole move ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.docker
def test_a_dvc3_project_converts_and_is_up_to_date_without_hashing(
    dvc_project: Project, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = dvc_project
    dvc_cache = proj.root / ".dvc" / "cache" / "files"
    objects_before = sorted(p.name for p in dvc_cache.rglob("*") if p.is_file())
    done = proj.ok("init", "--from-dvc", "--image", image)
    assert "'desc' dropped" in done.err
    assert (proj.root / "data" / "raw.txt.repro").exists()
    lock = yaml.safe_load((proj.root / "repro.lock").read_text())
    assert list(lock["stages"]) == ["prepare", "featurize", "train", "evaluate"]
    assert lock["stages"]["train"]["params"] == {"params.yaml": {"train.lr": 0.1}}
    # DVC's objects now live where stages cannot write them; DVC still reaches them.
    assert (proj.root / ".dvc" / "cache" / "files").is_symlink()
    moved = proj.root / ".repro" / "cache" / "files"
    assert sorted(p.name for p in moved.rglob("*") if p.is_file()) == objects_before
    staged = proj.git("diff", "--cached", "--name-only").split()
    assert {"repro.yaml", "repro.lock", "data/raw.txt.repro", ".repro/config"} <= set(staged)
    proj.commit("move to repro")

    hashed = count_hashing(monkeypatch)
    status = proj.repro("status")
    assert (status.code, status.out.strip()) == (0, "Data and pipelines are up to date."), status
    # Not one tracked file is read; params.yaml, which DVC never hashes, is all there is.
    assert [Path(p).name for p in hashed] in ([], ["params.yaml"])

    remote_before = remote_objects(proj.root)
    assert "0 objects (0.0 MB)" in proj.ok("push").out
    assert "0 objects (0.0 MB)" in proj.ok("pull").out
    assert remote_objects(proj.root) == remote_before

    proj.write("params.yaml", PARAMS.replace("lr: 0.1", "lr: 0.2"))
    changed = proj.repro("status", "--json")
    assert changed.code == 1
    assert list(json.loads(changed.out)) == ["train"]
    reproduced = proj.ok("repro")
    ran = [line for line in reproduced.out.splitlines() if line.startswith("Reproducing")]
    assert ran == ["Reproducing 'train'", "Reproducing 'evaluate'"]
    assert "lr: 0.2" in (proj.root / "model.txt").read_text()
    assert json.loads((proj.root / "scores.json").read_text()) == {"lines": 5}
    assert proj.repro("status").code == 0


# -- bad input: one line, nothing written ------------------------------------------------------
@pytest.fixture
def dvc_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Project:
    """What DVC 3 leaves on disk, written by hand: enough for the refusals below."""
    root = tmp_path / "proj"
    (root / ".dvc").mkdir(parents=True)
    git(root, "init", "-q")
    (root / ".dvc" / "config").write_text("[core]\n    remote = storage\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    return Project(root, capsys)


def refused(proj: Project, *args: str, code: int = 1) -> str:
    before = sorted(p.name for p in proj.root.iterdir())
    result = proj.repro("init", "--from-dvc", *args)
    assert result.code == code, result
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert sorted(p.name for p in proj.root.iterdir()) == before  # nothing written
    return result.err


def test_not_a_dvc_project(dvc_layout: Project) -> None:
    (dvc_layout.root / ".dvc" / "config").unlink()
    (dvc_layout.root / ".dvc").rmdir()
    assert "is not a DVC project" in refused(dvc_layout, "--image", IMAGE)


def test_already_a_repro_project(dvc_layout: Project) -> None:
    (dvc_layout.root / ".repro").mkdir()
    assert "is a repro project already" in refused(dvc_layout, "--image", IMAGE)


def test_no_image_and_no_terminal(dvc_layout: Project) -> None:
    assert "pass --image NAME" in refused(dvc_layout, code=2)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dvc.yaml", "stages:\n  a: [\n", "dvc.yaml does not parse"),
        ("dvc.lock", "schema: '2.0'\nstages: {a: [\n", "dvc.lock does not parse"),
        ("dvc.lock", "schema: '2.0'\n", "dvc.lock has no 'stages' mapping"),
        ("dvc.yaml", "stages:\n  a:\n    cmd: x\n    frozen: true\n", "is frozen"),
        ("dvc.yaml", "stages:\n  a:\n    cmd: x\n    checkpoint: 1\n", "unknown key 'checkpoint'"),
        ("data.dvc", "outs:\n- path: data\n  md5: " + "ab" * 16 + "\n", "DVC 2 hash"),
    ],
)
def test_a_file_that_does_not_convert(
    dvc_layout: Project, image: str, name: str, text: str, message: str
) -> None:
    (dvc_layout.root / name).write_text(text)
    assert message in refused(dvc_layout, "--image", image)


def test_a_planted_cache_is_refused(dvc_layout: Project, image: str, tmp_path: Path) -> None:
    """A cloned repository's DVC cache would become repro's: objects it tracks, or symlinks to
    the user's files (a push would upload them), or a symlinked cache folder, are refused."""
    root = dvc_layout.root
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's own\n")
    objects = root / ".dvc" / "cache" / "files" / "md5" / "d4"
    objects.mkdir(parents=True)
    (objects / ("1d" * 15)).symlink_to(secret)
    assert "not a file or folder" in refused(dvc_layout, "--image", image)

    dvc_layout.git("add", "-f", ".dvc/cache")
    assert "the repository tracks .dvc/cache/files/md5/d4/" in refused(dvc_layout, "--image", image)
    dvc_layout.git("rm", "-q", "-r", "--cached", ".dvc/cache")
    shutil.rmtree(root / ".dvc" / "cache")
    (root / ".dvc" / "cache").symlink_to(tmp_path)
    assert "is a symlink" in refused(dvc_layout, "--image", image)


def test_what_repro_has_no_word_for_is_dropped_with_a_warning(
    dvc_layout: Project, image: str
) -> None:
    definition = {
        "stages": {
            "fetch": {
                "cmd": "echo hi > hi.txt",
                "outs": [{"hi.txt": {"remote": "other", "persist": True}}],
                "metrics": ["m.json"],
                "always_changed": True,
                "meta": {"owner": "me"},
            }
        },
        "plots": ["p.csv"],
    }
    (dvc_layout.root / "dvc.yaml").write_text(yaml.safe_dump(definition))
    (dvc_layout.root / ".dvc" / "config").write_text(
        "[core]\n    remote = gcs\n['remote \"gcs\"']\n    url = gs://bucket/x\n"
        "['remote \"s3\"']\n    url = s3://b/p\n    endpointurl = http://s3.local\n"
        "    secret_access_key = SECRET\n    sse = AES256\n"
    )
    err = dvc_layout.ok("init", "--from-dvc", "--image", image).err
    for expected in (
        "'always_changed' dropped",
        "'meta' dropped",
        "option 'remote' of 'hi.txt' dropped",
        "top-level 'plots' dropped",
        "remote 'gcs' (gs://bucket/x) skipped",
        "option 'sse' dropped",
        "a secret in DVC's tracked .dvc/config",
    ):
        assert expected in err
    stage = yaml.safe_load((dvc_layout.root / "repro.yaml").read_text())["stages"]["fetch"]
    assert stage["outs"] == [{"hi.txt": {"persist": True}}]
    assert stage["metrics"] == [{"m.json": {"cache": True}}]  # DVC caches metrics by default
    assert "SECRET" not in (dvc_layout.root / ".repro" / "config").read_text()
    assert "SECRET" in (dvc_layout.root / ".repro" / "config.local").read_text()
