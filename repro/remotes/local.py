"""A remote that is a folder: another disk, a network mount, a docker volume."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit

from repro.errors import RemoteError
from repro.remotes.common import bulk_exists, check_key, folder_prefix, is_temp, temp_name

CHUNK = 1 << 20


def open_remote(url: str, options: Mapping[str, str]) -> LocalRemote:
    """Open a plain path or ``file://`` URL; a folder needs no options."""
    del options
    root = Path(unquote(urlsplit(url).path)) if "://" in url else Path(url)
    return LocalRemote(root.expanduser().absolute())


def _remote_error(action: str, path: Path, exc: OSError) -> RemoteError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the folder writable for you, or choose another remote"
    elif exc.errno == errno.ENOSPC:
        hint = "free some space there, or choose another remote"
    else:
        hint = "check that the folder is mounted and reachable"
    return RemoteError(f"cannot {action} {path}: {exc.strerror or exc}; {hint}")


class LocalRemote:
    """Objects are plain files under ``root``; uploads go to a temp name, then ``os.replace``."""

    forkable = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._made: set[Path] = set()  # folders known to exist: one mkdir each, not per put

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _exists_one(self, key: str) -> bool:
        return self._path(key).is_file()

    def exists(self, keys: Iterable[str]) -> set[str]:
        return bulk_exists(keys, self._exists_one, self.list)

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        start = folder_prefix(prefix)
        base = self.root / start if start else self.root
        try:
            yield from self._walk(base, start)
        except OSError as exc:
            raise _remote_error("list", base, exc) from exc

    def _walk(self, folder: Path, key_prefix: str) -> Iterator[tuple[str, int]]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in sorted(entries, key=lambda e: e.name):
            if is_temp(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{key_prefix}{entry.name}/")
            elif entry.is_file():
                yield f"{key_prefix}{entry.name}", entry.stat().st_size

    def put(self, source: Path, key: str) -> None:
        dest = self._path(key)
        tmp = dest.with_name(temp_name(dest.name))
        # Opened first, so that a problem with the local file is not blamed on the remote.
        with source.open("rb") as src:
            try:
                if dest.parent not in self._made:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    self._made.add(dest.parent)
                with open(tmp, "xb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                os.replace(tmp, dest)
            except OSError as exc:
                raise _remote_error("write", dest, exc) from exc
            finally:
                # Only left over when the copy or the rename failed.
                with suppress(OSError):
                    tmp.unlink(missing_ok=True)

    def get(self, key: str, dest: Path) -> None:
        path = self._path(key)
        try:
            shutil.copyfile(path, dest)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _remote_error("read", path, exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _remote_error("delete", path, exc) from exc

    def close(self) -> None:
        """Nothing to release."""
