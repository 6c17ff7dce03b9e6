"""install: git hooks that keep data in step with git (post-checkout, pre-push).

The hooks warn and never fail git. Running ``repro install`` again rewrites hooks it installed
before, so an older install gets today's hooks.

An existing hook is kept and chained: it is renamed to HOOK.pre-repro and our hook runs it
first, so installing never breaks what the user had.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from repro.cli.commands import open_project
from repro.cli.ui import UI

MARKER = "# installed by repro install"


def _repro_command() -> str:
    """How the hook calls this very repro: the zipapp, or this interpreter's module."""
    entry = os.path.abspath(sys.argv[0])
    if entry.endswith(".pyz"):
        return f"{shlex.quote(sys.executable)} {shlex.quote(entry)}"
    return f"{shlex.quote(sys.executable)} -m repro"


# Hooks warn and never fail git (a `set -e` script that runs `git checkout` must not stop
# because data is missing): each says what to run instead and exits 0.
HOOKS = {
    # $3 is 1 for a branch (or tag) checkout, 0 for a file checkout: only the former moves data.
    "post-checkout": """[ "$3" = "1" ] || exit 0
if ! {repro} checkout; then
    echo "repro: warning: the data of this commit is not all in place; run 'repro pull'" \\
        "(or 'repro checkout' after fixing what is named above)" >&2
fi
exit 0""",
    "pre-push": """if {repro} config core.remote >/dev/null 2>&1; then
    if ! {repro} push; then
        echo "repro: warning: the data of this push did not reach the remote;" \\
            "run 'repro push' before others pull" >&2
    fi
fi
exit 0""",
}


def cmd_install(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    hooks_dir = Path(project.root) / ".git" / "hooks"
    hooks_dir.mkdir(parents=True, exist_ok=True)
    repro = _repro_command()
    for name, body in HOOKS.items():
        hook = hooks_dir / name
        if hook.exists() and MARKER not in hook.read_text(errors="replace"):
            os.replace(hook, hooks_dir / f"{name}.pre-repro")
        chained = 'if [ -x "$0.pre-repro" ]; then "$0.pre-repro" "$@" || exit $?; fi\n'
        hook.write_text(f"#!/bin/sh\n{MARKER}\n{chained}{body.format(repro=repro)}\n")
        hook.chmod(0o755)
        ui.info(f"Installed .git/hooks/{name}")
    return 0
