"""Verbs that execute stages: run and repro."""

from __future__ import annotations

import argparse
import os
import posixpath
from collections.abc import Callable
from pathlib import Path

from repro import paramfiles
from repro.cli.commands import open_project
from repro.cli.ui import UI
from repro.errors import ReproError, UsageError
from repro.experiments import IN_EXPERIMENT
from repro.metrics.formats import format_of
from repro.paths import from_user, refuse_case_twins
from repro.pipeline.graph import build
from repro.pipeline.reproduce import Options, Reproduction
from repro.pipeline.targets import resolve_targets
from repro.project import Project
from repro.runners import choose_runner
from repro.runners.spec import Image
from repro.stages import pipeline_file
from repro.stages import stage as stage_mod
from repro.stages.deps.base import Dependency
from repro.stages.deps.file import FileDep
from repro.stages.deps.params import ParamDep
from repro.stages.deps.params import read as read_params
from repro.stages.stage import STAGE_SUFFIX, Metric, Out, Plot, Stage
from repro.walk import PIPELINE_FILE
from repro.workspace import gitignore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from repro.cluster.client import Cluster


def _metric(path: str) -> Metric:
    """A metric's type guessed from its extension; 'metrics modify' changes it."""
    return Metric(type=format_of(path))


def _new_stage(project: Project, args: argparse.Namespace) -> Stage:
    cwd = Path.cwd()

    def rel(path: str, what: str) -> str:
        stage_mod.check_path(path, what)  # before from_user, whose messages would show it raw
        return from_user(project.root, cwd, path, what)

    outs = [Out(rel(p, "output")) for p in args.outs]
    outs += [Out(rel(p, "output"), cache=False) for p in args.outs_no_cache]
    outs += [Out(rel(p, "metric"), cache=False, metric=_metric(p)) for p in args.metrics]
    outs += [Out(rel(p, "metric"), cache=True, metric=_metric(p)) for p in args.metrics_cached]
    outs += [Out(rel(p, "plot"), cache=True, plot=Plot()) for p in args.plots]
    outs += [Out(rel(p, "plot"), cache=False, plot=Plot()) for p in args.plots_no_cache]
    seen: set[str] = set()
    for out in outs:
        if out.path in seen:
            raise ReproError(f"output '{out.path}' is given twice")
        seen.add(out.path)
    if args.name:
        if args.file:
            raise UsageError("-n adds a stage to ./repro.yaml and -f names a stage file: give one")
        stage_path = rel(PIPELINE_FILE, "stage file")
    elif args.file:
        stage_path = rel(args.file, "stage file")
    elif outs:
        stage_path = rel(posixpath.basename(outs[0].path) + STAGE_SUFFIX, "stage file")
    else:
        raise UsageError("a stage with no outputs needs a name: give -f FILE.repro")
    if not args.name and not stage_path.endswith(STAGE_SUFFIX):
        raise ReproError(f"stage file '{stage_path}' must end with {STAGE_SUFFIX}")
    command = " ".join(args.command).strip()
    if not command:
        raise UsageError("no command given; e.g. repro run -o out 'sort in > out'")
    image_name = args.image or project.config.get("core.image")
    if not image_name:
        raise ReproError(
            "a stage with a command needs an image: give --image NAME, or set a default with "
            "'repro config core.image NAME'"
        )
    resources = stage_mod.resources_from_cli(args.cpus, args.memory, args.gpus)
    wdir = "."
    if args.wdir:
        stage_mod.check_path(args.wdir, "working directory")
        target = os.path.normpath(os.path.join(cwd, args.wdir))
        if target != str(project.root):
            from_user(project.root, cwd, args.wdir, "working directory")  # refuses escapes
        wdir = os.path.relpath(target, project.root / posixpath.dirname(stage_path))
    deps: tuple[Dependency, ...] = tuple(
        FileDep(rel(p, "dependency")) for p in dict.fromkeys(args.deps)
    )
    deps += _params(project, args.params, rel)
    stage = Stage(
        path=stage_path,
        cmd=command,
        wdir=wdir,
        image=Image(image_name),
        network=args.network,
        deps=deps,
        outs=tuple(outs),
        resources=resources,
        env=stage_mod.env_from_cli(args.env, dict(os.environ)),
        name=args.name,
    )
    stage_mod.check(stage)  # the rules its file will be read back with, before anything is written
    return stage


def _params(
    project: Project, specs: list[str], rel: Callable[[str, str], str]
) -> tuple[ParamDep, ...]:
    """The params of ``-p [FILE:]KEY,KEY`` (FILE: params.yaml; ``FILE:`` alone: every top-level
    key of it), FILE relative to the current directory like -d's paths."""
    found: dict[tuple[str, str], ParamDep] = {}
    for spec in specs:
        file, colon, keys = spec.rpartition(":")
        path = rel(file if colon else paramfiles.DEFAULT_FILE, "params file")
        if colon and not keys:  # FILE: alone, as in DVC
            params = read_params(project, path)
            if params is None:
                raise ReproError(f"params file '{path}' does not exist; create it first")
            if not params:
                raise ReproError(f"params file '{path}' has no keys; add some, or name them")
            names = [str(key) for key in params]
        else:
            names = keys.split(",")
            if not all(names):
                raise UsageError(f"-p {spec!r} names an empty key; give -p [FILE:]KEY[,KEY...]")
        for key in names:
            found.setdefault((path, key), ParamDep(path, key))
    return tuple(found.values())


def _check_params(project: Project, stage: Stage, no_exec: bool) -> None:
    """Refuse params the stage could not run with (a missing key, a file that does not parse,
    a path out of the project), before anything is written; a file an upstream stage makes
    may be missing under --no-exec."""
    for dep in stage.deps:
        if isinstance(dep, ParamDep) and dep.current(project) is None and not no_exec:
            raise ReproError(
                f"params file '{dep.path}' does not exist; create it, or give --no-exec to "
                "write the stage for a file another stage makes"
            )


def cmd_run(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    with project.lock(args.wait):
        stage = _new_stage(project, args)
        project.check_paths(stage)  # before anything is written: no symlink out of the project
        _check_params(project, stage, args.no_exec)
        new_text = None
        if stage.name is not None:  # its definition as repro.yaml will hold it, and read it
            stage, new_text = pipeline_file.appending(project.root, stage, bool(args.image))
        elif (project.root / stage.path).exists() and not args.overwrite:
            raise ReproError(
                f"stage file '{stage.path}' already exists; use --overwrite to replace it"
            )
        others = [s for s in project.stages() if s.address != stage.address]
        graph = build([*others, stage])  # refuses overlapping outs and cycles up front
        refuse_case_twins(stage.out_paths(), [o for s in others for o in s.out_paths()])
        for out in stage.outs:
            if out.cache:
                gitignore.add(project.root, out.path)
        if new_text is not None:
            pipeline_file.save_text(project.root, stage.path, new_text)
        if args.no_exec:
            if new_text is None:
                stage_mod.write(project.root, stage)
            ui.info(
                f"Wrote '{stage.path}' without running it; 'repro repro {stage.address}' runs it"
            )
            return 0
        runner = choose_runner(project.config)
        options = Options(run_cache=not args.no_run_cache)
        try:
            Reproduction(project, graph, runner, options, ui).execute(stage)
        except KeyboardInterrupt:
            runner.stop_all()
            raise
    files = " ".join(dict.fromkeys((stage.path, stage.record_path)))
    ui.info(f"To track the changes with git, run:\n\tgit add {files}")
    return 0


def cmd_repro(args: argparse.Namespace, ui: UI) -> int:
    project = open_project(ui)
    if args.jobs < 1:
        raise UsageError("-j needs a number of at least 1")
    if args.check and args.dry:
        raise UsageError("--check runs the stages; it cannot be --dry")
    lock = project.lock(args.wait)
    if args.check:  # changes nothing the project keeps, not even the hash memo
        project.state.read_only = True
    if args.dry:
        project.state.read_only = True
        return _repro(project, args, ui)
    with lock:
        return _repro(project, args, ui)


def _cluster(project: Project, scheduler: str, args: argparse.Namespace, ui: UI) -> Cluster:
    """The connection to ``scheduler`` for this run, its data through the default remote."""
    from repro.cluster.client import Cluster
    from repro.remote_select import open_named_remote

    if args.check:
        raise UsageError("--check re-runs stages beside the project, here: drop --scheduler")
    if project.config.get("core.remote") is None:
        raise ReproError(
            "a cluster run moves data and images through the default remote, and there is "
            "none; add one with 'repro remote add -d NAME URL'"
        )
    return Cluster(project, scheduler, open_named_remote(project, None), not args.no_download, ui)


def _repro(project: Project, args: argparse.Namespace, ui: UI) -> int:
    stages = project.stages()
    graph = build(stages)
    targets = [s.address for s in resolve_targets(project, stages, args.targets)]
    runner = choose_runner(project.config) if any(not s.is_data_source for s in stages) else None
    options = Options(
        force=args.force,
        single=args.single_item,
        dry=args.dry,
        pinned=args.pinned,
        run_cache=not args.no_run_cache,
        keep_going=args.keep_going,
        jobs=args.jobs,
        check=args.check,
    )
    reproduction = Reproduction(project, graph, runner, options, ui)
    scheduler = args.scheduler or project.config.get("core.scheduler") or "local"
    if scheduler != "local" and not options.dry:
        reproduction.cluster = _cluster(project, scheduler, args, ui)
        # Every stage whose inputs are ready is submitted at once: the scheduler spreads them.
        reproduction.options = options._replace(jobs=max(args.jobs, len(graph.stages)))
    elif args.no_download:
        raise UsageError("--no-download leaves outputs on the remote: it needs --scheduler")
    try:
        outcome = reproduction.run(targets)
    except KeyboardInterrupt:
        if runner is not None:
            runner.stop_all()
        raise
    finally:
        if reproduction.cluster is not None:
            reproduction.cluster.close()
    if options.dry:
        if not outcome.planned:
            ui.info("Pipeline is up to date. Nothing to reproduce.")
        return 0
    if outcome.failed:
        names = ", ".join(name for name, _ in outcome.failed)
        skipped = f"; skipped downstream: {', '.join(outcome.skipped)}" if outcome.skipped else ""
        raise ReproError(f"failed: {names}{skipped}")
    if options.check:
        if outcome.differing:
            raise ReproError(
                f"not reproducible: {', '.join(outcome.differing)} came out other than "
                "recorded; see 'Reproducing a result exactly' in the README"
            )
        ui.info("Every output came out as recorded.")
        return 0
    if not outcome.ran and not outcome.restored:
        ui.info("Pipeline is up to date. Nothing to reproduce.")
    # A forced run that made the same outputs leaves git nothing to do; an experiment's commit
    # adds the files itself.
    elif outcome.rewritten and IN_EXPERIMENT not in os.environ:
        changed = sorted(set(outcome.rewritten))
        ui.info(f"To track the changes with git, run:\n\tgit add {' '.join(changed)}")
    return 0
