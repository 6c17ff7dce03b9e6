"""Run-cache entries: where they live (objects/runs.py), and how push, fetch and gc move them."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Project, cli, git

from repro.objects import runs
from repro.objects.digest import file_md5
from repro.pipeline import runcache
from repro.stages.stage import Out

RUN_KEY = "0123456789abcdef0123456789abcdef"


def test_an_entry_key_names_its_run_key_and_nothing_else_does() -> None:
    key = runs.entry_key(RUN_KEY)
    assert key == f"runs/01/{RUN_KEY[2:]}"
    assert runs.run_key_of(key) == RUN_KEY
    assert runs.entry_path(Path("/c"), RUN_KEY) == Path("/c") / key
    for other in (
        "runs/01",
        "runs/0/123456789abcdef0123456789abcdef",
        f"runs/01/{RUN_KEY[2:]}/x",
        f"runs/01/.{RUN_KEY[3:]}",
        f"files/md5/01/{RUN_KEY[2:]}",
        f"runs/01/{RUN_KEY[2:].upper()}",
    ):
        assert runs.run_key_of(other) is None, other


def test_only_entries_are_listed(tmp_path: Path) -> None:
    assert runs.run_keys(tmp_path) == []
    folder = runs.entry_path(tmp_path, RUN_KEY).parent
    folder.mkdir(parents=True)
    runs.entry_path(tmp_path, RUN_KEY).write_text("{}")
    (folder / f".{RUN_KEY[2:]}.1234.cafe.tmp").write_text("{}")  # a write cut short
    assert runs.run_keys(tmp_path) == [RUN_KEY]


@pytest.fixture
def remembered(project: Project, tmp_path: Path) -> tuple[Project, str]:
    """A project whose run-cache remembers a run that made an output no stage file names now,
    with a folder remote configured; returns it and that output's object id."""
    project.write("model.bin", "weights of a run long gone\n")
    project.ok("add", "model.bin")
    md5 = file_md5(str(project.root / "model.bin"))
    project.ok("remove", "model.bin.repro", "--outs")
    cache = project.root / ".repro" / "cache"
    runcache.save(cache, RUN_KEY, (Out("model.bin", md5, True),), 1700000000)
    project.ok("remote", "add", "-d", "store", str(tmp_path / "store"))
    project.commit("configure remote")
    return project, md5


def test_entries_and_their_objects_travel_with_run_cache(
    remembered: tuple[Project, str], tmp_path: Path
) -> None:
    project, md5 = remembered
    store = tmp_path / "store"
    result = project.ok("push", "--run-cache")
    assert "Pushed 1 run-cache entries." in result.out
    assert runs.entry_path(store, RUN_KEY).is_file()
    assert "Pushed 0 run-cache entries." in project.ok("push", "--run-cache").out
    # Planted on the remote: names that are no run key are not fetched.
    (store / "runs" / "zz").mkdir()
    (store / "runs" / "zz" / "not-a-key").write_text("{}")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.root), str(clone))
    fetched = cli(clone, "fetch", "--run-cache")
    assert fetched.code == 0, fetched.err
    assert "Fetched 1 run-cache entries." in fetched.out
    cache = clone / ".repro" / "cache"
    assert runs.run_keys(cache) == [RUN_KEY]
    assert runcache.lookup(cache, RUN_KEY) == {"model.bin": md5}
    assert file_md5(str(cache / "files" / "md5" / md5[:2] / md5[2:])) == md5
    assert not (cache / "runs" / "zz").exists()


def test_gc_drops_an_entry_whose_objects_it_deleted(remembered: tuple[Project, str]) -> None:
    project, _md5 = remembered
    cache = project.root / ".repro" / "cache"
    project.ok("gc", "-w", "-f")
    assert runs.run_keys(cache) == []
