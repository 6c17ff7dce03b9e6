"""Deleting trees without slowing the next measurement.

ext4 without a journal (the disk of this VM) does not reuse an inode freed in the last 60 s,
or 360 s while its inode-table block is dirty (as new inodes beside it make it), and every
new file scans past each such inode of its block group: creating N files just after
deleting N costs O(N²) kernel time, 0.3 to 15 s for the same `cp -r` (perf: ext4
recently_deleted()). Trees of many files are moved aside while measuring and deleted when
the run ends. Only a killed run's leftovers are deleted at the start, followed by this pause.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

RECENTLY_DELETED_S = 61
DEFER_FROM_FILES = 500  # sets with fewer files per tree (big) are deleted at once


class Trash:
    """Where removed trees wait to be deleted until no measurement is running, so that no
    tool (and no floor) pays the scan past inodes someone freed a moment before."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.defer = False
        self.count = 0
        self.quiet_after = 0.0

    def discard(self, path: Path) -> None:
        if not os.path.lexists(path):
            return
        if self.defer and _room(self.folder.parent):
            self.folder.mkdir(exist_ok=True)
            self.count += 1
            try:
                os.rename(path, self.folder / str(self.count))
                return
            except OSError:  # another filesystem, or a read-only folder moved by a non-root
                pass
        rmtree(path)

    def empty(self) -> None:
        """Delete what waits; the next measurement waits out the kernel's memory of it."""
        if not self.folder.exists():
            return
        held = any(os.scandir(self.folder))
        rmtree(self.folder)
        if not held:
            return
        os.sync()
        self.quiet_after = time.monotonic() + RECENTLY_DELETED_S

    def wait_quiet(self, log: Callable[[str], None]) -> None:
        left = self.quiet_after - time.monotonic()
        if left > 0:
            log(f"waiting {left:.0f} s for the inodes just freed to age out")
            time.sleep(left)


def _room(folder: Path) -> bool:
    """Whether the disk of ``folder`` can hold more trees waiting in the trash: 2 GiB and
    200,000 inodes left (a full run keeps some GB and about a million inodes there)."""
    st = os.statvfs(folder)
    inodes_ok = st.f_files == 0 or st.f_favail >= 200_000  # 0: the filesystem counts none
    return st.f_bavail * st.f_frsize >= 2 << 30 and inodes_ok


def rmtree(path: Path) -> None:
    """rm -rf that copes with read-only cache objects and folders."""
    if not os.path.lexists(path):
        return
    subprocess.run(["rm", "-rf", str(path)], check=True)
