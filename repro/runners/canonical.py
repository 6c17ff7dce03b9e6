"""The canonical environment every stage runs in, whichever runner runs it.

A tool that writes a path, a user name, a host name, a time zone or the time into its output
(TorchScript's debug records, tar, zip, .pyc, logs, compilers) makes that output depend on who
ran the stage and where the project lives. So, as Nix and Bazel do, a stage sees the same world
everywhere: the project at one fixed path, a fixed user name, home, host name, locale, time zone
and umask, SOURCE_DATE_EPOCH from the commit, and no variable of the caller's environment but
those its stage file declares. These are facts, not Docker's: every runner applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

PROJECT = PurePosixPath("/project")  # where every clone of every project is seen
USER = "repro"  # the name the caller's uid goes by inside, whoever the caller is
HOME = PurePosixPath("/home/repro")  # writable, empty at each start, owned by the caller
HOSTNAME = "repro"
UMASK = "022"
# What SOURCE_DATE_EPOCH is when the project has no commit yet: 1980-01-01, the first time a
# zip archive can hold (Python's zipfile refuses earlier ones), as Nix's builders use.
NO_COMMIT_EPOCH = 315532800

VARIABLES = {
    "HOME": str(HOME),
    "USER": USER,
    "LOGNAME": USER,
    "TZ": "UTC",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    # Python would write .pyc files, with their sources' mtimes, into the project's code.
    "PYTHONDONTWRITEBYTECODE": "1",
}


def variables(source_date_epoch: int, declared: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The whole environment a stage gets on top of its image's own: the canonical variables,
    SOURCE_DATE_EPOCH, and what the stage declares (``env:``), which wins."""
    found = dict(VARIABLES, SOURCE_DATE_EPOCH=str(source_date_epoch))
    found.update(declared)
    return found


def inside(project_root: Path, path: Path) -> PurePosixPath:
    """Where a stage sees ``path``, a path in the project at ``project_root``."""
    return PROJECT / path.relative_to(project_root).as_posix()


def command(cmd: str) -> list[str]:
    """The process a stage runs: its command under /bin/sh, with the canonical umask.

    The command follows on a line of its own, so that it is parsed exactly as it would be alone.
    """
    return ["/bin/sh", "-c", f"umask {UMASK}\n{cmd}"]


def account(image_passwd: str, image_group: str, uid: int, gid: int) -> tuple[str, str]:
    """The /etc/passwd and /etc/group a stage sees: the caller's uid and gid first, under USER,
    so that a lookup of either gives the same name for root and for anyone else; then the
    image's own entries, but for one already named USER."""
    passwd = f"{USER}:x:{uid}:{gid}:{USER}:{HOME}:/bin/sh\n" + _without(image_passwd)
    group = f"{USER}:x:{gid}:\n" + _without(image_group)
    return passwd, group


def _without(table: str) -> str:
    """The lines of a passwd or group file, but for the entry named USER."""
    kept = [line for line in table.splitlines() if line.split(":", 1)[0] != USER]
    return "".join(f"{line}\n" for line in kept)
