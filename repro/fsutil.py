"""Atomic file writes: a temp name beside the target, then rename, so a kill leaves old or new."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing and pathlib would cost status_memo's quick path an import
if TYPE_CHECKING:
    from pathlib import Path


def tmp_name(path: Path) -> Path:
    """A unique hidden name in the same folder (so the final rename stays on one filesystem)."""
    return path.with_name(_hidden(path.name))


def _hidden(name: str) -> str:
    return f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, _hidden(name))
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 - contextlib would cost status_memo's quick path an import
            os.unlink(tmp)
        except OSError:
            pass
        raise
