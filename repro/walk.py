"""Walking the work tree: tracked folders with GNU find (else in Python), and stage files.

Nothing beyond ``os`` is imported here: a status that finds nothing changed runs this module
before argparse and the rest of repro are loaded (see memo/status.py).
"""

from __future__ import annotations

import os
import stat  # os imported it already: free

from repro.host import cores

TYPE_CHECKING = False  # typing itself costs the quick status a few milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable

FileKey = tuple[int, int, int]  # (inode, mtime_ns, size)

# Every non-directory below the root: type, inode, mtime (s.ns), size, relpath; NUL-separated.
# (%P: the path below the starting point; %p: the whole path, for relative starting points.)
FIND_FORMAT = "%y %i %T@ %s %P\\0"
_FIND_FORMAT_RELATIVE = "%y %i %T@ %s %p\\0"

# Up to this many changed records, a walk is compared with the last one record by record.
FEW_CHANGED = 64

# A file modified within one timestamp tick of being read may change again without its mtime
# moving (git's "racily clean" problem). What was read of files that recent is not remembered.
RACY_NS = 100_000_000

RESERVED_DIRS = (".git", ".repro")
MAX_SPLIT_NAMES = 1000  # top-level names beyond which one find walks the folder alone
STAGE_SUFFIX = ".repro"
PIPELINE_FILE = "repro.yaml"  # named stages in one file, their recorded hashes in the lock beside
LOCK_FILE = "repro.lock"


def is_stage_file(name: str) -> bool:
    """Whether a file of this name holds stages, or what they recorded (repro.lock)."""
    return (name.endswith(STAGE_SUFFIX) and not name.startswith(".")) or name in (
        PIPELINE_FILE,
        LOCK_FILE,
    )


def settled(mtime_ns: int, read_at_ns: int) -> bool:
    """True when a file with this mtime, read at ``read_at_ns``, can be remembered safely."""
    return mtime_ns < read_at_ns - RACY_NS


_find_prints = True  # until this process learns otherwise (find_listing)


def find_listing(root: str) -> bytes | None:
    """GNU find's listing of ``root`` (FIND_FORMAT); where find has no -printf (BusyBox,
    macOS) or fails, the same records made in Python; None where ``root`` cannot be walked.

    With two cores or more, and folders at the top, two finds split the top-level entries
    between them (alternately, in directory order, so the listing of an unchanged tree is
    always the same). Spawned directly: the subprocess module alone costs a quick command
    several milliseconds.
    """
    global _find_prints
    if _find_prints:
        listing = _find_listing(root)
        if listing is not None:
            return listing
    try:
        listing = python_listing(root)
    except OSError:
        return None
    _find_prints = False  # find failed where Python did not: it has no -printf, ask no more
    return listing


def _find_listing(root: str) -> bytes | None:
    halves = _halves(root)
    if halves is None:
        argv = ["find", root, "-mindepth", "1", "!", "-type", "d", "-printf", FIND_FORMAT]
        return _collect([_spawn(argv)])
    # From inside ``root`` (sh changes folder: posix_spawn cannot), the top-level names as
    # starting points list the same relpaths as %P does from ``root``.
    script = 'cd -- "$0" && exec find "$@"'
    expression = ["!", "-type", "d", "-printf", _FIND_FORMAT_RELATIVE]
    return _collect([_spawn(["sh", "-c", script, root, *half, *expression]) for half in halves])


# find's %y letter of each kind of file that is not a folder.
_KINDS = {
    stat.S_IFREG: b"f",
    stat.S_IFLNK: b"l",
    stat.S_IFIFO: b"p",
    stat.S_IFSOCK: b"s",
    stat.S_IFCHR: b"c",
    stat.S_IFBLK: b"b",
}


def python_listing(root: str) -> bytes:
    """The records find_listing gives, made with os.scandir: several times slower than GNU
    find, for hosts whose find has no -printf. OSError where part of ``root`` is unreadable."""
    records: list[bytes] = []
    folders = [""]
    while folders:
        prefix = folders.pop()
        with os.scandir(os.path.join(root, prefix)) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append(rel + "/")
                    continue
                st = entry.stat(follow_symlinks=False)
                seconds, fraction = divmod(st.st_mtime_ns, 1_000_000_000)
                kind = _KINDS.get(stat.S_IFMT(st.st_mode), b"?")
                fields = (kind, st.st_ino, seconds, fraction, st.st_size, os.fsencode(rel))
                records.append(b"%s %d %d.%09d0 %d %s\0" % fields)  # %T@: ten digits
    return b"".join(records)


def _halves(root: str) -> tuple[list[str], list[str]] | None:
    """The top-level names of ``root`` in two halves, when a split walk is worth it and safe."""
    if cores() < 2:
        return None
    try:
        with os.scandir(root) as entries:
            names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return None
    # find reads a word starting with one of these as part of its expression, not as a path;
    # and a command line has a length limit (a flat folder of many files gains nothing anyway).
    if sum(is_dir for _, is_dir in names) < 2 or len(names) > MAX_SPLIT_NAMES:
        return None
    if any(n[0] in "-!()," for n, _ in names):
        return None
    return [n for n, _ in names[0::2]], [n for n, _ in names[1::2]]


def _spawn(argv: list[str]) -> tuple[int, int] | None:
    """(pid, read end of its stdout) of a process running ``argv``; None if it cannot start."""
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, write_end, 1),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
    except OSError:
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    return pid, read_end


def _collect(spawned: list[tuple[int, int] | None]) -> bytes | None:
    """All the output of the spawned processes, in order; None unless each exits 0.

    The pipes are drained together: a process blocked on a full pipe would walk no further.
    """
    import select

    started = [s for s in spawned if s is not None]
    chunks: dict[int, list[bytes]] = {fd: [] for _, fd in started}
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    open_fds = set(chunks)
    try:
        while open_fds:
            for fd, _event in poller.poll():
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
    except BaseException:  # Ctrl-C: find stops with us, never left running alone
        for pid, _ in started:
            os.kill(pid, 9)
        raise
    finally:
        for fd in chunks:
            os.close(fd)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid, _ in started]
    if len(started) < len(spawned) or any(codes):
        return None
    return b"".join(b"".join(chunks[fd]) for _, fd in started)


def records(listing: bytes) -> list[bytes]:
    """The records of a find listing, one per file."""
    return listing.split(b"\0")[:-1]


def changed_records(old: bytes, new: bytes) -> tuple[list[bytes], list[bytes]] | None:
    """(records gone, records added) between two listings of the same folder, when the file
    count is the same and at most FEW_CHANGED records differ; None otherwise."""
    before, after = records(old), records(new)
    if len(after) != len(before):
        return None
    # find lists an unchanged folder in the same order: compare in place first, by sets only
    # when records moved.
    pairs = [(was, now) for was, now in zip(before, after, strict=True) if was != now]
    if len(pairs) <= FEW_CHANGED:
        gone, added = {was for was, _ in pairs}, {now for _, now in pairs}
        return sorted(gone - added), sorted(added - gone)
    known = set(before)
    moved = [record for record in after if record not in known]
    if len(moved) > FEW_CHANGED:
        return None
    return sorted(known.difference(after)), moved


def touched_files(old: bytes, new: bytes) -> list[tuple[bytes, FileKey, FileKey]] | None:
    """The files whose records differ between two listings of one folder, as (relpath, key
    before, key now), keys being (inode, mtime_ns, size); None unless the same regular files
    are there, at most FEW_CHANGED of them changed (a touch, a rewrite: their bytes may or
    may not have)."""
    changed = changed_records(old, new)
    if changed is None:
        return None
    gone, added = changed
    before = {}
    for record in gone:
        _kind, inode, mtime, size, rel = record.split(b" ", 4)
        before[rel] = (int(inode), mtime_ns(mtime), int(size))
    if len(before) != len(added):
        return None
    found = []
    for record in added:
        kind, inode, mtime, size, rel = record.split(b" ", 4)
        was = before.get(rel)
        if was is None or kind != b"f":
            return None  # renamed, or no longer a regular file
        found.append((rel, was, (int(inode), mtime_ns(mtime), int(size))))
    return found


def mtime_ns(field: bytes) -> int:
    """A find ``%T@`` field (seconds.fraction) as integer nanoseconds."""
    seconds, _, fraction = field.partition(b".")
    return int(seconds) * 1_000_000_000 + int((fraction + b"000000000")[:9])


def stage_files(root: str, outs_of: Callable[[str], list[str]]) -> list[str]:
    """Every stage file in the work tree at ``root`` (repro.yaml and repro.lock files too),
    sorted, without walking into .git, .repro or the outputs that ``outs_of(stage_file)``
    names."""
    found: list[str] = []
    pruned: set[str] = set()
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/")
        for name in sorted(files):
            if is_stage_file(name):
                path = f"{rel_folder}/{name}" if rel_folder else name
                found.append(path)
                pruned.update(outs_of(path))
        keep = []
        for name in sorted(dirs):
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if name not in RESERVED_DIRS and rel not in pruned:
                keep.append(name)
        dirs[:] = keep
    return sorted(found)


def project_root(start: str) -> str | None:
    """The nearest folder at or above ``start`` (made real) holding .repro/; None if none."""
    folder = os.path.realpath(start)
    while True:
        if os.path.isdir(os.path.join(folder, ".repro")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


class _Differs(Exception):
    pass


def same_stage_files(root: str, stage_bytes: dict[str, bytes], outs: dict[str, list[str]]) -> bool:
    """True when the work tree holds exactly these stage files, byte for byte (``outs`` are
    their outputs, which the walk for stage files does not enter)."""

    def outs_of(path: str) -> list[str]:
        from repro.fsutil import read_regular

        try:
            data = read_regular(os.path.join(root, path))  # a fifo there must not hang status
        except OSError:
            raise _Differs from None
        if stage_bytes.get(path) != data:
            raise _Differs
        return outs[path]

    try:
        return set(stage_files(root, outs_of)) == stage_bytes.keys()
    except _Differs:
        return False
