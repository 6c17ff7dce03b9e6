"""The command line's grammar: every command and its arguments, built only as needed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

from repro import __version__
from repro.cli.ui import UI
from repro.errors import EXIT_USAGE
from repro.metrics.formats import FORMATS

Handler = Callable[[argparse.Namespace, UI], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}; see '{self.prog} -h'\n")
        raise SystemExit(EXIT_USAGE)


class _Command(argparse.Action):
    """CMD... of ``repro run``: the words from the command's first on. One of repro run's own
    options among them was most likely meant for repro, and would silently become part of the
    command: refused, unless the command follows "--" (which is dropped)."""

    # Options every command has; a command's own -v or -h is far likelier than a misplaced one.
    COMMON = frozenset(("-h", "--help", "-v", "--verbose", "-q", "--quiet"))

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        words = [str(word) for word in values or ()]
        if words[:1] == ["--"]:
            words = words[1:]
        else:
            for word in words[1:]:
                option = word.split("=", 1)[0] if word.startswith("--") else word
                if option in parser._option_string_actions and option not in self.COMMON:
                    parser.error(
                        f"option '{option}' comes after the command and would be passed to it; "
                        "put repro's options before the command, or write '--' before the "
                        "command to pass it on"
                    )
        setattr(namespace, self.dest, words)


def _lazy(module: str, function: str) -> Handler:
    """Import a command's module only when it runs, so start-up stays fast."""

    def handler(args: argparse.Namespace, ui: UI) -> int:
        import importlib

        func: Handler = getattr(importlib.import_module(f"repro.cli.commands.{module}"), function)
        return func(args, ui)

    return handler


# Verbs whose remote variant lives with the other remote commands (commands/share.py): the
# option that selects it, and its function there. So command modules never import each other.
REMOTE_VARIANTS = {"status": ("cloud", "cloud_status"), "fsck": ("remote", "fsck_remote")}


def _or_remote(name: str, local: Handler) -> Handler:
    if name not in REMOTE_VARIANTS:
        return local
    flag, function = REMOTE_VARIANTS[name]
    remote = _lazy("share", function)

    def handler(args: argparse.Namespace, ui: UI) -> int:
        return (remote if getattr(args, flag) else local)(args, ui)

    return handler


def _common(default: object = False) -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="say more; show tracebacks"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="print only errors and answers"
    )
    return common


def _revs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all-branches", action="store_true", help="every branch")
    parser.add_argument("-T", "--all-tags", action="store_true", help="every tag")
    parser.add_argument("--all-commits", action="store_true", help="every commit")


# Every top-level command; tests check it against the parser.
COMMANDS = frozenset(
    ("init", "config", "add", "status", "checkout", "commit", "unprotect", "remove", "fsck")
    + ("run", "repro", "pipeline", "metrics", "remote", "push", "fetch", "pull", "gc")
    + ("install", "doctor")
    + ("params",)
    + ("exp",)
    + ("plots",)
    + ("diff",)
    + ("ls", "get", "import", "update")
)


class _Unused:
    """Stands in for the parser of a command that is not being run, and ignores whatever is
    declared on it: building all thirty parsers costs ~20 ms, a fifth of a quick command."""

    def __getattr__(self, name: str) -> Callable[..., _Unused]:
        return lambda *args, **kwargs: self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``only``, of that command alone ("" for none)."""
    # A command's -q/-v leave unset what they are not given: its parser's defaults would
    # otherwise overwrite the -q or -v given before the command.
    common = _common(argparse.SUPPRESS)
    parser = _Parser(
        prog="repro",
        parents=[_common()],
        description="Version data, models and metrics with git; reproduce pipelines whose "
        "every stage runs in a pinned Docker image.",
    )
    parser.add_argument("--version", action="version", version=f"repro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def group(name: str, help_text: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return cast(argparse.ArgumentParser, _Unused())
        return sub.add_parser(name, parents=[common], help=help_text)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        cmd = group(name, help_text)
        cmd.description = help_text
        cmd.set_defaults(func=_or_remote(name, handler))
        return cmd

    def subcommands(name: str, help_text: str) -> Callable[[str, str, str], _Parser]:
        """A command with subcommands; returns how to add one: (name, function in the
        command's module, help)."""
        subs = group(name, help_text).add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser, required=True
        )

        def add_sub(sub_name: str, function: str, sub_help: str) -> _Parser:
            cmd: _Parser = subs.add_parser(sub_name, parents=[common], help=sub_help)
            cmd.set_defaults(func=_lazy(name, function))
            return cmd

        return add_sub

    cmd = add("init", _lazy("init", "cmd_init"), "make .repro/ in the current git repository")
    cmd.add_argument("--image", help="default image of new stages (core.image)")
    cmd.add_argument("-f", "--force", action="store_true", help="re-initialise an existing project")
    cmd.add_argument(
        "--from-dvc", action="store_true", help="convert the DVC 3 project here, reusing its cache"
    )

    cmd = add("config", _lazy("config", "cmd_config"), "get or set a config value")
    cmd.add_argument("--local", action="store_true", help="use .repro/config.local (not in git)")
    cmd.add_argument("--unset", action="store_true", help="remove the key")
    cmd.add_argument("key", help="e.g. core.image, cache.type, remote.NAME.url")
    cmd.add_argument("value", nargs="?")

    cmd = add("add", _lazy("data", "cmd_add"), "track data that no stage produces")
    cmd.add_argument("paths", nargs="+", metavar="PATH")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    cmd = add("status", _lazy("data", "cmd_status"), "show what changed and why")
    cmd.add_argument("targets", nargs="*", metavar="TARGET")
    cmd.add_argument("-c", "--cloud", action="store_true", help="compare the cache with a remote")
    cmd.add_argument("-r", "--remote", help="remote for --cloud")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")

    cmd = add("checkout", _lazy("data", "cmd_checkout"), "make the workspace match the stage files")
    cmd.add_argument("targets", nargs="*", metavar="TARGET")
    cmd.add_argument(
        "-f", "--force", action="store_true", help="overwrite changes not in the cache"
    )
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    cmd = add("commit", _lazy("data", "cmd_commit"), "record the current outputs of stages")
    cmd.add_argument("targets", nargs="*", metavar="TARGET")
    cmd.add_argument("-f", "--force", action="store_true", help="commit even if deps changed")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    cmd = add("unprotect", _lazy("data", "cmd_unprotect"), "make linked outputs writable copies")
    cmd.add_argument("paths", nargs="+", metavar="PATH")

    cmd = add(
        "remove", _lazy("data", "cmd_remove"), "drop stages (and, with --outs, their outputs)"
    )
    cmd.add_argument("targets", nargs="+", metavar="STAGE")
    cmd.add_argument("--outs", action="store_true", help="also delete the outputs")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    cmd = add("fsck", _lazy("data", "cmd_fsck"), "re-hash every cache (or remote) object")
    cmd.add_argument("-r", "--remote", help="check this remote instead of the cache")

    cmd = add("run", _lazy("run", "cmd_run"), "write a stage file and run it now")
    cmd.add_argument("-f", "--file", help="stage file to write (default: first output + .repro)")
    cmd.add_argument("-n", "--name", help="add the stage to ./repro.yaml under this name")
    cmd.add_argument("-d", "--deps", action="append", default=[], metavar="DEP")
    cmd.add_argument(
        "-p",
        "--params",
        action="append",
        default=[],
        metavar="[FILE:]KEY,...",
        help="params the command reads (FILE: params.yaml; FILE: alone: all its keys)",
    )
    cmd.add_argument(
        "-o", "--outs", action="append", default=[], metavar="OUT", help="output kept in the cache"
    )
    cmd.add_argument(
        "-O",
        "--outs-no-cache",
        action="append",
        default=[],
        metavar="OUT",
        help="output not kept in the cache",
    )
    cmd.add_argument(
        "-M",
        "--metrics",
        action="append",
        default=[],
        metavar="METRIC",
        help="metric file: not cached, tracked in git",
    )
    cmd.add_argument(
        "--metrics-cached",
        action="append",
        default=[],
        metavar="METRIC",
        help="metric file kept in the cache",
    )
    cmd.add_argument(
        "--plots", action="append", default=[], metavar="PLOT", help="plot data kept in the cache"
    )
    cmd.add_argument(
        "--plots-no-cache",
        action="append",
        default=[],
        metavar="PLOT",
        help="plot data not cached, tracked in git",
    )
    cmd.add_argument("--image", help="image to run in (default: core.image)")
    # runners/spec.py NETWORK_MODES (not imported: every command builds this line; tests compare)
    cmd.add_argument("--network", choices=["none", "bridge", "host"], default="none")
    cmd.add_argument("-w", "--wdir", help="working directory of the command")
    cmd.add_argument("--no-exec", action="store_true", help="write the stage file only")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing stage file")
    cmd.add_argument("--no-run-cache", action="store_true", help="always start a container")
    cmd.add_argument("--cpus", help="CPU limit for the container, e.g. 2 or 0.5")
    cmd.add_argument("--memory", help="memory limit, e.g. 2g")
    cmd.add_argument("--gpus", help="GPUs: a count or 'all'")
    cmd.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a variable the stage sees, recorded in its file (alone: its value here)",
    )
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")
    cmd.add_argument("command", nargs=argparse.REMAINDER, action=_Command, metavar="CMD")

    cmd = add("repro", _lazy("run", "cmd_repro"), "reproduce stages whose inputs changed")
    cmd.add_argument("targets", nargs="*", metavar="TARGET")
    cmd.add_argument("-f", "--force", action="store_true", help="run the targets regardless")
    cmd.add_argument("-s", "--single-item", action="store_true", help="only the targets")
    cmd.add_argument("--dry", action="store_true", help="print the plan; run nothing")
    cmd.add_argument("--pinned", action="store_true", help="run the recorded image IDs")
    cmd.add_argument("--no-run-cache", action="store_true", help="never restore from the run-cache")
    cmd.add_argument("-k", "--keep-going", action="store_true", help="go on after a failure")
    cmd.add_argument("-j", "--jobs", type=int, default=1, help="stages to run at once")
    cmd.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run stages on the Dask cluster of this scheduler (tcp://HOST:8786), or local",
    )
    cmd.add_argument(
        "--no-download",
        action="store_true",
        help="with a scheduler: leave the outputs on the remote ('repro pull' fetches them)",
    )
    cmd.add_argument(
        "--check",
        action="store_true",
        help="re-run the targets beside the project and name the outputs that differ",
    )
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    pipeline = subcommands("pipeline", "show the pipeline DAG")
    cmd = pipeline("show", "cmd_show", "draw the pipeline")
    cmd.add_argument("target", nargs="?", metavar="TARGET")
    style = cmd.add_mutually_exclusive_group()
    style.add_argument("--ascii", action="store_true", help="boxes and arrows (default)")
    style.add_argument("--dot", action="store_true", help="Graphviz dot")
    style.add_argument("--mermaid", action="store_true", help="Mermaid flowchart")
    label = cmd.add_mutually_exclusive_group()
    label.add_argument("--commands", action="store_true", help="label stages by command")
    label.add_argument("--outs", action="store_true", help="show outputs instead of stages")
    cmd = pipeline("list", "cmd_list", "list stages")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")

    metrics = subcommands("metrics", "show, modify and compare metrics")
    cmd = metrics("show", "cmd_show", "metric values of the workspace or history")
    cmd.add_argument("paths", nargs="*", metavar="PATH")
    _revs(cmd)
    cmd.add_argument("--type", choices=FORMATS)
    cmd.add_argument("--xpath", help="key path such as acc or train.loss")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = metrics("modify", "cmd_modify", "set how a metric is read")
    cmd.add_argument("path", metavar="PATH")
    cmd.add_argument("--type", choices=FORMATS)
    cmd.add_argument("--xpath", help="key path such as acc or train.loss")
    cmd = metrics("diff", "cmd_diff", "compare metrics of two revisions")
    cmd.add_argument("a_rev", nargs="?", metavar="A", help="old revision (default HEAD)")
    cmd.add_argument("b_rev", nargs="?", metavar="B", help="new revision (default workspace)")
    cmd.add_argument("--path", dest="paths", action="append", default=[], metavar="PATH")
    cmd.add_argument("--type", choices=FORMATS)
    cmd.add_argument("--xpath", help="key path such as acc or train.loss")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")

    plots = subcommands("plots", "draw plots and metrics: an offline HTML page, PNG and SVG")
    for name, function, help_text in (
        ("show", "cmd_show", "draw the workspace's plots"),
        ("diff", "cmd_diff", "overlay revisions in each plot (default: HEAD and the workspace)"),
        ("metrics", "cmd_metrics", "draw each metric across revisions"),
    ):
        cmd = plots(name, function, help_text)
        if name == "diff":
            cmd.add_argument("revisions", nargs="*", metavar="REV", help="revision or experiment")
            cmd.add_argument("--targets", nargs="+", default=[], metavar="TARGET")
        elif name == "show":
            cmd.add_argument("targets", nargs="*", metavar="TARGET", help="plot file to draw")
        else:
            _revs(cmd)
            cmd.add_argument("--xpath", help="key path such as acc or train.loss")
        cmd.add_argument("-o", "--out", metavar="DIR", help="where to write (default repro_plots)")
        cmd.add_argument("--json", action="store_true", help="print the Vega-Lite specs instead")
        cmd.add_argument("--open", action="store_true", help="open the page in a browser")
    cmd = plots("modify", "cmd_modify", "set how a plot is drawn")
    cmd.add_argument("path", metavar="PLOT")
    cmd.add_argument("-x", help="field of the x axis")
    cmd.add_argument("-y", help="field of the y axis")
    # metrics/plot_templates.py TEMPLATES (not imported: every command builds this line)
    cmd.add_argument("--template", choices=["linear", "scatter", "bar", "confusion", "smooth"])
    cmd.add_argument("--title")
    cmd.add_argument("--x-label", help="title of the x axis")
    cmd.add_argument("--y-label", help="title of the y axis")

    params = subcommands("params", "compare the params stages use")
    cmd = params("diff", "cmd_diff", "compare params of two revisions")
    cmd.add_argument("a_rev", nargs="?", metavar="A", help="old revision (default HEAD)")
    cmd.add_argument("b_rev", nargs="?", metavar="B", help="new revision (default workspace)")
    cmd.add_argument("--all", action="store_true", help="unchanged params too")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")

    cmd = add("diff", _lazy("diff", "cmd_diff"), "files changed inside tracked data")
    cmd.add_argument("a_rev", nargs="?", metavar="A", help="old revision (default HEAD)")
    cmd.add_argument("b_rev", nargs="?", metavar="B", help="new revision (default workspace)")
    cmd.add_argument(
        "--targets", nargs="+", default=[], metavar="PATH", help="only these outputs or paths"
    )
    form = cmd.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--md", action="store_true", help="a Markdown table")

    remote = subcommands("remote", "manage remotes")
    cmd = remote("add", "cmd_add", "add a remote")
    cmd.add_argument("-d", "--default", action="store_true", help="make it the default")
    cmd.add_argument("-f", "--force", action="store_true", help="overwrite an existing one")
    cmd.add_argument("--local", action="store_true", help="write to config.local")
    cmd.add_argument("name", metavar="NAME")
    cmd.add_argument(
        "url", metavar="URL", help="folder, ssh://[user@]host[:port]/path, s3://bucket/prefix"
    )
    cmd = remote("list", "cmd_list", "list remotes")
    cmd = remote("remove", "cmd_remove", "remove a remote")
    cmd.add_argument("name", metavar="NAME")
    cmd = remote("default", "cmd_default", "show or set the default remote")
    cmd.add_argument("--local", action="store_true", help="write to config.local")
    cmd.add_argument("name", nargs="?", metavar="NAME")
    cmd = remote("modify", "cmd_modify", "set a remote option")
    cmd.add_argument("--local", action="store_true", help="write to config.local (secrets)")
    cmd.add_argument("--unset", action="store_true", help="remove the option")
    cmd.add_argument("name", metavar="NAME")
    cmd.add_argument("key", metavar="KEY")
    cmd.add_argument("value", nargs="?", metavar="VALUE")

    for verb, help_text in (
        ("push", "upload what the remote lacks"),
        ("fetch", "download what the cache lacks"),
        ("pull", "fetch, then checkout"),
    ):
        cmd = add(verb, _lazy("share", f"cmd_{verb}"), help_text)
        cmd.add_argument("targets", nargs="*", metavar="TARGET")
        cmd.add_argument("-r", "--remote", help="remote name (default: core.remote)")
        _revs(cmd)
        cmd.add_argument("-j", "--jobs", type=int, default=None, help="parallel transfers")
        cmd.add_argument("--images", action="store_true", help="pinned images travel too")
        cmd.add_argument("--run-cache", action="store_true", help="run-cache entries travel too")
        cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    cmd = add("gc", _lazy("gc", "cmd_gc"), "delete cache objects no kept revision uses")
    scope = cmd.add_argument_group("scope (one is required; the workspace is always kept)")
    scope.add_argument("-w", "--workspace", action="store_true", help="keep the workspace only")
    _revs(scope)  # type: ignore[arg-type]
    cmd.add_argument("-c", "--cloud", action="store_true", help="also delete from the remote")
    cmd.add_argument("-r", "--remote", help="remote for --cloud")
    cmd.add_argument("-f", "--force", action="store_true", help="do not ask")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    exp = subcommands("exp", "experiments: runs with changed params, kept under refs/exps")
    cmd = exp("run", "cmd_run", "run the pipeline with changed params as an experiment")
    cmd.add_argument("targets", nargs="*", metavar="TARGET")
    cmd.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="[FILE:]KEY=VALUE",
        help="change a parameter (params.yaml by default)",
    )
    cmd.add_argument("-n", "--name", help="the experiment's name (default: two random words)")
    cmd.add_argument("--queue", action="store_true", help="queue it instead of running it")
    cmd.add_argument("--run-all", action="store_true", help="run every queued experiment")
    cmd.add_argument("-j", "--jobs", type=int, default=1, help="queued experiments at once")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")
    cmd = exp("show", "cmd_show", "baselines and experiments with their params and metrics")
    form = cmd.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--csv", action="store_true", help="comma-separated values")
    cmd.add_argument("-a", "--all-branches", action="store_true", help="every branch")
    cmd.add_argument("-T", "--all-tags", action="store_true", help="every tag")
    cmd = exp("diff", "cmd_diff", "compare params and metrics of two experiments")
    cmd.add_argument("a_rev", metavar="A", help="an experiment or revision")
    cmd.add_argument("b_rev", metavar="B", help="an experiment or revision")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = exp("apply", "cmd_apply", "put an experiment's files and outputs in the workspace")
    cmd.add_argument("name", metavar="NAME")
    cmd.add_argument("-f", "--force", action="store_true", help="overwrite uncommitted changes")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")
    cmd = exp("branch", "cmd_branch", "make a git branch of an experiment")
    cmd.add_argument("name", metavar="NAME")
    cmd.add_argument("branch", metavar="BRANCH")
    cmd = exp("remove", "cmd_remove", "delete experiments")
    cmd.add_argument("names", nargs="*", metavar="NAME")
    which = cmd.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every experiment and queued one")
    which.add_argument("--queue", action="store_true", help="every queued experiment")
    for verb, help_text in (
        ("push", "send experiments' refs to a git remote, their data to the data remote"),
        ("pull", "fetch experiments' refs from a git remote, their data from the data remote"),
    ):
        cmd = exp(verb, f"cmd_{verb}", help_text)
        cmd.add_argument("git_remote", metavar="GIT_REMOTE")
        cmd.add_argument("names", nargs="+", metavar="NAME")

    cmd = add("ls", _lazy("registry", "cmd_ls"), "list what a repository tracks, with sizes")
    cmd.add_argument("url", metavar="URL", help="a repository: folder, file://, ssh://, …")
    cmd.add_argument("path", nargs="?", metavar="PATH", help="a folder in it (default: the root)")
    cmd.add_argument("--rev", help="a branch, tag or commit of it (default: its HEAD)")
    cmd.add_argument("-R", "--recursive", action="store_true", help="everything below")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    for verb, help_text in (
        ("get", "download data of a repository, without tracking it"),
        ("import", "track data of a repository here, with where it came from"),
    ):
        cmd = add(verb, _lazy("registry", f"cmd_{verb}"), help_text)
        cmd.add_argument("url", metavar="URL", help="a repository: folder, file://, ssh://, …")
        cmd.add_argument("path", metavar="PATH", help="data or a file in it")
        cmd.add_argument("-o", "--out", help="where to put it (default: its name, here)")
        cmd.add_argument("--rev", help="a branch, tag or commit of it (default: its HEAD)")
        cmd.add_argument("-j", "--jobs", type=int, help="downloads at once")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")
    cmd = add("update", _lazy("registry", "cmd_update"), "bring the newest version of imports")
    cmd.add_argument("targets", nargs="+", metavar="TARGET")
    cmd.add_argument("--rev", help="switch to another branch, tag or commit of the source")
    cmd.add_argument("-j", "--jobs", type=int, help="downloads at once")
    cmd.add_argument("--wait", action="store_true", help="wait for the project lock")

    cmd = add(
        "install",
        _lazy("install", "cmd_install"),
        "git hooks: post-checkout runs checkout, pre-push runs push",
    )

    cmd = add("doctor", _lazy("doctor", "cmd_doctor"), "report on the environment")

    return parser
