"""The command line: parse, dispatch, and map errors to exit codes. No logic lives here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from repro import __version__
from repro.errors import EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        # Answered before argparse is imported: scripts ask this often, and it is a third of
        # the start-up of any command.
        sys.stdout.write(f"repro {__version__}\n")
        return 0
    from repro.error_handler import run_guarded
    from repro.ui import UI

    if "status" in argv:
        # A status that finds nothing changed is answered from its memo, before argparse and
        # most of repro are even imported.
        from repro.status_memo import NOT_ANSWERED, answer

        code = run_guarded(lambda: answer(argv), UI())
        if code != NOT_ANSWERED:
            return code
    from repro.parser import COMMANDS, build_parser

    # Global options take no values: the first other word names the command. Only its parser
    # is built; help, and a word that names no command, need them all.
    command = next((word for word in argv if not word.startswith("-")), "")
    wanted = None if {"-h", "--help"} & set(argv) and not command else command
    parser = build_parser(wanted if wanted in COMMANDS or wanted == "" else None)
    args = parser.parse_args(argv)
    ui = UI(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    if not hasattr(args, "func"):
        build_parser().print_help()
        return EXIT_USAGE
    try:
        return run_guarded(lambda: args.func(args, ui), ui)
    finally:
        # A module never imported has nothing to close or save.
        if (stage := sys.modules.get("repro.stage")) is not None:
            stage.save_parsed()
        if (state := sys.modules.get("repro.state")) is not None:
            state.close_all()


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
