"""The one place where exceptions become messages and exit codes (SPEC §2)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from repro.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ReproError
from repro.ui import UI


def _write_log() -> str:
    import tempfile
    import time
    import traceback

    folder = os.environ.get("REPRO_LOG_DIR") or tempfile.gettempdir()
    path = os.path.join(folder, f"repro-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"argv: {sys.argv}\n")
        traceback.print_exc(file=handle)
    return path


def run_guarded(action: Callable[[], int], ui: UI) -> int:
    try:
        return action()
    except ReproError as exc:
        if ui.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error of ours.
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - this is the edge; everything else is a bug
        if ui.verbose:
            import traceback

            traceback.print_exc()
        try:
            where = f"; details in {_write_log()}"
        except OSError:
            where = ""
        print(
            f"error: unexpected internal error ({type(exc).__name__}: {exc}){where}; "
            "please report it",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERNAL
