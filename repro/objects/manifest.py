"""A folder's manifest: the DVC 3 JSON list of {md5, relpath} whose md5 (+ ".dir") names the folder.

One encoder and one parser. The parser is the only way in, wherever the bytes come from (the
cache, a remote, a download being checked): they must hash to the manifest's id, and every
entry must be one that can be checked out safely.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Sequence

from repro.errors import CorruptObjectError, ReproError
from repro.objects.digest import bytes_md5
from repro.objects.ids import content_md5, is_md5
from repro.paths import has_git_part


def manifest_bytes(entries: Sequence[tuple[str, str]]) -> bytes:
    """The manifest of DVC 3: sorted JSON list of {md5, relpath}, default separators."""
    payload = [{"md5": md5, "relpath": rel} for rel, md5 in entries]
    return json.dumps(payload, sort_keys=True).encode("utf-8")


def parse_manifest(data: bytes, object_id: str, where: str) -> list[tuple[str, str]]:
    """(relpath, md5) pairs of the manifest ``object_id`` found in ``where``.

    CorruptObjectError when the bytes do not hash to the id. Their hash proves only that
    someone wrote them so, so each relpath must also be canonical (what posixpath.normpath
    leaves alone: relative, no empty, "." or ".." part), listed once, and not the folder of
    another: anything else could write outside the folder or make checkout depend on order.
    A malformed manifest is a ReproError that names it.
    """
    if bytes_md5(data) != content_md5(object_id):
        raise CorruptObjectError(object_id, where)
    name = f"directory manifest {object_id} in {where}"
    try:
        payload = json.loads(data.decode("utf-8"))
        rels = list(map(_RELPATH, payload))
        md5s = list(map(_MD5_OF, payload))
        joined = "\0".join(rels)  # a TypeError when one is not a string
        hex_digits = "".join(md5s)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise ReproError(
            f"{name} is malformed ({exc}); run 'repro fsck' (-r REMOTE for a remote's copy)"
        ) from exc
    # Checked all at once (a manifest can list 100,000 files, and checkout parses it), then
    # one by one to name the culprit only when something is wrong.
    if rels and (_bad_md5s(hex_digits, md5s) or _bad_relpaths(joined, rels)):
        raise ReproError(
            f"{name} has a bad entry {_culprit(rels, md5s)}; "
            "run 'repro fsck' (-r REMOTE for a remote's copy)"
        )
    return list(zip(rels, md5s, strict=True))


def _bad_md5s(hex_digits: str, md5s: list[str]) -> bool:
    """True unless each of ``md5s`` (``hex_digits`` joined) is 32 lowercase hex digits."""
    if set(map(len, md5s)) != {32} or any(upper in hex_digits for upper in "ABCDEF"):
        return True
    try:  # all hex digits: fromhex skips whitespace, but then yields fewer bytes
        return len(bytes.fromhex(hex_digits)) != 16 * len(md5s)
    except ValueError:
        return True


def _bad_relpaths(joined: str, rels: list[str]) -> bool:
    """True unless the relpaths (``joined`` by NULs) are canonical, distinct, and none is
    also the folder of another, nor has a part named .git."""
    if joined.startswith("/") or "\0/" in joined or joined.count("\0") != len(rels) - 1:
        return True  # absolute, or a NUL in one
    if has_git_part(joined):
        return True
    files = set(rels)
    if len(files) != len(rels) or "" in files or "." in files or ".." in files:
        return True
    if joined.endswith(_EMPTY_OR_DOTS) or any(end in joined for end in _EMPTY_OR_DOTS_IN):
        return True  # "a/", "a/." or "a/.."
    # Every folder above an entry must be canonical and none a file. Level by level, each in
    # C: a Python loop per entry or folder would cost as much as the JSON itself.
    level = set(map(_FOLDER, map(str.rpartition, rels, itertools.repeat("/"))))
    level.discard("")
    folders = level
    while level:
        # Each part of a folder is the last part of one: "a//b" gives "a/", "a/./b" "a/.".
        level_text = "\0".join(level) + "\0"
        if any(end in level_text for end in _EMPTY_OR_DOTS_IN):
            return True
        if "/" not in level_text:
            break
        level = set(map(_FOLDER, map(str.rpartition, level, itertools.repeat("/"))))
        level.discard("")
        level -= folders
        folders = folders | level
    return "." in folders or ".." in folders or not files.isdisjoint(folders)


def _culprit(rels: list[str], md5s: list[str]) -> str:
    """The first bad entry, quoted, with why when the entry alone looks fine."""
    seen: set[str] = set()
    for rel, md5 in zip(rels, md5s, strict=True):
        if not is_md5(md5) or _bad_relpaths(rel, [rel]):
            return repr(rel)
        if rel in seen:
            return f"{rel!r} (listed twice)"
        seen.add(rel)
    folders = {rel.rpartition("/")[0] for rel in rels}
    for rel in rels:
        if rel in folders or any(folder.startswith(rel + "/") for folder in folders):
            return f"{rel!r} (both a file and a folder)"
    return "(none alone)"  # unreachable while the checks agree


_RELPATH = operator.itemgetter("relpath")
_MD5_OF = operator.itemgetter("md5")
_FOLDER = operator.itemgetter(0)
_EMPTY_OR_DOTS = ("/", "/.", "/..")
_EMPTY_OR_DOTS_IN = ("/\0", "/.\0", "/..\0")
