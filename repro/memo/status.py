"""A status that found nothing changed, remembered so that the next one can say so at once.

``repro status`` with nothing changed is the command users run most, and most of its time went
to loading Python modules (argparse, pathlib, sqlite3, PyYAML...), not to the walk itself. So a
clean status leaves behind, in ``.repro/tmp/status-clean``, exactly what it looked at: the bytes
of every stage file, and for every path its stages' dependencies and outputs read, its (inode,
mtime, size), or for a folder the raw find listing of its files. The next plain ``repro status``
loads only this module: if the stage files are byte for byte the same and every walk is
identical, nothing can have changed, and it says so. A few files with new mtimes but the same
bytes (a ``touch``) still count as unchanged, as in the hash memo. Anything else, or any doubt,
and the full status runs. Only what was settled (see walk.RACY_NS) is remembered.

The memo knows nothing of stages: the full status tells it what it observed (:class:`Seen`,
:class:`Observed`). A stage that depends on something else than workspace paths is observed
as unwatchable, and then nothing is remembered: the memo would answer "up to date" wrongly.

A stage pinned to an image ID is answered from here only while its image name still points
at the ID the full status saw: the engine is asked once per image (runners/docker/engine.py,
one HTTP request over its socket, without docker-py), so a retagged image is noticed at once.
Without an engine on a unix socket, the full status runs.
"""

from __future__ import annotations

import os
import stat as stat_mod
import sys
import time

from repro.errors import ReproError
from repro.memo.store import NOT_ANSWERED, Memo
from repro.walk import find_listing, project_root, same_stage_files, settled

TYPE_CHECKING = False  # typing itself costs this module's callers a few milliseconds
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from repro.walk import FileKey

MEMO = Memo("status-clean", 2)
UP_TO_DATE = "Data and pipelines are up to date."
QUIET = frozenset(("-q", "--quiet"))

# What is remembered of one path: ("f", inode, mtime_ns, size) or ("d", find listing).
Signature = tuple[str | int | bytes, ...]
# (stage file -> its bytes, stage file -> its outputs, path -> signature,
#  image name -> the ID it pointed at, or None when the engine had no such image)
Remembered = tuple[
    dict[str, bytes], dict[str, list[str]], dict[str, Signature], dict[str, str | None]
]


def eligible(argv: Sequence[str]) -> bool | None:
    """Whether ``argv`` asks for a status the memo may answer: None when not (any other
    argument), else whether it was asked quietly."""
    if argv.count("status") != 1 or not set(argv) - {"status"} <= QUIET:
        return None
    return bool(QUIET & set(argv))


class _Changed(Exception):
    """Something differs from the memo: the full status decides."""


def answer(quiet: bool) -> int:
    """The exit code of a status the memo shows nothing changed for; NOT_ANSWERED when the
    full status must run (no memo, anything changed or in doubt)."""
    try:
        root = project_root(os.getcwd())
        if root is None:
            return NOT_ANSWERED
        memo = _load(root)
        if memo is None:
            return NOT_ANSWERED
        stage_bytes, outs, signatures, images = memo
        if not same_stage_files(root, stage_bytes, outs):
            return NOT_ANSWERED
        renewed = {path: _check(root, path, sig) for path, sig in signatures.items()}
        if images and not _same_images(images):
            return NOT_ANSWERED
    except (_Changed, OSError):
        return NOT_ANSWERED
    if any(new is not None for new in renewed.values()):
        for path, new in renewed.items():
            if new is not None:
                signatures[path] = new
        MEMO.store(root, (stage_bytes, outs, signatures, images))
    if not quiet:
        sys.stdout.write(UP_TO_DATE + "\n")
        sys.stdout.flush()
    return 0


# -- the full status's side --------------------------------------------------------------------


class Seen:
    """What the hasher observed, by full path: a settled file's key, or the find listing of a
    settled folder (workspace/hashing.py reports each to its observer)."""

    def __init__(self) -> None:
        self.signatures: dict[str, Signature] = {}

    def file(self, path: str, key: FileKey) -> None:
        self.signatures[path] = ("f", *key)

    def folder(self, path: str, listing: bytes) -> None:
        self.signatures[path] = ("d", listing)


class Observed:
    """One stage as the full status judged it (a plain class: typing's NamedTuple would cost
    the quick side an import)."""

    def __init__(
        self,
        file: str,
        data: bytes,
        outs: list[str],
        watched: list[str] | None,
        image: str | None,
    ) -> None:
        self.file = file  # the stage file, relative to the root
        self.data = data  # its bytes, which parse to the stage judged
        self.outs = outs  # its outputs (the walk for stage files does not enter them)
        self.watched = watched  # the workspace paths deciding it; None: something else does
        self.image = image  # the name of the image it is pinned to by ID, if it is


def save(
    root: Path,
    stages: Sequence[Observed | None],
    seen: Seen,
    images: dict[str, str | None] | None,
) -> None:
    """Remember a status that found every stage of the project up to date.

    ``stages`` are all of them (None for one whose file changed since it was judged),
    ``seen`` what the hasher observed, ``images`` the engine's answers for image names (None
    when it was not asked). Anything not observed, racily recent, or not watchable, and
    nothing is remembered.
    """
    stage_bytes: dict[str, bytes] = {}
    outs: dict[str, list[str]] = {}
    signatures: dict[str, Signature] = {}
    answers: dict[str, str | None] = {}
    for stage in stages:
        if stage is None or stage.watched is None:
            return
        if stage.image is not None:
            if images is None or stage.image not in images:
                return
            answers[stage.image] = images[stage.image]
        stage_bytes[stage.file] = stage.data
        outs.setdefault(stage.file, []).extend(stage.outs)  # a repro.yaml's stages share it
        for path in stage.watched:
            signature = seen.signatures.get(str(root / path))
            if signature is None:
                return
            signatures[path] = signature
    MEMO.store(root, (stage_bytes, outs, signatures, answers))


# -- the quick side ----------------------------------------------------------------------------


def _load(root: str) -> Remembered | None:
    memo = MEMO.load(root)
    if not isinstance(memo, tuple) or len(memo) != 4:
        return None
    if not all(isinstance(part, dict) for part in memo):
        return None
    return memo


def _same_images(images: dict[str, str | None]) -> bool:
    """Whether every image name still points where it did, asked the way the full status
    asks; False when the engine cannot be asked here (the full status then decides)."""
    from repro.runners.docker import engine

    if engine.socket_path() is None:
        return False  # docker-py would be needed: not on the quick path
    try:
        return all(engine.image_id(name) == known for name, known in images.items())
    except ReproError:
        return False


def _check(root: str, path: str, signature: Signature) -> Signature | None:
    """None when ``path`` is as remembered; its new signature when only mtimes moved (and that
    is settled enough to remember). Raises _Changed otherwise."""
    full = os.path.join(root, path)
    parent = os.path.dirname(full)
    if os.path.realpath(parent) != parent:  # a symlink on the way: the full status judges it
        raise _Changed
    try:
        st = os.lstat(full)
    except OSError:
        raise _Changed from None
    if signature[0] == "f":
        if stat_mod.S_ISREG(st.st_mode) and (st.st_ino, st.st_mtime_ns, st.st_size) == tuple(
            signature[1:]
        ):
            return None
        raise _Changed
    if not stat_mod.S_ISDIR(st.st_mode):
        raise _Changed
    old = signature[1]
    assert isinstance(old, bytes)
    read_at = time.time_ns()
    new = find_listing(full)
    if new is None:
        raise _Changed
    if new == old:
        return None
    return _only_touched(root, full, old, new, read_at)


def _only_touched(root: str, folder: str, old: bytes, new: bytes, read_at: int) -> Signature | None:
    """The folder's new signature when the files whose records differ kept their bytes (as
    the hash memo knows them) and are settled; None when they kept them but are too recent to
    remember. Raises _Changed otherwise."""
    from repro.memo.state import FILE, StateDB  # only now: sqlite3 is not needed otherwise
    from repro.objects.digest import quick_file_md5

    if not os.path.isfile(os.path.join(root, FILE)):
        raise _Changed  # made (and an older repro's rows adopted) by the full status only
    state = StateDB(os.path.join(root, FILE))
    try:
        touched = state.touched_only(folder, old, new, lambda path, _key: quick_file_md5(path))
        if touched is None:
            raise _Changed
        if not all(settled(key[1], read_at) for key, _md5 in touched):
            return None
        # The new walk is remembered only with the hashes behind it: the next touch of these
        # files is looked up by the keys it holds.
        state.put_files(touched, read_at)
    finally:
        state.close()
    return ("d", new)
