"""The one user-facing error type and the exit codes of the CLI."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class ReproError(Exception):
    """A failure the user can act on; its message says what went wrong and what to do."""

    exit_code = EXIT_FAILURE


class UsageError(ReproError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


class StageFailed(ReproError):
    """A stage's command exited non-zero."""

    def __init__(self, stage_file: str, exit_code: int, log_tail: str) -> None:
        self.stage_file = stage_file
        self.command_exit_code = exit_code
        self.log_tail = log_tail
        tail = f"\n{log_tail}" if log_tail else ""
        super().__init__(
            f"stage '{stage_file}' failed: its command exited with code {exit_code}{tail}"
        )

    def __reduce__(self) -> tuple[object, ...]:  # errors cross process boundaries pickled
        return (type(self), (self.stage_file, self.command_exit_code, self.log_tail))


class LockedError(ReproError):
    """Another repro command holds the project lock."""


class CheckoutError(ReproError):
    """Some outputs could not be checked out."""

    def __init__(self, message: str, paths: list[str]) -> None:
        self.paths = paths
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.paths))


class RemoteError(ReproError):
    """A remote could not be reached, or refused an operation."""


class CorruptObjectError(ReproError):
    """An object's bytes do not hash to its name."""

    def __init__(self, object_id: str, where: str) -> None:
        self.object_id = object_id
        self.where = where
        super().__init__(
            f"object {object_id} in {where} is corrupt (its md5 differs); "
            "remove it there and push it again from a good copy"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.object_id, self.where))
