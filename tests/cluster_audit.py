"""Loaded into every test worker (``dask worker --preload``): records each path below
REPRO_TEST_WATCHED that the worker's Python opens, lists or enters, one a line in
REPRO_TEST_OPENED, so that the tests can show that a worker never reads the user's project."""

from __future__ import annotations

import os
import sys
from typing import Any

_WATCHED = os.environ["REPRO_TEST_WATCHED"] + "/"
_OPENED = os.environ["REPRO_TEST_OPENED"]
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "os.chdir", "shutil.copyfile"})


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if (path + "/").startswith(_WATCHED):
        with open(_OPENED, "a", encoding="utf-8") as handle:
            handle.write(f"{event} {path}\n")


sys.addaudithook(_hook)
