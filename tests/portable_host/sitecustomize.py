"""``pytest --portable-host``: this Python made to look like a host without Linux's extras.

A simulation, not macOS: the kernel is still Linux. Every Python started with this folder
first on PYTHONPATH (pytest itself, and the repro processes the tests start) imports this
module at startup. It removes what only Linux offers from ``os`` (sched_getaffinity,
copy_file_range, O_PATH), and has repro.host choose its paths on a POSIX platform that is
neither Linux nor macOS: no prctl, no /proc, no sendfile into a file, no FICLONE. conftest.py
puts BusyBox's find (no -printf) first on PATH.
"""

from __future__ import annotations

import importlib
import os
import sys

for name in ("sched_getaffinity", "copy_file_range", "O_PATH"):
    if hasattr(os, name):
        delattr(os, name)

platform, sys.platform = sys.platform, "portable-host"
try:
    if "repro.host" in sys.modules:  # pytest's conftest imported it before the option was read
        importlib.reload(sys.modules["repro.host"])
    else:
        importlib.import_module("repro.host")
finally:
    sys.platform = platform
