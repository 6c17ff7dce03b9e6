"""The command-line edge: only the invoked command's parser is built."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import repro.cli as cli
from repro import __version__
from repro.cli import parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def test_the_command_list_matches_the_parser() -> None:
    assert _commands(parser.build_parser()) == parser.COMMANDS


def test_one_command_builds_one_parser() -> None:
    assert _commands(parser.build_parser("status")) == {"status"}
    assert _commands(parser.build_parser("metrics")) == {"metrics"}
    assert _commands(parser.build_parser("")) == set()


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["-h"], "pipeline"),  # the full list of commands
        (["status", "-h"], "--cloud"),
        (["metrics", "show", "-h"], "--xpath"),
        (["-q", "remote", "add", "-h"], "--default"),
    ],
)
def test_help_still_lists_what_it_should(
    argv: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 0
    assert shown in capsys.readouterr().out


def test_version_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"repro {__version__}\n"
    with pytest.raises(SystemExit) as done:
        cli.main(["-q", "--version"])  # not the fast path: argparse answers alike
    assert done.value.code == 0
    assert capsys.readouterr().out == f"repro {__version__}\n"
    with pytest.raises(SystemExit) as done:
        cli.main(["statsu"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'statsu'" in err and len(err.strip().splitlines()) == 1


def test_version_is_answered_without_argparse() -> None:
    probe = "import sys; from repro.cli import main; main(['--version']); print(list(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    version, modules = done.stdout.splitlines()
    assert version == f"repro {__version__}"
    assert "argparse" not in modules and "repro.cli.parser" not in modules


def test_the_network_choices_are_the_runners() -> None:
    from repro.runners.spec import NETWORK_MODES

    run = parser.build_parser("run")
    network = next(
        action
        for sub in run._actions
        if isinstance(sub, argparse._SubParsersAction)
        for action in sub.choices["run"]._actions
        if "--network" in action.option_strings
    )
    assert tuple(network.choices or ()) == NETWORK_MODES
