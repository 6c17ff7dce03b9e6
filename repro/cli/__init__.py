"""The command line: parse, dispatch, and map errors to exit codes. No logic lives here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from repro import __version__, teardown
from repro.errors import EXIT_USAGE
from repro.memo.store import NOT_ANSWERED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        # Answered before argparse is imported: scripts ask this often, and it is a third of
        # the start-up of any command.
        sys.stdout.write(f"repro {__version__}\n")
        return 0
    from repro.cli.error_handler import run_guarded, signals_interrupt
    from repro.cli.ui import UI

    with signals_interrupt():
        # The outer guard sees only a signal that lands between the inner guard and the end.
        return run_guarded(lambda: _main(argv), UI())


def _main(argv: list[str]) -> int:
    from repro.cli.error_handler import run_guarded
    from repro.cli.ui import UI

    code = run_guarded(lambda: _quick_answer(argv), UI())
    if code != NOT_ANSWERED:
        return code
    from repro.cli.parser import COMMANDS, build_parser

    # Only the command's parser is built; help, and a word that names no command, need them all.
    command = _command(argv)
    wanted = None if {"-h", "--help"} & set(argv) and not command else command
    parser = build_parser(wanted if wanted in COMMANDS or wanted == "" else None)
    args = parser.parse_args(argv)
    args.argv = tuple(argv)  # as typed: a memo tells from it whether it may answer it next time
    if getattr(args, "quiet", False) and getattr(args, "verbose", False):  # one before the command
        parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    ui = UI(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    if not hasattr(args, "func"):
        build_parser().print_help()
        return EXIT_USAGE
    try:
        return run_guarded(lambda: args.func(args, ui), ui)
    finally:
        teardown.finish()  # memos written, databases closed, the reaper told


def _quick_answer(argv: list[str]) -> int:
    """A status that finds nothing changed, and metrics of tags or branches that did not move,
    are answered from memos before argparse and most of repro are even imported."""
    command = _command(argv)
    if command == "status":
        from repro.memo import status

        quiet = status.eligible(argv)
        return NOT_ANSWERED if quiet is None else status.answer(quiet)
    if command == "metrics":
        from repro.memo import metrics

        how = metrics.eligible(argv)
        return NOT_ANSWERED if how is None else metrics.answer(how)
    return NOT_ANSWERED


def _command(argv: list[str]) -> str:
    """The command ``argv`` names: global options take no values, so its first other word."""
    return next((word for word in argv if not word.startswith("-")), "")


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
