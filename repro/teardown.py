"""Work a command leaves for its end, done once on the way out (the CLI calls :func:`finish`).

A memo that many steps add to (history parses hundreds of stage files) is written once, not at
every step; a database is closed then, not at some later garbage collection that may come
during another command of the same process; a runner's helper process (the docker reaper) is
told the command is over. Nothing is imported: the quick status passes through here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_PENDING: dict[Callable[[], None], None] = {}


def when_done(work: Callable[[], None]) -> None:
    """Have ``work`` done when the command ends (once, however often it is asked)."""
    _PENDING[work] = None


def finish() -> None:
    """Do what the command left for its end (the CLI calls it on the way out)."""
    while _PENDING:
        work = next(iter(_PENDING))
        del _PENDING[work]
        work()
