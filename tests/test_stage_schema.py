"""The stage-file schema (stages/stage.py FIELDS) and the dependency protocol: the hashes
older versions wrote stay the same, and every kind of dependency is read and written alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.pipeline import runcache
from repro.runners.spec import Image, Resources
from repro.stages import stage as stage_mod
from repro.stages.deps.file import FileDep
from repro.stages.deps.kinds import KINDS
from repro.stages.deps.params import ParamDep
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
    with pytest.raises(ReproError, match="unknown key 'bogus'"):
        stage_mod.parse("s.repro", "cmd: x\nbogus: [a]\n")


def test_a_file_dependency_follows_the_protocol() -> None:
    class Probe:
        root = Path("/nonexistent")

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


# Computed when parameter dependencies came (issue 18): a stage with params, recorded.
PINNED_WITH_PARAMS = ("8375b9b023dd6c5b372c8647de2067a4", "ba9c1ec3d10ce45f7012aab9463ee78d")
STAGE_WITH_PARAMS = STAGE._replace(
    deps=(
        *STAGE.deps,
        ParamDep("params.yaml", "train.lr", "0.1"),
        ParamDep("sub/p.json", "train", '{"epochs":3,"lr":0.1}'),
    )
)


def test_a_stage_with_params_keeps_its_definition_md5_and_run_cache_key() -> None:
    """Values are not part of the definition (a changed one is a changed dependency), but they
    are part of the run-cache key, by name."""
    values = {
        "data/in": "a" * 32 + ".dir",
        "train.py": "b" * 32,
        "params.yaml:train.lr": "0.1",
        "sub/p.json:train": '{"epochs":3,"lr":0.1}',
    }
    pinned = (
        STAGE_WITH_PARAMS.definition_md5(),
        runcache.key(STAGE_WITH_PARAMS, "sha256:" + "1" * 64, values),
    )
    assert pinned == PINNED_WITH_PARAMS
    unrecorded = STAGE_WITH_PARAMS._replace(
        deps=tuple(d.recorded_as(None) for d in STAGE_WITH_PARAMS.deps)
    )
    assert unrecorded.definition_md5() == PINNED_WITH_PARAMS[0]
    assert STAGE_WITH_PARAMS.definition_md5() != STAGE.definition_md5()


def test_a_stage_file_with_params_round_trips_and_keeps_a_recorded_null() -> None:
    text = (
        "cmd: x\nparams:\n- path: ../params.yaml\n  key: a\n  value: null\n"
        "- path: p.toml\n  key: b\n"
    )
    stage = stage_mod.parse("sub/s.repro", text)
    assert stage.deps == (ParamDep("params.yaml", "a", "null"), ParamDep("sub/p.toml", "b", None))
    assert stage_mod.parse("sub/s.repro", stage_mod.dump(stage)) == stage
    assert "value: null" in stage_mod.dump(stage)
    for bad in ("- {path: p.yaml}", "- {path: p.yaml, key: a, md5: x}", "- p.yaml", "{}"):
        with pytest.raises(ReproError, match="malformed"):
            stage_mod.parse(
                "s.repro",
                f"cmd: x\nparams:\n{bad}\n" if bad.startswith("-") else f"cmd: x\nparams: {bad}\n",
            )
