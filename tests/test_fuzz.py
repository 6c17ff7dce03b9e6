"""Bad input everywhere, generated: never a traceback, never exit 3, never code execution."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

import pytest
from helpers import Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.config import Config
from repro.errors import ReproError
from repro.objects.digest import bytes_md5
from repro.objects.ids import manifest_id
from repro.objects.manifest import parse_manifest
from repro.stages import stage as stage_mod

FIGURES: dict[str, int] = {}


def _count(kind: str) -> None:
    FIGURES[kind] = FIGURES.get(kind, 0) + 1


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(string.printable, max_size=20),
    st.sampled_from(["/etc/passwd", "../x", ".git/config", "a" * 32, "0" * 32 + ".dir", "data"]),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "cmd",
                    "wdir",
                    "image",
                    "network",
                    "deps",
                    "outs",
                    "md5",
                    "path",
                    "cache",
                    "metric",
                    "type",
                    "xpath",
                    "name",
                    "id",
                    "digest",
                    "resources",
                    "cpus",
                    "memory",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_values)
def test_stage_files_from_any_structure(value: object) -> None:
    import yaml

    text = yaml.safe_dump(value)
    _count("stage files")
    try:
        stage = stage_mod.parse("s.repro", text)
    except ReproError as exc:
        assert "s.repro" in str(exc)
        return
    for path in [d.path for d in stage.deps] + stage.out_paths():
        assert not path.startswith(("/", "../", ".git", ".repro"))


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_stage_files_from_any_text(text: str) -> None:
    _count("stage files")
    with contextlib.suppress(ReproError):
        stage_mod.parse("s.repro", text)


def test_yaml_tags_never_execute_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"!!python/object/apply:os.system ['touch {marker}']\n"
    for text in (
        hostile,
        f"cmd: {hostile}",
        f"outs:\n- path: !!python/object/apply:os.system ['touch {marker}']\n",
    ):
        _count("stage files")
        with pytest.raises(ReproError):
            stage_mod.parse("s.repro", text)
    assert not marker.exists()


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_manifests_from_any_bytes(data: bytes) -> None:
    _count("manifests")
    try:
        entries = parse_manifest(data, manifest_id(bytes_md5(data)), "m")
    except ReproError:
        return
    for rel, md5 in entries:
        assert not rel.startswith("/") and ".." not in rel.split("/") and len(md5) == 32


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_config_files_from_any_text(tmp_path: Path, text: str) -> None:
    _count("config files")
    repro_dir = tmp_path / "cfg"
    repro_dir.mkdir(exist_ok=True)
    (repro_dir / "config").write_text(text)
    try:
        config = Config(repro_dir)
        config.get("core.image")
        config.remotes()
    except ReproError:
        pass


WORDS = [
    "add",
    "status",
    "checkout",
    "run",
    "repro",
    "metrics",
    "show",
    "diff",
    "modify",
    "remote",
    "push",
    "pull",
    "fetch",
    "gc",
    "fsck",
    "config",
    "remove",
    "unprotect",
    "pipeline",
    "list",
    "-T",
    "-a",
    "-f",
    "-j",
    "0",
    "-1",
    "x",
    "--json",
    "--xpath",
    "a[",
    "-r",
    "nowhere",
    "/etc",
    "..",
    ".git",
    "--type",
    "csv",
    "data",
    "-w",
    "--dry",
    "-s",
    "core.image",
    "--unset",
    "--local",
    "-M",
    "-o",
    "-d",
    "s.repro",
    "--image",
    "",
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
def test_cli_arguments_never_crash(project: Project, argv: list[str]) -> None:
    _count("command lines")
    result = project.repro(*argv)
    assert result.code in (0, 1, 2), (argv, result.err)
    assert "Traceback" not in result.err


def test_report_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the figures the reliability issue asks for."""
    with capsys.disabled():
        print("\nbad inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(FIGURES.items())))
    assert sum(FIGURES.values()) > 500
