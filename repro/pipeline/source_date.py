"""SOURCE_DATE_EPOCH for the stages of a reproduction: the time of the commit reproduced.

Tools that would write the current time into an output (archives, docs, compilers, wheels)
write this instead (reproducible-builds.org's convention). The rule: the committer time of
HEAD, also when the workspace has changes on top of it, so that two clones of one commit give
stages the same value. A project with no commit yet gets canonical.NO_COMMIT_EPOCH.

A result is recorded before it is committed, so it saw its parent commit's time. The value a
stage ran with is therefore recorded with its outputs (``source_date_epoch`` in its stage file or
repro.lock, and in its run-cache entry), and a run on the same inputs — ``-f``, a clone
reproducing the commit, ``--check``, a restore — gets that value again
(Reproduction.epoch_of); only a stage whose inputs changed gets HEAD's time. A stage may still
declare its own (``env: {SOURCE_DATE_EPOCH: …}``), which wins.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from repro.runners.canonical import NO_COMMIT_EPOCH


def source_date_epoch(root: Path) -> int:
    """HEAD's committer time in the git repository at ``root``, in seconds since 1970."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "HEAD"], cwd=root, capture_output=True, text=True
        )
    except FileNotFoundError:  # no git here: as if nothing were committed
        return NO_COMMIT_EPOCH
    seconds = done.stdout.strip()
    return int(seconds) if done.returncode == 0 and seconds.isdigit() else NO_COMMIT_EPOCH
