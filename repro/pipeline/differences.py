"""Where two versions of an output differ, in words a user can act on.

``repro repro --check`` finds that an output's hash changed; the hash alone does not say why.
So it names the part: the files of a folder, the members of a zip (TorchScript, wheels, jars)
or tar archive, the first differing line of a text, else the first differing byte.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

SHOWN = 5  # parts named in one message; more are counted
LINE_CHARS = 60  # of a differing line shown
TEXT_LIMIT = 16 << 20  # bytes: a larger file is compared byte by byte, never held whole
CHUNK = 1 << 20


def between_folders(recorded: Iterable[tuple[str, str]], now: Iterable[tuple[str, str]]) -> str:
    """Which files of a folder differ, from its two lists of (relpath, md5)."""
    before, after = dict(recorded), dict(now)
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    parts = [f"'{p}' differs" for p in changed]
    parts += [f"'{p}' is new" for p in sorted(after.keys() - before.keys())]
    parts += [f"'{p}' is missing" for p in sorted(before.keys() - after.keys())]
    return _listed("files", parts)


def between_files(recorded: Path, now: Path) -> str:
    """Where the file ``now`` first differs from ``recorded``."""
    if zipfile.is_zipfile(recorded) and zipfile.is_zipfile(now):
        return _listed("members", _zip_parts(recorded, now)) or "the archives' layout differs"
    if _is_tar(recorded) and _is_tar(now):
        return _listed("members", _tar_parts(recorded, now)) or "the archives' layout differs"
    sizes = (recorded.stat().st_size, now.stat().st_size)
    if max(sizes) <= TEXT_LIMIT:  # a text worth reading as lines; a model is compared by bytes
        old, new = recorded.read_bytes(), now.read_bytes()
        if b"\0" not in old + new:
            try:
                return _first_line(old.decode("utf-8"), new.decode("utf-8"))
            except UnicodeDecodeError:
                pass
    return f"byte {_first_byte(recorded, now)} differs (sizes {sizes[0]} and {sizes[1]})"


def _first_byte(recorded: Path, now: Path) -> int:
    """Where two files first differ, read side by side in chunks (outputs may be gigabytes)."""
    with recorded.open("rb") as old, now.open("rb") as new:
        offset = 0
        while True:
            a, b = old.read(CHUNK), new.read(CHUNK)
            if a != b:
                at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
                return offset + (min(len(a), len(b)) if at is None else at)
            if not a:
                return offset
            offset += len(a)


def _first_line(old: str, new: str) -> str:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), 1):
        if a != b:
            return f"line {number}: {_clip(a)!r} became {_clip(b)!r}"
    if len(old_lines) != len(new_lines):
        return f"{len(old_lines)} lines became {len(new_lines)}"
    return "line endings differ"


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…"


def _zip_parts(recorded: Path, now: Path) -> list[str]:
    with zipfile.ZipFile(recorded) as old, zipfile.ZipFile(now) as new:
        before = {i.filename: i for i in old.infolist()}
        after = {i.filename: i for i in new.infolist()}
        parts = []
        for name in sorted(before.keys() & after.keys()):
            a, b = before[name], after[name]
            if (a.CRC, a.file_size) != (b.CRC, b.file_size):
                parts.append(f"'{name}' differs")
            elif a.date_time != b.date_time:
                parts.append(f"'{name}' has another timestamp")
    return parts + _presence(before.keys(), after.keys())


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _tar_parts(recorded: Path, now: Path) -> list[str]:
    with tarfile.open(recorded) as old, tarfile.open(now) as new:
        before, after = _tar_members(old), _tar_members(new)
    parts = []
    for name in sorted(before.keys() & after.keys()):
        if before[name][0] != after[name][0]:
            parts.append(f"'{name}' differs")
        elif before[name][1] != after[name][1]:
            parts.append(f"'{name}' has another owner, mode or timestamp")
    return parts + _presence(before.keys(), after.keys())


def _tar_members(archive: tarfile.TarFile) -> dict[str, tuple[str, tuple[object, ...]]]:
    """Each member's name → (md5 of its content, its metadata)."""
    found: dict[str, tuple[str, tuple[object, ...]]] = {}
    for member in archive:
        handle = archive.extractfile(member) if member.isfile() else None
        content = hashlib.md5(handle.read()).hexdigest() if handle is not None else member.linkname
        meta = (member.mode, member.uid, member.gid, member.uname, member.gname, member.mtime)
        found[member.name] = (content, meta)
    return found


def _presence(before: Iterable[str], after: Iterable[str]) -> list[str]:
    old, new = set(before), set(after)
    return [f"'{n}' is new" for n in sorted(new - old)] + [
        f"'{n}' is missing" for n in sorted(old - new)
    ]


def _listed(kind: str, parts: list[str]) -> str:
    if not parts:
        return ""
    more = f" and {len(parts) - SHOWN} more" if len(parts) > SHOWN else ""
    return f"{kind} {', '.join(parts[:SHOWN])}{more}"
