"""Facts about the host that differ between platforms, each found one way, here.

Linux-only calls (``os.sched_getaffinity``) have a portable fallback, so that a command on a
host without them (macOS) works, slower at worst. Only os is imported: the quick status uses it.
"""

from __future__ import annotations

import os


def cores() -> int:
    """Cores this process may run on (its affinity where the host tells it, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
