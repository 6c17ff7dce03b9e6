"""Run stages and decide which ones need running.

A stage runs when status (pipeline/status.py) finds a reason, or when forced; before a run, an
earlier run with the same inputs is restored from the run-cache instead (no container starts);
a pinned image missing here is loaded from the default remote when it has it. A run's outputs
are committed to the cache and its stage file records what it ran with.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from repro.errors import ReproError, StageFailed
from repro.objects.store import ObjectsMissing
from repro.paths import inside, overlaps
from repro.pipeline import runcache
from repro.pipeline.graph import Graph
from repro.pipeline.source_date import source_date_epoch
from repro.pipeline.status import Change, stage_changes
from repro.project import Project
from repro.runners.base import Runner
from repro.runners.spec import Image, RunSpec
from repro.stages import stage as stage_mod
from repro.stages.stage import Out, Stage
from repro.workspace import gitignore, outputs
from repro.workspace.materialise import unprotect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from repro.cluster.client import Cluster

LOG_TAIL_LINES = 20


class Events(Protocol):
    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def log(self, chunk: bytes) -> None: ...


class Options(NamedTuple):
    force: bool = False
    single: bool = False
    dry: bool = False
    pinned: bool = False
    run_cache: bool = True
    keep_going: bool = False
    jobs: int = 1
    check: bool = False  # re-run the targets beside the project and compare (pipeline/check.py)


class Outcome:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.restored: list[str] = []
        self.unchanged: list[str] = []
        self.failed: list[tuple[str, ReproError]] = []
        self.skipped: list[str] = []  # downstream of a failure
        self.planned: list[str] = []  # --dry
        self.rewritten: list[str] = []  # stage files whose bytes a run changed (for git add)
        self.differing: list[str] = []  # --check: outputs that came out other than recorded


class _Tail:
    """Keeps the last lines of a stage's log for the failure message."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace") for line in complete)

    def text(self) -> str:
        lines = list(self.lines)
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
        return "\n".join(lines[-LOG_TAIL_LINES:])


def dep_values(project: Project, stage: Stage) -> dict[str, Any]:
    """Every dependency's value now, by name; a missing one is an error that says how to get it."""
    found: dict[str, Any] = {}
    for dep in stage.deps:
        value = dep.current(project)
        if value is None:
            owners = [
                s for s in project.stages() if any(overlaps(dep.path, o) for o in s.out_paths())
            ]
            for owner in owners:
                if (absent := _fetch_hint(project, owner)) is not None:
                    raise ReproError(f"dependency '{dep.path}' of '{stage.address}' {absent[1]}")
            raise ReproError(
                f"dependency '{dep.path}' of '{stage.address}' does not exist; create it, or "
                "reproduce the stage that makes it"
            )
        found[dep.name] = value
    return found


def _fetch_hint(project: Project, stage: Stage) -> tuple[str, str] | None:
    """For tracked data missing from the workspace (a fresh clone): (the output, where to get
    it from). None when ``stage`` has all its cached outputs, or recorded none."""
    for out in stage.outs:
        if not out.cache or out.md5 is None or os.path.lexists(project.root / out.path):
            continue
        if project.cache.missing(out.md5):
            return out.path, (
                f"is tracked by '{stage.address}' but neither in the workspace nor in the cache; "
                "run 'repro pull' to fetch it"
            )
        return out.path, (
            f"is tracked by '{stage.address}' and in the cache but not in the workspace; "
            f"run 'repro checkout {stage.address}' to restore it"
        )
    return None


def read_only_paths(project: Project, stage: Stage, graph: Graph) -> tuple[Path, ...]:
    own = set(stage.out_paths())
    paths = [d.path for d in stage.deps]
    for other in graph.stages.values():
        if other.address == stage.address:
            continue
        paths.extend(o.path for o in other.outs if o.cache)
        paths.extend((other.path, other.record_path))
    paths.extend((stage.path, stage.record_path))
    result: list[Path] = []
    for rel in dict.fromkeys(paths):
        if rel in own:
            continue
        full = project.root / rel
        if os.path.lexists(full):
            result.append(full)
    return tuple(result)


def restore_from_run_cache(
    project: Project, stage: Stage, image: Image, values: dict[str, Any]
) -> Stage | None:
    """Outputs of an identical earlier run, checked out; None when there is no usable entry."""
    entry = runcache.read(project.cache_dir, runcache.key(stage, str(image.id), values))
    if entry is None or set(entry.outs) != set(stage.out_paths()):
        return None
    recorded = entry.outs
    if any(project.cache.missing(md5) for md5 in recorded.values()):
        return None
    outs = []
    for out in stage.outs:
        outputs.remove(project, out.path)
        try:
            outputs.checkout(project, out.path, recorded[out.path], force=True, cached=out.cache)
        except ObjectsMissing:  # gone since the check (a gc of a project sharing the cache)
            return None
        outs.append(out._replace(md5=recorded[out.path]))
    return record(project, stage, image, values, tuple(outs), entry.source_date_epoch)


def record(
    project: Project,
    stage: Stage,
    image: Image | None,
    values: dict[str, Any],
    outs: tuple[Out, ...],
    source_date_epoch: int | None = None,
) -> Stage:
    """Write the stage file of a stage that ran (or was restored, or committed): the image it
    ran in, its dependencies' values, its outputs' hashes, the SOURCE_DATE_EPOCH it ran with
    (None when no run made the outputs), its definition md5."""
    deps = tuple(d.recorded_as(values.get(d.name)) for d in stage.deps)
    done = stage._replace(
        image=image, deps=deps, outs=outs, source_date_epoch=source_date_epoch
    ).with_md5()
    for out in done.outs:
        if out.cache:
            gitignore.add(project.root, out.path)
    stage_mod.write(project.root, done)
    return done


def recorded_values(stage: Stage) -> dict[str, Any]:
    """What the stage file recorded of each dependency: kept by a stage without a command
    (an import's commit), which nothing ran to change."""
    return {d.name: d.recorded for d in stage.deps}


def commit(project: Project, stage: Stage) -> Stage:
    """``repro commit``: record the workspace as it is, as if ``stage`` had just made it."""
    values = dep_values(project, stage) if not stage.is_data_source else recorded_values(stage)
    outs = tuple(outputs.commit(project, out, keep_copy=True) for out in stage.outs)
    return record(project, stage, stage.image, values, outs)


PLANTED = "tmp/planted"  # under .repro: stage files a stage wrote, moved out of the work tree


def _stage_file_bytes(project: Project) -> dict[str, bytes | None]:
    """Every stage file of the work tree with its bytes (None: not a regular file)."""
    from repro.fsutil import read_regular

    found: dict[str, bytes | None] = {}
    for path in project.stage_files():
        try:
            found[path] = read_regular(project.root / path)
        except OSError:
            found[path] = None
    return found


def _sweep_planted(project: Project, stage: Stage, before: dict[str, bytes | None]) -> list[str]:
    """Move the stage files that appeared or changed while ``stage`` ran, and that repro did
    not write itself (parallel stages finish meanwhile), out of the work tree."""
    own = set(stage.out_paths())
    planted = []
    for path, data in _stage_file_bytes(project).items():
        if path in own or (path in before and before[path] == data):
            continue
        if data is not None and stage_mod.WRITTEN.get(project.root / path) == data:
            continue
        planted.append(path)
        dest = project.repro_dir / PLANTED / f"{time.time_ns()}" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(project.root / path, dest)
    return planted


def ensure_image(
    project: Project, runner: Runner, image: Image, pinned: bool, events: Events
) -> Image:
    """The image to run; a pinned ID missing here is loaded from the default remote if it
    has it: by digest, then from the remote, then an error that says how to get it."""
    try:
        return runner.ensure(image, pinned)
    except ReproError:
        if not image.id or project.config.get("core.remote") is None:
            raise
        from repro.remote_select import open_named_remote
        from repro.runners.images import pull_images

        remote = open_named_remote(project, None)
        try:
            loaded, _absent = pull_images(runner, remote, [image.id], project.tmp_dir)
        except ReproError:
            loaded = 0
        finally:
            remote.close()
        if not loaded:
            raise
        events.info(f"Loaded image {image.id[:19]}… from the remote.")
        return runner.ensure(image, pinned)


def _quiet(runner: Runner | None) -> AbstractContextManager[None]:
    return nullcontext() if runner is None else runner.quiet()


def changes_of(project: Project, stage: Stage, runner: Runner | None, pinned: bool) -> list[Change]:
    resolver = None
    if runner is not None and stage.image is not None and not pinned:
        resolver = runner.resolve
    return stage_changes(project, stage, resolver)


class Reproduction:
    """One reproduction (``repro repro``, or the run of ``repro run``): the project, its graph,
    the runner, the options, and where progress goes, held once instead of passed to every
    step. ``run`` reproduces targets; ``execute`` runs one stage."""

    def __init__(
        self,
        project: Project,
        graph: Graph,
        runner: Runner | None,
        options: Options,
        events: Events,
    ) -> None:
        self.project = project
        self.graph = graph
        self.runner = runner
        self.options = options
        self.events = events
        self.outcome = Outcome()
        self.cluster: Cluster | None = None  # set: stages run as tasks on a Dask cluster

    def execute(self, stage: Stage, run_cache: bool | None = None) -> tuple[Stage, bool]:
        """Run one stage (or restore it from the run-cache); return it as written, and whether
        it came from the run-cache.

        Every step that checks and then changes the workspace runs inside ``runner.quiet()``: in
        a parallel run no other stage executes meanwhile, so none can swap a path for a symlink
        between the check and the change.
        """
        project, runner, events = self.project, self.runner, self.events
        if run_cache is None:
            run_cache = self.options.run_cache
        if stage.is_data_source:
            if (absent := _fetch_hint(project, stage)) is not None:
                raise ReproError(f"output '{absent[0]}' {absent[1]}")
            with _quiet(runner):
                outs = tuple(outputs.commit(project, out) for out in stage.outs)
                return record(project, stage, None, recorded_values(stage), outs), False
        if stage.image is None:  # a hand-written stage file: the project's default image
            default = project.config.get("core.image")
            if not default:
                key = "image: NAME" if stage.name else "image: {name: NAME}"
                raise ReproError(
                    f"stage '{stage.address}' names no image and core.image is not set; add "
                    f"'{key}' to '{stage.path}', or set a default with "
                    "'repro config core.image NAME'"
                )
            # recorded in the stage file when it runs
            stage = stage._replace(image=Image(default))
        assert runner is not None and stage.image is not None
        image = ensure_image(project, runner, stage.image, self.options.pinned, events)
        with runner.quiet():
            values = dep_values(project, stage)
            if run_cache and not any(o.persist for o in stage.outs):  # they carry state over
                restored = restore_from_run_cache(project, stage, image, values)
                if restored is not None:
                    events.info(
                        f"Restored '{stage.address}' from the run-cache; no container started."
                    )
                    return restored, True
            for out in stage.outs:
                if out.persist and os.path.lexists(project.root / out.path):
                    unprotect(project.root / out.path)  # updated in place, never in the cache
                    continue
                outputs.remove(project, out.path)
                try:
                    (project.root / out.path).parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError) as exc:
                    raise outputs.in_the_way(out.path, exc) from None
            workdir = inside(project.root, stage.work_dir, "working directory", allow_root=True)
            read_only = read_only_paths(project, stage, self.graph)
            stage_files = _stage_file_bytes(project)
        if self.cluster is not None:
            return self._on_cluster(self.cluster, stage, image, values), False
        try:
            epoch = self.epoch_of(stage, image, values)
            code, tail = self.launch(stage, self.spec(stage, image, workdir, read_only, epoch))
        finally:
            with runner.quiet():
                planted = _sweep_planted(project, stage, stage_files)
        if planted:
            raise ReproError(
                f"stage '{stage.address}' wrote the stage file '{planted[0]}' while it ran (moved "
                f"to {project.repro_dir / PLANTED}); a stage must not write stage files, which "
                "would run next with an image, network and command of their own: fix its command"
            )
        if code != 0:
            raise StageFailed(stage.address, code, tail.text())
        with runner.quiet():
            missing = [o.path for o in stage.outs if not os.path.lexists(project.root / o.path)]
            if missing:
                raise ReproError(
                    f"stage '{stage.address}' finished but did not create its output "
                    f"'{missing[0]}'; fix the command or the -o path"
                )
            outs = tuple(outputs.commit(project, out, keep_copy=True) for out in stage.outs)
            # Remembered even under --no-run-cache: that flag only stops restoring.
            run_key = runcache.key(stage, str(image.id), values)
            runcache.save(project.cache_dir, run_key, outs, epoch)
            return record(project, stage, image, values, outs, epoch), False

    def _on_cluster(
        self, cluster: Cluster, stage: Stage, image: Image, values: dict[str, Any]
    ) -> Stage:
        """Run ``stage`` on a worker; settle and record its outputs as a local run does."""
        self.events.info(f"Running command on {cluster.address}:\n\t{stage.cmd}")
        epoch = self.epoch_of(stage, image, values)
        result = cluster.run(stage, image, epoch)
        if result.code != 0:
            tail = _Tail()
            tail.feed(result.log_end)
            raise StageFailed(stage.address, result.code, tail.text())
        with _quiet(self.runner):
            outs = cluster.settle(stage, result.outputs)
            run_key = runcache.key(stage, str(image.id), values)
            runcache.save(self.project.cache_dir, run_key, outs, epoch)
            return record(self.project, stage, image, values, outs, epoch)

    @cached_property
    def source_date_epoch(self) -> int:
        return source_date_epoch(self.project.root)

    def epoch_of(self, stage: Stage, image: Image, values: dict[str, Any]) -> int:
        """SOURCE_DATE_EPOCH for a run of ``stage`` over dependencies with ``values``: the
        one its last run had when nothing it depends on changed since (a forced re-run, a
        clone reproducing a commit, a check), so that such a run makes the same bytes; else
        the time of the commit reproduced."""
        recorded = stage.source_date_epoch
        unchanged = stage._replace(image=image).definition_md5() == stage.md5
        if recorded is not None and unchanged and values == recorded_values(stage):
            return recorded
        return self.source_date_epoch

    def spec(
        self,
        stage: Stage,
        image: Image,
        workdir: Path,
        read_only: tuple[Path, ...],
        source_date_epoch: int,
        scratch: Path | None = None,
    ) -> RunSpec:
        """What the runner is handed to run ``stage`` in ``image``."""
        return RunSpec(
            name=stage.address,
            cmd=str(stage.cmd),
            image_id=str(image.id),
            project_root=self.project.root,
            workdir=workdir,
            network=stage.network,
            read_only=read_only,
            resources=stage.resources,
            env=stage.env,
            source_date_epoch=source_date_epoch,
            scratch=scratch,
        )

    def launch(self, stage: Stage, spec: RunSpec) -> tuple[int, _Tail]:
        """Run ``spec``, its log streamed to the events: the exit code and the log's tail."""
        assert self.runner is not None
        self.events.info(f"Running command:\n\t{stage.cmd}")
        tail = _Tail()

        def log(chunk: bytes) -> None:
            tail.feed(chunk)
            self.events.log(chunk)

        return self.runner.run(spec, log), tail  # checks the mounts again, the others paused

    def run(self, targets: Iterable[str]) -> Outcome:
        """Reproduce ``targets`` and (unless single) whatever upstream of them changed; with
        ``check``, re-run the targets alone and compare (pipeline/check.py)."""
        targets = list(targets)
        names = set(targets) if self.options.single else self.graph.ancestors(targets)
        step: Callable[[str, bool], None] = self._step
        if self.options.check:
            from repro.pipeline import check

            check.prepare(self, names, targets)
            names, step = set(targets), lambda name, _target: check.check(self, name)
        if self.options.dry:
            self._plan(names, targets)
        elif self.options.jobs > 1 or self.cluster is not None:
            self._run_parallel(names, set(targets), step)
        else:
            self._run_serial(names, targets, step)
        return self.outcome

    def _run_serial(
        self, names: set[str], targets: list[str], step: Callable[[str, bool], None]
    ) -> None:
        blocked: set[str] = set()
        for name in self.graph.order(names):
            if name in blocked:
                self.outcome.skipped.append(name)
                continue
            try:
                step(name, name in targets)
            except ReproError as exc:
                if not self.options.keep_going:
                    raise
                self.outcome.failed.append((name, exc))
                self.events.warn(str(exc))
                blocked |= self.graph.descendants(name)

    def _step(self, name: str, is_target: bool) -> None:
        project, runner = self.project, self.runner
        # the file, as upstream runs left it
        stage = stage_mod.reload(project.root, self.graph.stages[name])
        before = _bytes(project.root / stage.record_path)
        with _quiet(runner):
            changes = changes_of(project, stage, runner, self.options.pinned)
        forced = self.options.force and is_target
        if not changes and not forced:
            self.events.info(f"Stage '{name}' didn't change.")
            self.outcome.unchanged.append(name)
            return
        for change in changes:
            if change.kind != "stage":
                self.events.info(change.message)  # on stdout, in order with the lines around it
        self.events.info(f"Stage '{name}' changed." if changes else f"Stage '{name}' is forced.")
        self.events.info(f"Reproducing '{name}'")
        # --force means run the command, not restore an earlier run of it
        _, restored = self.execute(stage, run_cache=self.options.run_cache and not forced)
        (self.outcome.restored if restored else self.outcome.ran).append(name)
        if _bytes(project.root / stage.record_path) != before:
            self.outcome.rewritten.append(stage.record_path)

    def _plan(self, names: set[str], targets: list[str]) -> None:
        will_run: set[str] = set()
        for name in self.graph.order(names):
            stage = self.graph.stages[name]
            changes = changes_of(self.project, stage, self.runner, self.options.pinned)
            upstream = sorted(self.graph.parents[name] & will_run)
            if changes or upstream or (self.options.force and name in targets):
                will_run.add(name)
                why = (
                    changes[0].message
                    if changes
                    else (f"upstream '{upstream[0]}' would run." if upstream else "forced.")
                )
                self.events.info(f"Would reproduce '{name}': {why}")
                self.outcome.planned.append(name)
            else:
                self.events.info(f"Stage '{name}' didn't change.")
                self.outcome.unchanged.append(name)

    def _run_parallel(
        self, names: set[str], targets: set[str], step: Callable[[str, bool], None]
    ) -> None:
        sorter = self.graph.sorter(names)
        sorter.prepare()
        blocked: set[str] = set()
        lock = threading.Lock()
        errors: list[ReproError] = []
        pool = ThreadPoolExecutor(self.options.jobs)
        running: dict[Future[None], str] = {}
        try:
            while sorter.is_active():
                for name in sorted(sorter.get_ready()):
                    if name in blocked or (errors and not self.options.keep_going):
                        with lock:
                            self.outcome.skipped.append(name)
                        sorter.done(name)
                        continue
                    running[pool.submit(step, name, name in targets)] = name
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    exc = future.exception()
                    if isinstance(exc, ReproError):
                        errors.append(exc)
                        self.outcome.failed.append((name, exc))
                        blocked |= self.graph.descendants(name)
                        if self.options.keep_going:
                            self.events.warn(str(exc))
                    elif exc is not None:
                        raise exc
                    sorter.done(name)
        except BaseException:
            if self.runner is not None:
                self.runner.stop_all()
            if self.cluster is not None:
                self.cluster.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if errors and not self.options.keep_going:
            raise errors[0]


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
