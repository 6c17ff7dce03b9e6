"""The one place where exceptions become messages and exit codes: 0 success, 1 a failure the
user can fix (one line saying how), 2 a usage error, 3 an internal error (a private log file),
130 Ctrl-C, 143/129 SIGTERM/SIGHUP."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from repro.cli.ui import UI
from repro.errors import EXIT_FAILURE, EXIT_INTERNAL, EXIT_INTERRUPTED, ReproError


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP: a KeyboardInterrupt, so that every Ctrl-C cleanup path runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_INTERRUPTING = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM (timeout, a cancelled CI job) and SIGHUP (a closed terminal) end a command the
    way Ctrl-C does: containers removed, no stage file updated."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (repro called as a library)
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in _INTERRUPTING}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- the log of an internal error ------------------------------------------------------------
# The password of scheme://user:password@host: up to the last @ before the host.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/\s]*(?=@[^@/\s]*)")
_MASK = "****"


def _mask(argv: list[str]) -> list[str]:
    """argv with the values of secret options, and passwords in URLs, replaced by ****."""
    from repro.config import SECRET_OPTIONS

    masked: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            masked.append(_MASK)
            hide_next = False
            continue
        key, equals, _value = word.partition("=")
        option = key.lstrip("-").rsplit(".", 1)[-1]
        if option in SECRET_OPTIONS:
            if equals:
                masked.append(f"{key}={_MASK}")
                continue
            hide_next = True
        masked.append(_URL_PASSWORD.sub(rf"\g<head>{_MASK}", word))
    return masked


def _log_folders() -> Iterator[str]:
    """Where a log may go, best first: folders only this user can enter."""
    if chosen := os.environ.get("REPRO_LOG_DIR"):
        yield chosen
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    yield os.path.join(state, "repro", "logs")
    import tempfile

    yield os.path.join(tempfile.gettempdir(), f"repro-{os.getuid()}")


def _open_private_folder(folder: str) -> int:
    """A descriptor of ``folder``, made if missing; refused unless it is a real folder that is
    ours and closed to others (someone else's, or a planted symlink, would see the log)."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(folder, mode=0o700)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise PermissionError(errno.EPERM, "not owned by us", folder)
        if info.st_mode & 0o077 and folder != os.environ.get("REPRO_LOG_DIR"):
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _create_log() -> tuple[str, int]:
    """A new log file, 0600, in a private folder: exclusive and no-follow, under a name no one
    can guess, so that nothing planted there is ever written through."""
    import tempfile
    import time

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for folder in _log_folders():
        try:
            folder_fd = _open_private_folder(folder)
        except OSError:
            continue
        try:
            for _ in range(3):
                name = f"repro-error-{time.strftime('%Y%m%d-%H%M%S')}-{_random_part()}.log"
                with contextlib.suppress(FileExistsError):
                    return os.path.join(folder, name), os.open(name, flags, 0o600, dir_fd=folder_fd)
        except OSError:
            continue
        finally:
            os.close(folder_fd)
    # Every usual folder is unusable (a planted symlink, say): a fresh one, 0700, random name.
    folder = tempfile.mkdtemp(prefix="repro-error-")
    path = os.path.join(folder, "repro-error.log")
    return path, os.open(path, flags, 0o600)


def _random_part() -> str:
    import secrets

    return f"{os.getpid()}-{secrets.token_hex(8)}"


def _write_log() -> str:
    import traceback

    path, fd = _create_log()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"argv: {_mask(sys.argv)}\n")
        handle.write(_URL_PASSWORD.sub(rf"\g<head>{_MASK}", traceback.format_exc()))
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
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        print(f"interrupted ({name})", file=sys.stderr, flush=True)
        return exc.exit_code
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
