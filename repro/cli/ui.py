"""What the user sees: plain lines on stdout, warnings and errors on stderr."""

from __future__ import annotations

import sys


class UI:
    def __init__(self, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def out(self, message: str) -> None:
        """Output that is the command's answer: printed even with -q."""
        print(message, flush=True)

    def warn(self, message: str) -> None:
        if not self.quiet:
            print(f"Warning: {message}", file=sys.stderr, flush=True)

    def debug(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr, flush=True)

    def log(self, chunk: bytes) -> None:
        """A running stage's output, streamed as it comes."""
        if not self.quiet:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

    @property
    def progress(self) -> bool:
        return not self.quiet
