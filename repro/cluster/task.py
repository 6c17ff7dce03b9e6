"""What a cluster worker does with one stage, given only values.

A stage is hermetic (a pinned image ID, its inputs by content hash, declared outputs), so any
worker with a container engine can run it without a shared filesystem: the worker builds the
stage's view of the project in a scratch folder of its own, from its own cache (the folder
``REPRO_WORKER_CACHE`` names) filled from the data remote, gets the pinned image (there
already, pulled by digest, or loaded from the remote), runs the stage through its own engine
with the local runner's isolation and canonical environment, and pushes the outputs' objects
back to the remote. It never opens a path of the user's project, and it uses credentials of
its own environment: a task carries none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from repro.errors import ReproError
from repro.objects.store import Cache
from repro.objects.transfer import Transfer, TransferSummary
from repro.paths import inside
from repro.remotes import open_remote
from repro.runners import choose_runner
from repro.runners.images import pull_images
from repro.runners.spec import Image, Resources, RunSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from repro.remotes.base import Remote
    from repro.runners.base import Runner

WORKER_CACHE = "REPRO_WORKER_CACHE"  # the worker's own cache and scratch folders live there
LOG_TOPIC = "repro-log-"  # + the run's session: the topic its stages' live lines go to
TAIL_BYTES = 64 * 1024  # the end of a stage's log that comes back with its result
SCRATCH = "task-"  # + "…": a task's scratch folder, locked while its task runs


class Task(NamedTuple):
    """One stage, as values: no path of the user's machine, no credential."""

    session: str  # the submitting run: the topic of its log lines, what Ctrl-C stops
    version: str  # repro's, which the worker must share
    stage: str  # the stage's address, for labels and messages
    cmd: str
    image: Image  # with its ID (and digest, when it has one)
    workdir: str  # relative to the project root
    network: str
    resources: Resources
    env: tuple[tuple[str, str], ...]
    source_date_epoch: int
    inputs: tuple[tuple[str, str], ...]  # (project path, object id) put in place first
    outputs: tuple[str, ...]  # project paths, hashed and pushed after a successful run
    writable: tuple[str, ...]  # inputs the stage updates in place (persisted outputs)
    remote_url: str
    remote_options: tuple[tuple[str, str], ...]  # non-secret ones only


class Result(NamedTuple):
    code: int
    log_end: bytes  # the last TAIL_BYTES of the stage's output
    outputs: tuple[tuple[str, str], ...]  # (project path, object id), on the remote
    started: float  # when the container started and ended (worker's clock)
    finished: float
    worker: str


_lock = threading.Lock()
_runners: dict[str, list[Runner]] = {}  # session -> the runners of its running tasks
_stopped: set[str] = set()


def worker_root() -> Path:
    """The worker's own folder: its object cache and the tasks' scratch folders."""
    default = Path.home() / ".cache" / "repro" / "worker"
    root = Path(os.environ.get(WORKER_CACHE) or default)
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    return root


def run(task: Task) -> Result:
    """Run ``task`` on this worker; ReproError (one line) when it cannot be run."""
    from repro import __version__

    worker = _worker()
    name = worker.address if worker is not None else "local"
    if task.version != __version__:
        raise ReproError(
            f"worker {name} runs repro {__version__} but this run needs repro {task.version}; "
            "install the same version on the workers"
        )
    root = worker_root()
    cache = Cache(root / "cache")
    _remove_dead_scratch(root / "tasks")
    runner = choose_runner(None)
    if (problem := runner.about().problem) is not None:
        # The engine's own message names a socket but not whose: say which worker's it is.
        raise ReproError(f"on worker {name}: {problem}")
    with _scratch(root / "tasks") as scratch, _registered(task.session, runner):
        project = scratch / "project"
        project.mkdir()
        remote = open_remote(task.remote_url, dict(task.remote_options))
        try:
            image_id = _image(runner, remote, task, scratch, name)
            _materialise(cache, remote, project, task.inputs)
            started = time.time()
            code, log_end = _launch(runner, task, project, image_id, worker)
            finished = time.time()
            made = _collect(cache, remote, project, task.outputs, scratch) if code == 0 else ()
            return Result(code, log_end, made, started, finished, name)
        finally:
            remote.close()


def stop(session: str) -> int:
    """Stop the running stages of ``session`` on this worker and remove their containers
    (the user pressed Ctrl-C); return how many tasks were running."""
    with _lock:
        _stopped.add(session)
        runners = _runners.pop(session, [])
    for runner in runners:
        runner.stop_all()
    return len(runners)


def forget_lines(topic: str, dask_scheduler: Any) -> None:
    """Run on the scheduler when a run ends: drop its stages' live lines, which the scheduler
    would keep for ever (the last thousand events of every topic; up to 16 MB a run), as
    distributed offers no public call for it."""
    dask_scheduler._broker._topics.pop(topic, None)


def about() -> dict[str, Any]:
    """What ``repro doctor`` shows of this worker: repro, its engine, its resources."""
    from repro import __version__

    worker = _worker()
    engine = choose_runner(None).about()
    return {
        "version": __version__,
        "engine": engine.engine,
        "engine_version": engine.version,
        "problem": engine.problem,
        "threads": worker.state.nthreads if worker is not None else 1,
        "resources": dict(worker.state.total_resources) if worker is not None else {},
    }


@contextlib.contextmanager
def _scratch(tasks: Path) -> Iterator[Path]:
    """A new scratch folder, locked (flock on the folder itself) until the task ends.

    The lock, not a pid, tells a live task's folder: workers that share REPRO_WORKER_CACHE
    may run on other hosts (a shared volume) or in other pid namespaces (containers), where
    a pid means nothing. The kernel (and NFS's lock manager) releases it when its holder dies.
    """
    while True:
        folder = tempfile.mkdtemp(prefix=SCRATCH, dir=tasks)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            break
        os.close(fd)  # another worker took it for a dead one's before we locked it
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _remove_dead_scratch(tasks: Path) -> None:
    """Remove the scratch folders of tasks whose worker died (nothing holds their lock)."""
    for entry in os.scandir(tasks):
        if not entry.name.startswith(SCRATCH):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # gone meanwhile, or another user's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its task is running
        else:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _registered(session: str, runner: Runner) -> Iterator[None]:
    with _lock:
        if session in _stopped:
            raise ReproError("the run was stopped; no new stage starts")
        _runners.setdefault(session, []).append(runner)
    try:
        yield
    finally:
        with _lock:
            running = _runners.get(session, [])
            if runner in running:
                running.remove(runner)


def _worker() -> Any:
    """This process's Dask worker; None when called outside one."""
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def _image(runner: Runner, remote: Remote, task: Task, scratch: Path, worker: str) -> str:
    """The pinned image's ID, on this worker's engine: there already, pulled by digest, or
    loaded from the remote."""
    image = task.image
    assert image.id is not None
    with contextlib.suppress(ReproError):
        return str(runner.ensure(image, pinned=True).id)
    _loaded, absent = pull_images(runner, remote, [image.id], scratch, {image.id: [image.name]})
    if absent:
        raise ReproError(
            f"image '{image.name}' ({image.id[:19]}…) is neither on worker {worker}'s engine "
            f"nor on the remote {remote.url}; run 'repro push --images' and retry"
        )
    return image.id


def checked(summary: TransferSummary, remote: Remote, verb: str) -> None:
    """One line for a push or fetch of a stage's objects that left some behind."""
    problems = [f"{oid} is not there" for oid in summary.missing]
    problems += [str(failure.error) for failure in summary.failed]
    if problems:
        advice = "run 'repro push' and retry" if summary.missing else "check the remote and retry"
        raise ReproError(
            f"could not {verb} {remote.url}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + f"; {advice}"
        )


def _materialise(
    cache: Cache, remote: Remote, project: Path, inputs: tuple[tuple[str, str], ...]
) -> None:
    """Put the stage's inputs in place, their objects fetched (verified) when missing."""
    from repro.objects.ids import is_manifest
    from repro.workspace.materialise import Materialiser

    checked(
        Transfer(remote, cache.root, progress=False).fetch(o for _p, o in inputs),
        remote,
        "fetch the stage's inputs from",
    )
    # Copies, never links: the stage runs as this worker's user, the owner of the cache.
    materialiser = Materialiser(cache, project, "copy")
    for path, oid in inputs:
        dest = inside(project, path, "input")
        if is_manifest(oid):
            materialiser.checkout_dir(oid, dest, _hasher(project.parent), path, force=True)
        else:
            materialiser.checkout_file(oid, dest)


def _hasher(scratch: Path) -> Any:
    from repro.memo.state import StateDB
    from repro.workspace.hashing import Hasher

    return Hasher(StateDB(scratch / "hashes.db"), progress=False)


def _launch(
    runner: Runner, task: Task, project: Path, image_id: str, worker: Any
) -> tuple[int, bytes]:
    """Run the stage through this worker's engine, its lines sent to the user as they come."""
    workdir = inside(project, task.workdir, "working directory", allow_root=True)
    workdir.mkdir(parents=True, exist_ok=True)
    for path in task.outputs:
        inside(project, path, "output").parent.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        name=task.stage,
        cmd=task.cmd,
        image_id=image_id,
        project_root=project,
        workdir=workdir,
        network=task.network,
        read_only=tuple(project / p for p, _o in task.inputs if p not in task.writable),
        resources=task.resources,
        env=task.env,
        source_date_epoch=task.source_date_epoch,
    )
    end = bytearray()

    def log(chunk: bytes) -> None:
        end.extend(chunk)
        del end[:-TAIL_BYTES]
        if worker is not None:
            text = chunk.decode("utf-8", "replace")
            worker.log_event(LOG_TOPIC + task.session, {"stage": task.stage, "text": text})

    return runner.run(spec, log), bytes(end)


def _collect(
    cache: Cache, remote: Remote, project: Path, outputs: tuple[str, ...], scratch: Path
) -> tuple[tuple[str, str], ...]:
    """Hash the outputs into this worker's cache and push their objects to the remote."""
    from repro.workspace.hashing import read_path_md5
    from repro.workspace.materialise import Materialiser

    hasher = _hasher(scratch)
    materialiser = Materialiser(cache, project, "copy")
    made = []
    for path in outputs:
        full = inside(project, path, "output", exact=True)
        oid = read_path_md5(hasher, full, f"output '{path}'")
        if oid is None:
            raise ReproError(
                f"stage finished but did not create its output '{path}'; fix the command or "
                "the -o path"
            )
        if full.is_dir():
            info = hasher.hash_dir(str(full), path)
            for entry, (_rel, md5) in zip(info.files, info.entries, strict=True):
                materialiser.save_copy(Path(entry.path), md5)
            cache.save_bytes(info.oid, info.manifest)
        else:
            materialiser.save_copy(full, oid)
        made.append((path, oid))
    checked(
        Transfer(remote, cache.root, progress=False).push(o for _p, o in made),
        remote,
        "push the stage's outputs to",
    )
    return tuple(made)
