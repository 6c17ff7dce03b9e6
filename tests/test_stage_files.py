"""Stage files' parsed YAML is remembered by text in .repro/tmp: quick commands skip PyYAML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Project

from repro import fsutil

# --json: a plain status with nothing changed may be answered by status_memo without loading
# any stage file at all (tests/test_status_memo.py); these tests are about the full one.
PROBE = (
    "import sys\n"
    "from repro.cli import main\n"
    "code = main(['status', '--json'])\n"
    "print(code, 'yaml' in sys.modules)\n"
)


def _status_imports_yaml(project: Project) -> tuple[str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=project.root, capture_output=True, text=True
    )
    code, imported = done.stdout.split()[-2:]
    return code, imported == "True"


def test_unchanged_stage_files_are_not_parsed_again(project: Project) -> None:
    project.write("data/a.txt", "a")
    project.ok("add", "data")
    assert _status_imports_yaml(project) == ("0", False)  # add left its parse behind

    stage = project.root / "data.repro"
    stage.write_text(stage.read_text().replace("path: data", "path: data  # edited"))
    assert _status_imports_yaml(project) == ("0", True)  # new text: parsed afresh
    assert _status_imports_yaml(project) == ("0", False)


def test_a_torn_or_foreign_memo_is_ignored(project: Project) -> None:
    project.write("data/a.txt", "a")
    project.ok("add", "data")
    memo = project.root / ".repro" / "tmp" / "parsed-stages"
    for junk in (b"", b"\x00garbage", memo.read_bytes()[:7]):
        memo.write_bytes(junk)
        assert _status_imports_yaml(project) == ("0", True)
        assert _status_imports_yaml(project) == ("0", False)  # rewritten whole


def test_a_broken_stage_file_is_still_refused(project: Project) -> None:
    project.write("data/a.txt", "a")
    project.ok("add", "data")
    (project.root / "data.repro").write_text("outs: [\n")
    result = project.repro("status")
    assert result.code != 0
    assert "stage file 'data.repro' is not valid YAML" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_commands_at_once_share_the_memo(project: Project) -> None:
    for name in "abcdef":
        project.write(f"{name}/f.txt", name)
        project.ok("add", name)
    memo = project.root / ".repro" / "tmp" / "parsed-stages"
    memo.unlink()
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE], cwd=project.root, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    assert [run.communicate()[0].split()[-2] for run in runs] == ["0"] * 8
    # Each wrote the whole memo by temp + rename: the last one stands, complete, no temp left.
    assert _status_imports_yaml(project) == ("0", False)
    assert [p.name for p in memo.parent.iterdir() if p.name.startswith(".")] == []


def test_a_command_writes_the_memo_once_however_many_files_it_parses(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(6):  # six versions of the stage file: six texts to parse from history
        project.write("m.json", f'{{"acc": {n}}}')
        project.write(
            "m.repro", f"outs:\n- path: m.json\n  cache: false\n  metric:\n    xpath: acc\n# v{n}\n"
        )
        project.commit(f"v{n}", tag=f"v{n}")
    memo = project.root / ".repro" / "tmp" / "parsed-stages"
    memo.unlink(missing_ok=True)
    writes: list[Path] = []
    real = fsutil.write_atomic

    def counting(path: Path, data: bytes, mode: int | None = None) -> None:
        writes.append(Path(path))
        real(path, data, mode)

    monkeypatch.setattr(fsutil, "write_atomic", counting)
    assert len(json.loads(project.ok("metrics", "show", "-T", "--json").out)) == 6
    assert writes.count(memo) == 1
    assert _status_imports_yaml(project)[1] is False  # and it holds what was parsed
