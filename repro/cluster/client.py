"""The user's side of a cluster run (``repro repro --scheduler tcp://HOST:8786``).

The local side plans as for a local run (status, run-cache, early cut-off) and writes stage
files, the lock and the run-cache as for a local run; only a stage's launch and the hashing
of its outputs move to a worker. Before a stage is submitted its inputs go to the data remote
(as ``push`` sends them); its outputs come back through the remote, verified, into the local
cache and the workspace (``--no-download`` leaves them there: ``repro pull`` fetches them).

A task whose worker dies is run again on another worker by the scheduler, up to its
``distributed.scheduler.allowed-failures`` (3 by default) times: stages are idempotent. A
stage that fails is not run again.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from repro.cluster import task as task_mod
from repro.config import PRIVATE_OPTIONS
from repro.errors import ReproError
from repro.objects.ids import is_object_id
from repro.objects.transfer import Transfer
from repro.project import Project
from repro.remotes import known_options
from repro.runners.spec import Image, Resources
from repro.stages.stage import Out, Stage
from repro.workspace import outputs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from repro.remotes.base import Remote

LOCAL = "local"  # core.scheduler's value for running stages on this machine
CONNECT_SECONDS = 10
LONGEST_LINE = 4096  # characters of a stage's line shown at once: a longer one comes in pieces


class Events(Protocol):
    """Where a cluster run's live lines go (the pipeline's events)."""

    def log(self, chunk: bytes) -> None: ...


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``; one line when it does not answer."""
    try:
        from distributed import Client
        from distributed.comm.addressing import get_address_host_port
    except ModuleNotFoundError:
        raise ReproError(
            "running stages on a cluster needs Dask: pip install 'repro-pipelines[cluster]'"
        ) from None
    # Its own log lines would repeat, in many lines, what our one line says.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    try:
        # Asked first, plainly: a Client that failed to connect tries again to close itself
        # when the interpreter exits, and waits there.
        socket.create_connection(get_address_host_port(address), CONNECT_SECONDS).close()
        # distributed's Client has no annotations
        return Client(address, timeout=CONNECT_SECONDS, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReproError(
            f"cannot reach the Dask scheduler at {address} ({reason[:200]}); start it "
            "('dask scheduler') or fix --scheduler / core.scheduler"
        ) from None


def describe(address: str) -> tuple[list[str], list[str]]:
    """``repro doctor``'s lines about the scheduler at ``address`` and each of its workers
    (repro, engine, threads, resources), and what is broken there."""
    client = connect(address)
    try:
        workers = client.scheduler_info()["workers"]
        abouts = client.run(task_mod.about, on_error="return")
    finally:
        client.close()
    lines = [f"Scheduler: {address} ({len(workers)} workers)"]
    broken = [] if workers else [f"the scheduler {address}, which has no worker"]
    for address_of, info in sorted(workers.items(), key=lambda item: str(item[1].get("name"))):
        about = abouts.get(address_of)
        name = f"worker {info.get('name')} ({address_of})"
        if not isinstance(about, dict):
            lines.append(f"  {name}: did not answer ({about})")
            broken.append(name)
            continue
        offered = ",".join(f"{k}={v:g}" for k, v in sorted(about["resources"].items()))
        engine = f"{about['engine']} {about['engine_version']}"
        if about["problem"] is not None:
            engine = f"{about['engine']} unreachable ({about['problem']})"
            broken.append(name)
        lines.append(
            f"  {name}: repro {about['version']}, {engine}, {about['threads']} threads, "
            f"resources {offered or 'none'}"
        )
    return lines, broken


def dask_resources(resources: Resources) -> dict[str, float]:
    """A stage's --gpus/--cpus/--memory as Dask resources: it runs only on a worker started
    with at least as much (``dask worker --resources "GPU=1,CPU=4,MEMORY=16e9"``)."""
    from repro.stages.stage import memory_bytes

    found: dict[str, float] = {}
    if resources.gpus:
        found["GPU"] = 1.0 if resources.gpus == "all" else float(resources.gpus)
    if resources.cpus:
        found["CPU"] = float(resources.cpus)
    if resources.memory:
        found["MEMORY"] = float(memory_bytes(resources.memory))
    return found


class Cluster:
    """A connection to a scheduler for one run: submits stages, streams their lines, and
    settles their outputs in the project."""

    def __init__(
        self, project: Project, address: str, remote: Remote, download: bool, events: Events
    ) -> None:
        from repro import __version__

        name = project.config.get("core.remote") or ""
        allowed = known_options(remote.url) - PRIVATE_OPTIONS - {"url"}
        options = project.config.remotes().get(name, {})
        self.remote_options = tuple(sorted((k, v) for k, v in options.items() if k in allowed))
        self.project = project
        self.address = address
        self.remote = remote
        self.download = download
        self.events = events
        self.version = __version__
        self.session = secrets.token_hex(8)
        self.client = connect(address)
        self._lock = threading.Lock()  # guards _futures and _partial
        # Stages are submitted from one thread each; hashing their inputs into the cache takes
        # turns, as the local run's checks do (Runner.quiet).
        self._hashing = threading.Lock()
        self._futures: list[Any] = []
        self._partial: dict[str, str] = {}
        self.client.subscribe_topic(task_mod.LOG_TOPIC + self.session, self._line)

    def _line(self, event: tuple[float, dict[str, str]], last: bool = False) -> None:
        """A chunk of a stage's output: shown line by line, each behind its stage's name;
        ``last``: the stage ended, so an unfinished line is shown too."""
        message = event[1]
        stage = message["stage"]
        with self._lock:  # Dask's thread delivers lines, the stage's own thread the last one
            text = self._partial.pop(stage, "") + message["text"]
            *complete, self._partial[stage] = text.split("\n")
            # A stage that never ends its line must not make us hold (and copy again with
            # every chunk) all it wrote: its line is shown in pieces.
            long = len(self._partial[stage]) >= LONGEST_LINE
            if (last or long) and (rest := self._partial.pop(stage)):
                complete.append(rest)
        pieces = [
            line[start : start + LONGEST_LINE]
            for line in complete
            for start in range(0, max(len(line), 1), LONGEST_LINE)
        ]
        if pieces:
            self.events.log("".join(f"[{stage}] {piece}\n" for piece in pieces).encode())

    def inputs(self, stage: Stage) -> tuple[tuple[str, str], ...]:
        """What the stage reads (its deps, its persisted outputs), each with its object id,
        stored in the local cache and pushed to the remote."""
        project = self.project
        persisted = [o.path for o in stage.outs if o.persist]
        found = []
        with self._hashing:
            for path in dict.fromkeys([*(d.path for d in stage.deps), *persisted]):
                oid = outputs.current_md5(project, path)
                if oid is None:
                    continue  # a persisted output not made yet: dep_values checked the deps
                if project.cache.missing(oid):
                    outputs.commit(project, Out(path, cache=False), keep_copy=True)
                found.append((path, oid))
        summary = Transfer(self.remote, project.cache_dir, progress=False).push(
            oid for _path, oid in found
        )
        task_mod.checked(summary, self.remote, "push the stage's inputs to")
        return tuple(found)

    def run(self, stage: Stage, image: Image, source_date_epoch: int) -> task_mod.Result:
        """Run ``stage`` on a worker and wait for it."""
        from distributed import KilledWorker

        assert stage.cmd is not None and image.id is not None
        task = task_mod.Task(
            session=self.session,
            version=self.version,
            stage=stage.address,
            cmd=str(stage.cmd),
            image=image,
            workdir=stage.work_dir,
            network=stage.network,
            resources=stage.resources,
            env=stage.env,
            source_date_epoch=source_date_epoch,
            inputs=self.inputs(stage),
            outputs=tuple(stage.out_paths()),
            writable=tuple(o.path for o in stage.outs if o.persist),
            remote_url=self.remote.url,
            remote_options=self.remote_options,
        )
        resources = dask_resources(stage.resources)
        self._check_resources(stage, resources)
        future = self.client.submit(
            task_mod.run,
            task,
            key=f"repro-{stage.address}-{secrets.token_hex(4)}",
            resources=resources or None,
            pure=False,
        )
        with self._lock:
            self._futures.append(future)
        try:
            result: task_mod.Result = future.result()
        except KilledWorker:
            raise ReproError(
                f"stage '{stage.address}' lost its worker every time it ran; see the workers' "
                "logs (a stage that exhausts a worker's memory kills it)"
            ) from None
        except ReproError:
            raise
        except Exception as exc:  # noqa: BLE001 - a cancelled future, a lost scheduler
            if future.cancelled():
                raise ReproError("the run was stopped; no new stage starts") from None
            raise ReproError(
                f"stage '{stage.address}' could not run on the cluster: {exc}"
            ) from None
        finally:
            self._line((0.0, {"stage": stage.address, "text": ""}), last=True)
        made = dict(result.outputs)
        if result.code == 0 and (
            set(made) != set(stage.out_paths()) or not all(map(is_object_id, made.values()))
        ):
            raise ReproError(
                f"worker {result.worker} answered with other outputs than stage "
                f"'{stage.address}' declares; check that worker's repro"
            )
        return result

    def _check_resources(self, stage: Stage, wanted: dict[str, float]) -> None:
        """Refuse, in one line, a stage no worker can take (it would wait for ever)."""
        if not wanted:
            return
        workers = self.client.scheduler_info()["workers"].values()
        if any(
            all(w.get("resources", {}).get(k, 0) >= v for k, v in wanted.items()) for w in workers
        ):
            return
        asked = ",".join(f"{k}={v:g}" for k, v in sorted(wanted.items()))
        raise ReproError(
            f"stage '{stage.address}' needs {asked} and no worker of {self.address} offers it; "
            f"start one with 'dask worker {self.address} --resources \"{asked}\"'"
        )

    def settle(self, stage: Stage, made: Iterable[tuple[str, str]]) -> tuple[Out, ...]:
        """The stage's outputs with their new hashes; fetched (verified) into the cache and
        checked out, unless the run leaves them on the remote."""
        project = self.project
        objects = dict(made)
        if self.download:
            summary = Transfer(self.remote, project.cache_dir, progress=False).fetch(
                objects.values()
            )
            task_mod.checked(summary, self.remote, "fetch the stage's outputs from")
        outs = []
        for out in stage.outs:
            outputs.remove(project, out.path)
            if self.download:
                outputs.checkout(project, out.path, objects[out.path], force=True, cached=out.cache)
            outs.append(out._replace(md5=objects[out.path]))
        return tuple(outs)

    def stop(self) -> None:
        """Ctrl-C: cancel the tasks and remove their containers on every worker's engine."""
        with self._lock:
            futures = list(self._futures)
        self.client.cancel(futures, force=True)
        self.client.run(task_mod.stop, self.session, on_error="ignore")

    def close(self) -> None:
        topic = task_mod.LOG_TOPIC + self.session
        self.client.unsubscribe_topic(topic)
        with contextlib.suppress(Exception):  # a scheduler gone meanwhile keeps nothing
            self.client.run_on_scheduler(task_mod.forget_lines, topic)
        self.client.close()
        self.remote.close()
