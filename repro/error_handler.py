"""The one place where exceptions become messages and exit codes (SPEC §2)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from repro.errors import EXIT_FAILURE, EXIT_INTERNAL, EXIT_INTERRUPTED, ReproError
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
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as exc:
        message = _os_error(exc)
        if message is None:
            return _internal(exc, ui)
        if ui.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - this is the edge; everything else is a bug
        return _internal(exc, ui)


def _internal(exc: BaseException, ui: UI) -> int:
    if ui.verbose:
        import traceback

        traceback.print_exc()
    try:
        where = f"; details in {_write_log()}"
    except OSError:
        where = ""
    print(
        f"error: unexpected internal error ({type(exc).__name__}: {exc}){where}; please report it",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_INTERNAL


# Failures of the machine, not of repro: the user can act on them, so they are not bugs.
_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free some space and run the command again",
    errno.EDQUOT: "disk quota exceeded; free some space and run the command again",
    errno.EROFS: "the filesystem is read-only; run where you can write",
    errno.EACCES: "permission denied; check the owner and mode of the path",
    errno.EPERM: "operation not permitted; check the owner and mode of the path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and retry",
}


def _os_error(exc: OSError) -> str | None:
    hint = _OS_HINTS.get(exc.errno or 0)
    if hint is None:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{hint}{where}"
