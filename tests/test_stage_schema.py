"""The stage-file schema (stages/stage.py FIELDS) and the dependency protocol: the hashes
older versions wrote stay the same, and every kind of dependency is read and written alike."""

from __future__ import annotations

import pytest

from repro.errors import ReproError
from repro.pipeline import runcache
from repro.runners.spec import Image, Resources
from repro.stages import stage as stage_mod
from repro.stages.deps.file import FileDep
from repro.stages.deps.kinds import KINDS
from repro.stages.stage import FIELDS, Metric, Out, Stage

# Computed by the code before the schema became a table (commit e599eb3).
PINNED = ("17ed427bb0cd33fd8647ed4ce01b081f", "0ed5a1faa1372839a615457552379b4c")
STAGE = Stage(
    "sub/train.repro",
    cmd="python train.py",
    wdir="..",
    image=Image("trainer:1", "sha256:" + "1" * 64),
    network="bridge",
    deps=(FileDep("data/in", "a" * 32 + ".dir"), FileDep("train.py", "b" * 32)),
    outs=(Out("model.bin", "c" * 32, True), Out("metrics.json", None, False, Metric("json"))),
    resources=Resources(cpus=2.0, memory="512m"),
)


def test_definition_md5_and_run_cache_key_are_those_earlier_versions_wrote() -> None:
    """Pinned values: a change here would re-run every stage of every project, and miss every
    run-cache entry."""
    values = {"data/in": "a" * 32 + ".dir", "train.py": "b" * 32}
    assert (STAGE.definition_md5(), runcache.key(STAGE, "sha256:" + "1" * 64, values)) == PINNED


def test_a_stage_file_round_trips_with_keys_in_table_order() -> None:
    text = stage_mod.dump(STAGE.with_md5())
    assert stage_mod.parse(STAGE.path, text) == STAGE.with_md5()
    keys = [line.split(":")[0] for line in text.splitlines() if not line.startswith((" ", "-"))]
    order = [f.key for f in FIELDS]
    assert keys == sorted(keys, key=order.index)


def test_every_dependency_kind_has_its_field_and_unknown_keys_are_refused() -> None:
    assert {k.FIELD for k in KINDS} <= {f.key for f in FIELDS}
    with pytest.raises(ReproError, match="unknown key 'params'"):
        stage_mod.parse("s.repro", "cmd: x\nparams: [a]\n")


def test_a_file_dependency_follows_the_protocol() -> None:
    class Probe:
        def current_md5(self, path: str) -> str | None:
            return {"in": "d" * 32}.get(path)

    dep = FileDep("in", "e" * 32)
    assert dep.current(Probe()) == "d" * 32
    assert dep.change("s.repro", "d" * 32) == "Dependency 'in' of 's.repro' changed."
    assert dep.change("s.repro", None) == "Dependency 'in' of 's.repro' is missing."
    assert dep.change("s.repro", "e" * 32) is None
    assert dep.recorded_as("d" * 32).recorded == "d" * 32
    assert dep.watched() == ("in",)
    assert FileDep("gone").current(Probe()) is None
