"""Two outputs that differ only by case are one file on macOS and Windows: refused on every
host at `repro run` and `repro add`, since the project travels (repro/paths.py)."""

from __future__ import annotations

import pytest
from helpers import Project

from repro.errors import ReproError
from repro.paths import refuse_case_twins


def test_run_refuses_an_output_that_differs_from_another_only_by_case(project: Project) -> None:
    project.ok("run", "--no-exec", "-f", "a.repro", "-o", "Model.bin", "echo > Model.bin")
    before = sorted(p.name for p in project.root.iterdir())
    result = project.repro("run", "--no-exec", "-f", "b.repro", "-o", "model.bin", "echo")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "error: outputs 'model.bin' and 'Model.bin' differ only by case, and on macOS and "
        "Windows they would be one file; rename one of them"
    ]
    assert sorted(p.name for p in project.root.iterdir()) == before  # nothing written
    own = project.repro("run", "--no-exec", "-f", "c.repro", "-o", "out/A", "-o", "OUT/a/b", "echo")
    assert "outputs 'OUT/a/b' and 'out/A' differ only by case" in own.err  # its own two


def test_add_refuses_data_that_differs_from_an_output_only_by_case(project: Project) -> None:
    project.write("Data/x.txt", "x")
    project.ok("add", "Data")
    project.write("data.txt", "y")
    project.ok("add", "data.txt")  # another name: fine
    (project.root / "Data").rename(project.root / "old")
    project.write("DATA", "z")
    result = project.repro("add", "DATA")
    assert result.code == 1
    assert "outputs 'DATA' and 'Data' differ only by case" in result.err
    assert not (project.root / "DATA.repro").exists()


@pytest.mark.parametrize(
    ("new", "existing"),
    [(["a/B"], ["a/b"]), (["A"], ["a/b"]), (["x/Y/z"], ["x/y"]), (["M", "m"], [])],
)
def test_paths_one_on_a_case_insensitive_disk(new: list[str], existing: list[str]) -> None:
    with pytest.raises(ReproError, match="differ only by case"):
        refuse_case_twins(new, existing)


@pytest.mark.parametrize(
    ("new", "existing"),
    [(["a/b"], ["a/c"]), (["Data/x"], ["data/y"]), (["é"], ["e"]), (["m"], ["n"])],
)
def test_paths_apart_on_any_disk(new: list[str], existing: list[str]) -> None:
    refuse_case_twins(new, existing)


NFC, NFD = "caf\u00e9", "cafe\u0301"  # one name on macOS, whose file systems ignore normalization


def test_run_refuses_an_output_that_differs_from_another_only_in_its_accents_encoding(
    project: Project,
) -> None:
    project.ok("run", "--no-exec", "-f", "a.repro", "-o", NFC, "echo")
    result = project.repro("run", "--no-exec", "-f", "b.repro", "-o", f"{NFD}/x", "echo")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"error: outputs '{NFD}/x' and '{NFC}' differ only in how their accents are encoded "
        "(NFC, NFD), and on macOS they would be one file; rename one of them"
    ]
    assert not (project.root / "b.repro").exists()


@pytest.mark.parametrize(
    ("new", "existing"), [([NFD], [NFC]), ([f"{NFC.upper()}/x"], [NFD]), ([NFC, NFD], [])]
)
def test_paths_one_on_a_normalization_insensitive_disk(new: list[str], existing: list[str]) -> None:
    with pytest.raises(ReproError, match="would be one file"):
        refuse_case_twins(new, existing)
