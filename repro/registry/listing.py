"""``repro ls``: what a repository holds under a folder at a revision, the files git tracks and
the data repro tracks together, with sizes, read from its git objects and the listings of its
storage (no object is downloaded but the manifests of folders listed with -R)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from repro.errors import ReproError
from repro.objects.ids import OBJECTS, fanout, is_manifest, joined, object_key
from repro.objects.manifest import parse_manifest
from repro.paths import check_relative
from repro.registry.source import Source, below
from repro.remotes.base import Remote


class Entry(NamedTuple):
    path: str  # relative to the folder listed
    is_dir: bool
    is_out: bool  # data repro tracks; else a file or folder git tracks
    size: int | None = None  # bytes of a file, when known
    md5: str | None = None  # the object id of tracked data

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "isdir": self.is_dir,
            "isout": self.is_out,
            "size": self.size,
            "md5": self.md5,
        }


def listing(source: Source, path: str | None, recursive: bool) -> list[Entry]:
    """The entries below ``path`` (the root when None), sorted; everything below with
    ``recursive``, else one level (folders marked)."""
    prefix = "" if path in (None, "", ".", "/") else check_relative(path.strip("/"), "path")
    outs = [o for s in source.stages() for o in s.outs if o.cache and o.md5 is not None]
    for out in outs:  # the folder listed is tracked data, or inside it
        if prefix == out.path or prefix.startswith(out.path + "/"):
            if not is_manifest(out.md5 or ""):
                if prefix != out.path:
                    break
                name = prefix.rpartition("/")[2]
                return _sized(source, [Entry(name, False, True, None, out.md5)])
            within = "" if prefix == out.path else prefix[len(out.path) + 1 :]
            files = _manifest(source, str(out.md5))
            return _sized(source, _level(files, within, recursive, True))
    found: dict[str, Entry] = {}
    for git_path, is_dir, size in source.git_files(prefix, recursive):
        shown = below(git_path, prefix) or git_path
        found[shown] = Entry(shown, is_dir, False, size)
    data: list[Entry] = []
    for out in outs:
        rel = below(out.path, prefix)
        if rel is None:
            continue
        if recursive and is_manifest(str(out.md5)):
            files = _manifest(source, str(out.md5))
            data += [Entry(f"{rel}/{inner}", False, True, None, md5) for inner, md5 in files]
        elif recursive or "/" not in rel:
            data.append(Entry(rel, is_manifest(str(out.md5)), True, None, out.md5))
        else:
            data.append(Entry(rel.split("/", 1)[0], True, False))
    for entry in _sized(source, data):
        if entry.path not in found or entry.is_out:
            found[entry.path] = entry
    if prefix and not found:
        raise ReproError(
            f"'{prefix}' is neither a folder nor data in {source.label}; 'repro ls {source.url}' "
            "lists the root"
        )
    return sorted(found.values())


def _level(
    files: Iterable[tuple[str, str | None]], within: str, recursive: bool, is_out: bool
) -> list[Entry]:
    """Entries for ``files`` (relpath, md5) below the folder ``within``: all of them, or one
    level with each folder once."""
    entries: dict[str, Entry] = {}
    for relpath, md5 in files:
        rel = below(relpath, within)
        if rel is None:
            continue
        if recursive or "/" not in rel:
            entries[rel] = Entry(rel, False, is_out, None, md5)
        else:
            folder = rel.split("/", 1)[0]
            entries.setdefault(folder, Entry(folder, True, is_out))
    return list(entries.values())


def _manifest(source: Source, object_id: str) -> list[tuple[str, str]]:
    """A tracked folder's (relpath, md5) entries, read from the source's storage."""
    remote = source.storage(object_id)
    try:
        with tempfile.TemporaryDirectory(prefix="repro-ls-") as scratch:
            dest = Path(scratch) / "manifest"
            try:
                remote.get(object_key(object_id), dest)
            except FileNotFoundError:
                raise ReproError(
                    f"the folder {object_id} is not on {remote.url}; ask the maintainers of "
                    f"{source.url} to 'repro push'"
                ) from None
            return parse_manifest(dest.read_bytes(), object_id, remote.url)
    finally:
        remote.close()


def _sized(source: Source, entries: list[Entry]) -> list[Entry]:
    """``entries`` with the sizes of their data files, from listings of the source's storage
    (one per fan-out folder); without them when it cannot be reached."""
    wanted = {e.md5 for e in entries if e.is_out and not e.is_dir and e.md5}
    if not wanted:
        return entries
    try:
        remote = source.storage(next(iter(wanted)))
    except ReproError:
        return entries
    try:
        sizes = _sizes(remote, wanted)
    except ReproError:
        return entries
    finally:
        remote.close()
    return [e._replace(size=sizes.get(e.md5 or "", e.size)) for e in entries]


def _sizes(remote: Remote, wanted: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for fan in sorted({fanout(oid) for oid in wanted}):
        for key, size in remote.list_sizes(f"{OBJECTS}/{fan}/"):
            name = key.rpartition("/")[2]
            found[joined(fan, name)] = size
    return found
