"""Atomic file writes: a temp name beside the target, then rename, so a kill leaves old or new."""

from __future__ import annotations

import os
from pathlib import Path


def tmp_name(path: Path) -> Path:
    """A unique hidden name in the same folder (so the final rename stays on one filesystem)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
