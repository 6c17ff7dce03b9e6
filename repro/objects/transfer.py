"""Move objects between the local cache and a remote: push, fetch, status, verify, gc.

Both sides name and lay out objects as ids.py says. A transfer moves only what the other side
lacks, checks every downloaded byte against its name, and never lets a partial or corrupt
object take an object's name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple, TypeVar

from repro import host, workers
from repro.errors import CorruptObjectError, RemoteError, ReproError
from repro.fsutil import TEMP_PREFIX, remove_dead_stagings, staging_name, temp_name
from repro.objects.ids import (
    PREFIX,
    ObjectId,
    content_md5,
    fanout,
    is_manifest,
    is_object_id,
    name_in_fanout,
    object_id_of_key,
    object_key,
    object_path,
)
from repro.objects.manifest import parse_manifest
from repro.objects.store import READ_ONLY, held_objects

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from repro.remotes.base import Remote

# Objects per task handed to the thread pool.
BATCH = 64
FOLDER_STAGING = TEMP_PREFIX + "folder-"  # a cache folder being fetched (fsutil.staging_name)


def default_jobs() -> int:
    """Transfers wait on the network more than the CPU: a few threads per core."""
    return min(32, 4 * (os.cpu_count() or 1))


def _entries(data: bytes, object_id: ObjectId, where: str) -> list[ObjectId]:
    """The object ids a manifest lists, once its bytes passed parse_manifest's checks."""
    return [md5 for _relpath, md5 in parse_manifest(data, object_id, where)]


class Failure(NamedTuple):
    """An object that could not be moved, and why."""

    object_id: str
    error: ReproError


class TransferSummary(NamedTuple):
    """What a push or fetch did; ``missing`` objects are on neither side that was asked."""

    transferred: int = 0
    transferred_bytes: int = 0
    already_present: int = 0
    missing: tuple[str, ...] = ()
    failed: tuple[Failure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.missing and not self.failed


class _Progress:
    """A thread-safe files bar (count, rate, time left) with the bytes moved and their rate
    as its postfix."""

    def __init__(self, desc: str, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bytes = 0
        self._bar = None
        # Like tqdm's disable=None: no bar where stderr is not a terminal. Then tqdm is not
        # even imported (20 ms of a pull of 5,000 small files).
        isatty = getattr(sys.stderr, "isatty", None)
        if enabled and isatty is not None and isatty():
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: a folder remote forks its workers
            self._bar = tqdm(total=0, desc=desc, unit="file")

    def add(self, files: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._bar.total = (self._bar.total or 0) + files
            self._bar.refresh()

    def advance(self, files: int, nbytes: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._bytes += nbytes
            elapsed = self._bar.format_dict["elapsed"]
            size = self._bar.format_sizeof(self._bytes, "B", 1024)
            # The bar's own rate and time left count files; the bytes' rate is said beside.
            rate = self._bar.format_sizeof(self._bytes / elapsed, "B/s", 1024) if elapsed else ""
            self._bar.set_postfix_str(f"{size} {rate}".strip(), refresh=False)
            self._bar.update(files)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


Result = tuple[str, "int | BaseException"]
T = TypeVar("T")


class _Outcome:
    def __init__(self, bar: _Progress) -> None:
        self.done: dict[str, int] = {}  # item -> bytes moved
        self.missing: list[str] = []
        self.failed: list[Failure] = []
        self._bar = bar

    @property
    def settled(self) -> set[str]:
        """The items that failed or were missing: another try would not help."""
        return {f.object_id for f in self.failed} | set(self.missing)

    def merge(self, other: _Outcome) -> None:
        self.done.update(other.done)
        self.missing += other.missing
        self.failed += other.failed

    def record(self, results: list[Result], advance: bool = True) -> None:
        nbytes = 0
        for item, result in results:
            if isinstance(result, FileNotFoundError):
                self.missing.append(item)
            elif isinstance(result, ReproError):
                self.failed.append(Failure(item, result))
            elif isinstance(result, int):
                self.done[item] = result
                nbytes += result
        if advance:  # once per batch: tqdm per object shows in profiles
            self._bar.advance(len(results), nbytes)


def _run(
    action: Callable[[str], int],
    items: Sequence[str],
    jobs: int | None,
    bar: _Progress,
    forkable: bool,
    stop: Callable[[], None] | None = None,
) -> _Outcome:
    """Apply ``action`` to ``items`` in parallel.

    FileNotFoundError marks an item missing and a ReproError fails that item alone, but a
    RemoteError (unreachable, denied) stops the whole batch: the next object would fail the
    same way, and a rerun resumes since finished objects are complete.

    Network transfers wait on the network, so threads overlap them. A ``forkable`` remote (a
    folder) keeps the CPU and the kernel busy instead: there, threads would only queue for
    the GIL, and forked workers use every core.
    """
    outcome = _Outcome(bar)
    if not items:
        return outcome
    bar.add(len(items))

    def run_batch(batch: Sequence[str]) -> list[Result]:
        return [_one(action, item) for item in batch]

    if forkable:
        parts = workers.split(items, jobs or host.cores())
        workers.run_parts(run_batch, parts, outcome.record)
        return outcome
    _run_threads(run_batch, items, jobs or default_jobs(), outcome.record, stop)
    return outcome


PutGroup = Callable[[Sequence[tuple[str, str]]], None]
GetMany = Callable[[Sequence[tuple[str, str]], bool], Iterable[tuple[str, str]]]
PutMany = Callable[
    [Sequence[tuple[str, str]], Callable[[int, int], None], bool], Iterable[tuple[str, int]]
]
GroupAction = Callable[[list[str]], list[Result]]


def _run_by_folder(
    action: GroupAction,
    object_ids: Sequence[str],
    jobs: int | None,
    bar: _Progress,
    forkable: bool,
    stop: Callable[[], None] | None = None,
) -> _Outcome:
    """``action`` over the objects, a fan-out folder (``files/md5/ab``) of them at a time: a
    folder new on the receiving side is then built aside and renamed into place once, not
    object by object. Forked workers take contiguous runs of folders of about equal size."""
    outcome = _Outcome(bar)
    if not object_ids:
        return outcome
    bar.add(len(object_ids))
    folders: dict[str, list[str]] = {}
    for object_id in object_ids:
        folders.setdefault(fanout(object_id), []).append(object_id)
    groups = list(folders.values())

    def run_batch(batch: Sequence[list[str]]) -> list[Result]:
        return [result for group in batch for result in action(group)]

    if not forkable:
        _run_threads(run_batch, groups, jobs or default_jobs(), outcome.record, stop)
        return outcome
    count = max(1, min(jobs or host.cores(), len(object_ids) // workers.MIN_ITEMS or 1))
    parts: list[list[list[str]]] = [[] for _ in range(count)]
    share, placed = len(object_ids) / count, 0
    for group in groups:
        parts[min(int(placed / share), count - 1)].append(group)
        placed += len(group)
    # A folder at a time: the progress bar moves with each folder, and where the kernel
    # cannot kill a worker with its parent (workers._die_with_parent), the worker stops
    # after the folder at hand.
    workers.run_parts(run_batch, parts, outcome.record, batch=1)
    return outcome


def _one(action: Callable[[str], int], item: str) -> Result:
    """``action(item)``, or the error that marks it missing or failed (a RemoteError, which
    would fail every other item too, stops the whole transfer)."""
    try:
        return (item, action(item))
    except RemoteError:
        raise
    except (FileNotFoundError, ReproError) as exc:
        return (item, exc)


def _run_threads(
    run_batch: Callable[[Sequence[T]], list[Result]],
    items: Sequence[T],
    jobs: int,
    record: Callable[[list[Result]], None],
    stop: Callable[[], None] | None = None,
) -> None:
    pool_size = min(jobs, len(items))
    # Small batches per task: a future per object costs more than copying a small file.
    size = max(1, min(BATCH, len(items) // (pool_size * 4)))
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    pool = ThreadPoolExecutor(max_workers=pool_size)
    try:
        futures = [pool.submit(run_batch, batch) for batch in batches]
        for future in as_completed(futures):
            record(future.result())
    except KeyboardInterrupt:
        if stop is not None:
            stop()  # the transfers running stop at their next chunk, not at their object's end
        raise
    finally:
        # After an error or Ctrl-C nothing new starts; the transfers already running finish.
        pool.shutdown(wait=True, cancel_futures=True)


def _stop(remote: Remote) -> Callable[[], None] | None:
    """What stops the remote's running transfers at Ctrl-C, if it can."""
    stop: Callable[[], None] | None = getattr(remote, "cancel", None)
    return stop


def _check_ids(object_ids: Iterable[str]) -> list[str]:
    """Deduplicate, keeping order; refuse ids that are no md5 (they would escape the layout)."""
    unique = list(dict.fromkeys(object_ids))
    for object_id in unique:
        if not is_object_id(object_id):
            raise ReproError(f"'{object_id}' is not an object id (an md5, maybe with .dir)")
    return unique


def _remote_has(remote: Remote, object_ids: Iterable[str]) -> set[str]:
    """Which objects the remote holds, asked in one bulk call."""
    by_key = {object_key(oid): oid for oid in object_ids}
    return {by_key[key] for key in remote.exists(by_key)}


def _read_manifest(
    remote: Remote | None, cache_dir: Path | None, object_id: ObjectId
) -> list[ObjectId] | None:
    """A manifest's entries from the cache, else from the remote (not stored); None if absent."""
    if cache_dir is not None:
        try:
            data = object_path(cache_dir, object_id).read_bytes()
        except FileNotFoundError:
            pass
        else:
            return _entries(data, object_id, str(cache_dir))
    if remote is None:
        return None
    with tempfile.TemporaryDirectory(prefix="repro-manifest-") as tmp:
        dest = Path(tmp) / "manifest"
        try:
            remote.get(object_key(object_id), dest)
        except FileNotFoundError:
            return None
        return _entries(dest.read_bytes(), object_id, remote.url)


def _get_checked(remote: Remote, object_id: ObjectId, dest: str | Path) -> list[ObjectId]:
    """Download an object into ``dest`` and check it (``_verified``)."""
    return _verified(remote, object_id, remote.get(object_key(object_id), dest), dest)


def _verified(remote: Remote, object_id: ObjectId, md5: str, path: str | Path) -> list[ObjectId]:
    """CorruptObjectError unless ``md5``, that of the bytes downloaded into ``path``, is the
    object's id, and a manifest's entries must pass parse_manifest. The entries of a manifest,
    else []."""
    if md5 != content_md5(object_id):
        raise CorruptObjectError(object_id, remote.url)
    if not is_manifest(object_id):
        return []
    with open(path, "rb") as handle:
        return _entries(handle.read(), object_id, remote.url)


class Transfer:
    """Objects between the local cache at ``cache_dir`` and ``remote``, ``jobs`` at a time (by
    default what suits the remote), with a progress bar when ``progress`` and stderr is a
    terminal."""

    def __init__(
        self, remote: Remote, cache_dir: Path, jobs: int | None = None, progress: bool = True
    ) -> None:
        self.remote = remote
        self.cache_dir = cache_dir
        self.jobs = jobs
        self.progress = progress
        self._aside: bool | None = None  # whether cache folders can be built aside

    def push(self, object_ids: Iterable[ObjectId]) -> TransferSummary:
        """Upload the objects (manifests expanded) that the remote lacks; manifests go last."""
        remote, jobs = self.remote, self.jobs
        wanted = _check_ids(object_ids)
        failed: list[Failure] = []
        manifests: dict[str, list[str]] = {}
        for object_id in filter(is_manifest, wanted):
            try:
                entries = _read_manifest(None, self.cache_dir, object_id)
            except ReproError as exc:
                failed.append(Failure(object_id, exc))
                continue
            if entries is not None:
                manifests[object_id] = entries
        files = list(
            dict.fromkeys(
                [oid for oid in wanted if not is_manifest(oid)]
                + [oid for entries in manifests.values() for oid in entries]
            )
        )
        unreadable = {f.object_id for f in failed}
        asked = files + [oid for oid in wanted if is_manifest(oid) and oid not in unreadable]
        prepare: Callable[[], None] | None = getattr(remote, "prepare_put", None)
        if prepare is not None and files:
            prepare()  # its login overlaps the question below
        on_remote = _remote_has(remote, asked)
        # Manifests absent locally are fine if the remote has them; else they are missing.
        missing = [
            oid
            for oid in asked
            if is_manifest(oid) and oid not in manifests and oid not in on_remote
        ]
        to_upload = [oid for oid in files if oid not in on_remote]

        bar = _Progress("push", self.progress)
        put_group: PutGroup | None = getattr(remote, "put_group", None)
        try:
            # Manifests the remote lacks follow the files: the files' way may prepare for them.
            more = any(oid not in on_remote for oid in manifests)
            bulk = self._push_many(to_upload, bar, more)
            to_upload = [oid for oid in to_upload if oid not in bulk.done]
            if put_group is not None and remote.forkable:
                first = _run_by_folder(
                    lambda group: self._upload_group(put_group, group),
                    to_upload,
                    jobs,
                    bar,
                    forkable=True,
                )
            else:
                first = _run(self._upload, to_upload, jobs, bar, remote.forkable, _stop(remote))
            first.merge(bulk)
            stored = on_remote | first.done.keys()
            ready: list[str] = []
            for object_id, entries in manifests.items():
                if object_id in on_remote:
                    continue
                lacking = [oid for oid in entries if oid not in stored]
                if lacking:
                    # Uploading it would announce a directory that cannot be pulled whole.
                    failed.append(
                        Failure(
                            object_id,
                            ReproError(
                                f"directory manifest {object_id} not pushed: {len(lacking)} of "
                                f"its files are missing or failed (e.g. {lacking[0]})"
                            ),
                        )
                    )
                else:
                    ready.append(object_id)
            # Once every file is in place, the same way as the files (no second kind of
            # connection for a few small objects), else one by one.
            last = self._push_many(ready, bar)
            ready = [oid for oid in ready if oid not in last.done]
            second = _run(self._upload, ready, jobs, bar, remote.forkable, _stop(remote))
            second.merge(last)
        finally:
            bar.close()
        return TransferSummary(
            transferred=len(first.done) + len(second.done),
            transferred_bytes=sum(first.done.values()) + sum(second.done.values()),
            already_present=len(on_remote),
            missing=tuple(missing + first.missing + second.missing),
            failed=tuple(failed + first.failed + second.failed),
        )

    def _push_many(
        self, object_ids: Sequence[ObjectId], bar: _Progress, more: bool = False
    ) -> _Outcome:
        """Upload what the remote's ``put_many`` takes; the rest is left to the object-by-object
        way. The bar moves as objects are sent, though they take their names later. ``more``:
        another call follows."""
        outcome = _Outcome(bar)
        put_many: PutMany | None = getattr(self.remote, "put_many", None)
        if put_many is None or not object_ids:
            return outcome
        keys = {object_key(oid): oid for oid in object_ids}
        bar.add(len(keys))
        sent = [0, 0]  # objects and bytes the bar counted

        def on_sent(files: int, nbytes: int) -> None:
            sent[0] += files
            sent[1] += nbytes
            bar.advance(files, nbytes)

        results: list[Result] = []
        try:
            items = [(f"{self.cache_dir}/{key}", key) for key in keys]
            for key, size in put_many(items, on_sent, more):
                results.append((keys[key], size))
                if len(results) >= BATCH:
                    outcome.record(results, advance=False)
                    results = []
        finally:
            outcome.record(results, advance=False)
            # What was sent but not placed, and what was not sent, go the other way, counted
            # again there.
            bar.advance(len(outcome.done) - sent[0], sum(outcome.done.values()) - sent[1])
            bar.add(len(outcome.done) - len(keys))
        return outcome

    def _fetch_many(
        self,
        object_ids: Sequence[ObjectId],
        bar: _Progress,
        final: Callable[[ObjectId], str],
        more: bool = False,
        aside: bool = False,
    ) -> _Outcome:
        """Download what the remote's ``get_many`` gives into each object's ``final`` path,
        each verified and renamed into place like one downloaded alone; the rest is left to
        the object-by-object way. ``more``: another call follows (get_many's hint). ``aside``:
        the final paths are the cache's, and a cache folder absent now is built aside and
        renamed into place once, not object by object (as ``_download_group`` does)."""
        outcome = _Outcome(bar)
        get_many: GetMany | None = getattr(self.remote, "get_many", None)
        if get_many is None or not object_ids:
            return outcome
        # key -> (id, file written, final path or None where it is written in place)
        wanted: dict[str, tuple[ObjectId, str, str | None]] = {}
        stagings: dict[str, str | None] = {}  # final folder -> the one built aside, or None
        try:
            aside = aside and self._can_build_aside()
            for object_id in object_ids:
                target = final(object_id)
                folder, _, name = target.rpartition("/")
                if folder not in stagings:
                    stagings[folder] = self._staging_for(folder) if aside else None
                    if stagings[folder] is None:
                        os.makedirs(folder, exist_ok=True)
                staging = stagings[folder]
                wanted[object_key(object_id)] = (
                    (object_id, f"{staging}/{name}", None)
                    if staging
                    else (object_id, f"{folder}/{temp_name(name)}", target)
                )
        except BaseException:
            for staging in filter(None, stagings.values()):
                os.rmdir(staging)  # still empty
            raise
        bar.add(len(wanted))
        results: list[Result] = []
        try:
            pairs = [(key, written) for key, (_oid, written, _end) in wanted.items()]
            for key, md5 in get_many(pairs, more):
                object_id, written, rename_to = wanted[key]
                placed = self._place(object_id, md5, written, rename_to)
                # Only now: a Ctrl-C while it was checked leaves it to the cleanup below,
                # which must not move unchecked bytes in with their folder.
                del wanted[key]
                results.append((object_id, placed))
                if len(results) >= BATCH:
                    outcome.record(results)
                    results = []
        finally:
            outcome.record(results)
            bar.add(-len(wanted))  # counted again by the way that takes them
            for _object_id, written, _target in wanted.values():  # what a failed stream began
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(written)
            # Only verified objects are left in them now. Each goes in, or is removed, even
            # where another cannot go in (its name taken meanwhile by a file or a symlink) or
            # a second Ctrl-C came meanwhile.
            first_error: BaseException | None = None
            for folder, staging in stagings.items():
                if staging is not None:
                    try:
                        _move_in(staging, folder)
                    except BaseException as exc:
                        first_error = first_error or exc
            if first_error is not None:
                raise first_error
        return outcome

    def _can_build_aside(self) -> bool:
        """Whether a folder made in the cache's root can be renamed into its files' tree
        (asked once per transfer)."""
        if self._aside is None:
            files = f"{self.cache_dir}/{PREFIX}"
            os.makedirs(files, exist_ok=True)
            self._aside = os.stat(files).st_dev == os.stat(self.cache_dir).st_dev
        return self._aside

    def _staging_for(self, folder: str) -> str | None:
        """A new folder in the cache's root to build ``folder`` in; None when it exists."""
        if os.path.isdir(folder):
            return None
        staging = f"{self.cache_dir}/{staging_name(FOLDER_STAGING)}"
        os.mkdir(staging)
        return staging

    def _place(
        self, object_id: ObjectId, md5: str, tmp: str, target: str | None
    ) -> int | ReproError:
        """Rename a downloaded object to ``target`` if its bytes hash to its id (and a
        manifest's pass parse_manifest); else remove it and say why. No ``target``: it was
        written where it stays (in a folder built aside)."""
        try:
            _verified(self.remote, object_id, md5, tmp)
        except ReproError as exc:
            os.unlink(tmp)
            return exc
        size = _read_only(tmp)
        if target is not None:
            os.replace(tmp, target)
        return size

    def _upload(self, object_id: ObjectId) -> int:
        key = object_key(object_id)
        source = f"{self.cache_dir}/{key}"  # a string: a Path per object costs more than a copy
        size = os.stat(source).st_size
        self.remote.put(Path(source), key)
        return size

    def _upload_group(self, put_group: PutGroup, group: list[ObjectId]) -> list[Result]:
        """Upload the objects of one folder with a folder remote's ``put_group``."""
        sources = [(f"{self.cache_dir}/{object_key(oid)}", object_key(oid)) for oid in group]
        try:
            sizes = [os.stat(source).st_size for source, _key in sources]
            put_group(sources)
        except FileNotFoundError:  # an object gone from the cache: find which, one by one
            return [_one(self._upload, oid) for oid in group]
        return list(zip(group, sizes, strict=True))

    def fetch(self, object_ids: Iterable[ObjectId]) -> TransferSummary:
        """Download the objects (manifests expanded) the cache lacks, each verified before use.

        A manifest takes its final name only once all of its files are in the cache, as after
        a commit: a kill mid-fetch never leaves a cached manifest that promises missing files.
        """
        remote, cache_dir, jobs = self.remote, self.cache_dir, self.jobs
        wanted = _check_ids(object_ids)
        remove_dead_stagings(str(cache_dir), FOLDER_STAGING)
        manifests = [oid for oid in wanted if is_manifest(oid)]
        absent = [oid for oid in manifests if not object_path(cache_dir, oid).exists()]
        bar = _Progress("fetch", self.progress)
        entries: dict[str, list[str]] = {}
        try:
            # Manifests first: only they tell which files a directory needs.
            early = self._fetch_many(
                absent, bar, lambda oid: str(self._pending_path(oid)), more=True
            )
            first = _run(
                lambda oid: self._download(oid, str(self._pending_path(oid))),
                [oid for oid in absent if oid not in early.done and oid not in early.settled],
                jobs,
                bar,
                remote.forkable,
            )
            first.merge(early)
            failed = list(first.failed)
            unusable = set(first.missing) | {f.object_id for f in failed}
            for object_id in manifests:
                if object_id in unusable:
                    continue
                source = object_path(cache_dir, object_id)
                if not source.exists():
                    source = self._pending_path(object_id)
                try:
                    entries[object_id] = _entries(source.read_bytes(), object_id, str(cache_dir))
                except ReproError as exc:
                    failed.append(Failure(object_id, exc))
            listed = [oid for found in entries.values() for oid in found]
            files = list(dict.fromkeys([oid for oid in wanted if not is_manifest(oid)] + listed))
            held = held_objects(cache_dir, files)
            todo = [oid for oid in files if oid not in held]
            bulk = self._fetch_many(
                todo, bar, lambda oid: f"{cache_dir}/{object_key(oid)}", aside=True
            )
            rest = [oid for oid in todo if oid not in bulk.done and oid not in bulk.settled]
            second = _run_by_folder(
                self._download_group, rest, jobs, bar, remote.forkable, _stop(remote)
            )
            second.merge(bulk)
        finally:
            bar.close()
            # Even after an error: a manifest whose files all arrived takes its name, and no
            # pending one is left behind.
            self._settle_pending(absent, entries)
        return TransferSummary(
            transferred=len(first.done) + len(second.done),
            transferred_bytes=sum(first.done.values()) + sum(second.done.values()),
            already_present=(len(manifests) - len(absent)) + (len(files) - len(todo)),
            missing=tuple(first.missing + second.missing),
            failed=tuple(failed + second.failed),
        )

    def _download(self, object_id: ObjectId, final: str | None = None, aside: bool = False) -> int:
        """Download one object into the cache (or ``final``), only if its bytes hash to its name.

        Through a temp name beside the target, unless ``aside``: then ``final`` lies in a folder
        of this process's own that is not in the cache yet, and is written directly.
        """
        # Plain strings: Path objects cost more than the copy of a small object.
        target = final if final is not None else f"{self.cache_dir}/{object_key(object_id)}"
        folder, _, name = target.rpartition("/")
        if aside:
            tmp = target
        else:
            os.makedirs(folder, exist_ok=True)
            # Beside the target: the same filesystem, so os.replace is atomic.
            tmp = f"{folder}/{temp_name(name)}"
        placed = False
        try:
            _get_checked(self.remote, object_id, tmp)
            size = _read_only(tmp)
            if not aside:
                os.replace(tmp, target)
            placed = True
            return size
        finally:
            if not placed:
                # The download or the check failed: it never becomes a cache entry.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _download_group(self, group: list[ObjectId]) -> list[Result]:
        """Download the objects of one cache folder (``files/md5/ab``), each verified. A folder
        the cache lacks is built aside, under a temp name in the cache's root, and moved into
        place once, as a stream's are (``_move_in``: where another fetch made it meanwhile,
        its verified objects go in one by one, none downloaded again); a kill leaves it
        there, never a half-written object under its name."""
        folder = f"{self.cache_dir}/{PREFIX}{fanout(group[0])}"
        staging = self._staging_for(folder) if self._can_build_aside() else None
        if staging is None:  # the folder exists, or lies on another filesystem
            return [_one(self._download, oid) for oid in group]

        def aside(oid: ObjectId) -> int:
            return self._download(oid, f"{staging}/{name_in_fanout(oid)}", aside=True)

        try:
            return [_one(aside, oid) for oid in group]
        finally:
            # Only verified objects are in it (_download removes any other), even after a
            # Ctrl-C: they go in with it.
            _move_in(staging, folder)

    def _pending_path(self, object_id: ObjectId) -> Path:
        """Where a fetched manifest waits (a dot-name, which no listing counts) for its files."""
        final = object_path(self.cache_dir, object_id)
        return final.with_name(f".repro-pending-{final.name}")

    def _settle_pending(self, absent: list[ObjectId], entries: dict[str, list[str]]) -> None:
        """Give each fetched manifest its name if all its files arrived; drop it otherwise."""
        listed = (oid for object_id in absent for oid in entries.get(object_id, ()))
        held = held_objects(self.cache_dir, listed)
        for object_id in absent:
            pending = self._pending_path(object_id)
            complete = object_id in entries and held.issuperset(entries[object_id])
            if complete and pending.exists():
                os.replace(pending, object_path(self.cache_dir, object_id))
            else:
                pending.unlink(missing_ok=True)

    def status(self, object_ids: Iterable[ObjectId]) -> dict[ObjectId, str]:
        """Classify each object, manifests expanded: "ok" (both sides), "new" (local only),
        "deleted" (remote only) or "missing" (neither)."""
        expanded = _check_ids(object_ids)
        for object_id in [oid for oid in expanded if is_manifest(oid)]:
            expanded += _read_manifest(self.remote, self.cache_dir, object_id) or []
        expanded = list(dict.fromkeys(expanded))
        on_remote = _remote_has(self.remote, expanded)
        states = {
            (True, True): "ok",
            (True, False): "new",
            (False, True): "deleted",
            (False, False): "missing",
        }
        held = held_objects(self.cache_dir, expanded)
        return {oid: states[(oid in held, oid in on_remote)] for oid in expanded}


def _read_only(path: str) -> int:
    """Make a downloaded object read-only, as the cache keeps it (unless it was written so:
    get_many may); its size."""
    info = os.stat(path)
    if stat.S_IMODE(info.st_mode) != READ_ONLY:
        os.chmod(path, READ_ONLY)
    return info.st_size


def _move_in(staging: str, folder: str) -> None:
    """Rename the folder ``staging`` to ``folder``; where that exists by then (another fetch
    made it), each of its files instead. Where they cannot go in (a file or a symlink took the
    folder's name meanwhile), ``staging`` is removed and the error raised."""
    try:
        try:
            os.rename(staging, folder)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        for name in os.listdir(staging):
            os.replace(f"{staging}/{name}", f"{folder}/{name}")
        os.rmdir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def verify_remote(remote: Remote, jobs: int | None = None, progress: bool = True) -> list[str]:
    """Download and hash every object on the remote, and check that each manifest's entries
    are there too. Return one line per problem (empty when the remote is sound)."""
    listing = dict(remote.list_sizes(PREFIX))
    problems: list[str] = []
    keys: dict[str, str] = {}
    for key in sorted(listing):
        object_id = object_id_of_key(key)
        if object_id is None:
            problems.append(f"{key} in {remote.url} is not an object (unexpected name)")
        else:
            keys[object_id] = key
    manifests: dict[str, list[str]] = {}

    def check(object_id: ObjectId, scratch: Path) -> int:
        dest = scratch / uuid.uuid4().hex
        try:
            if entries := _get_checked(remote, object_id, dest):
                manifests[object_id] = entries
        finally:
            dest.unlink(missing_ok=True)
        return listing[keys[object_id]]

    bar = _Progress("verify", progress)
    try:
        with tempfile.TemporaryDirectory(prefix="repro-verify-") as scratch:
            checked = _verify_many(remote, keys, scratch, manifests, problems, bar)
            outcome = _run(
                lambda oid: check(oid, Path(scratch)),
                sorted(set(keys) - checked),
                jobs,
                bar,
                remote.forkable,
            )
    finally:
        bar.close()
    problems += [str(failure.error) for failure in outcome.failed]
    problems += [
        f"object {oid} vanished from {remote.url} during the check" for oid in outcome.missing
    ]
    for object_id, entries in sorted(manifests.items()):
        lacking = [oid for oid in entries if oid not in keys]
        if lacking:
            problems.append(
                f"directory manifest {object_id} in {remote.url} lists {len(lacking)} object(s) "
                f"the remote lacks (e.g. {lacking[0]}); push them again"
            )
    return problems


def _verify_many(
    remote: Remote,
    keys: dict[str, str],
    scratch: str,
    manifests: dict[str, list[str]],
    problems: list[str],
    bar: _Progress,
) -> set[str]:
    """Check what the remote's ``get_many`` gives (see verify_remote); the ids it checked."""
    get_many: GetMany | None = getattr(remote, "get_many", None)
    checked: set[str] = set()
    if get_many is None or not keys:
        return checked
    dests = {key: (oid, f"{scratch}/{n}") for n, (oid, key) in enumerate(sorted(keys.items()))}
    bar.add(len(dests))
    for key, md5 in get_many([(key, dest) for key, (_oid, dest) in dests.items()], False):
        object_id, dest = dests[key]
        try:
            if entries := _verified(remote, object_id, md5, dest):
                manifests[object_id] = entries
        except ReproError as exc:
            problems.append(str(exc))
        finally:
            os.unlink(dest)
        checked.add(object_id)
        bar.advance(1, 0)
    bar.add(len(checked) - len(dests))  # the rest is counted again, one by one
    return checked


def gc_remote(
    remote: Remote,
    keep_object_ids: Iterable[ObjectId],
    cache_dir: Path | None = None,
    jobs: int | None = None,
) -> tuple[int, int]:
    """Delete every object on the remote not kept (kept manifests keep their entries).

    Manifests are read from ``cache_dir`` when there, else from the remote. Return the number
    of objects and bytes deleted.
    """
    keep = set(_check_ids(keep_object_ids))
    for object_id in [oid for oid in keep if is_manifest(oid)]:
        # A kept manifest that cannot be read raises here, before anything is deleted.
        keep.update(_read_manifest(remote, cache_dir, object_id) or [])
    doomed: dict[str, int] = {}
    for key, size in remote.list_sizes(PREFIX):
        listed_id = object_id_of_key(key)
        # Keys that are no object are not ours to delete.
        if listed_id is not None and listed_id not in keep:
            doomed[key] = size

    def delete(key: str) -> int:
        remote.delete(key)
        return doomed[key]

    bar = _Progress("gc", False)
    try:
        outcome = _run(delete, sorted(doomed), jobs, bar, remote.forkable)
    finally:
        bar.close()
    return len(outcome.done), sum(outcome.done.values())
