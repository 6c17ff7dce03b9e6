"""Stage files: one stage per YAML file, written deterministically.

What a stage file may hold is one table, FIELDS: each key with how it is read, how it is
written (in the table's order, so that two runs write the same bytes), and what it adds to the
stage's definition md5 (a stage is new when that changes) and to its run-cache key (an earlier
run with the same key had the same inputs).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from repro.errors import ReproError, UsageError
from repro.memo.parsed import PARSED, NotYaml
from repro.metrics.formats import FORMATS
from repro.metrics.plot_templates import TEMPLATES
from repro.objects.digest import bytes_md5
from repro.runners.spec import NETWORK_MODES, Image, Resources
from repro.stages import fields
from repro.stages.deps.base import Dependency
from repro.stages.deps.kinds import KINDS
from repro.stages.fields import Malformed
from repro.walk import LOCK_FILE, PIPELINE_FILE
from repro.walk import STAGE_SUFFIX as STAGE_SUFFIX


class Metric(NamedTuple):
    type: str | None = None
    xpath: str | None = None

    def to_dict(self) -> dict[str, str]:
        result: dict[str, str] = {}
        if self.type:
            result["type"] = self.type
        if self.xpath:
            result["xpath"] = self.xpath
        return result


class Plot(NamedTuple):
    """How a plot output is drawn; unset fields take the template's defaults."""

    x: str | None = None
    y: str | None = None
    template: str | None = None
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {key: value for key, value in self._asdict().items() if value}


class Out(NamedTuple):
    path: str
    md5: str | None = None
    cache: bool = True
    metric: Metric | None = None
    persist: bool = False  # kept in place before a run (the command updates it), not removed
    plot: Plot | None = None  # like metric, how it is shown is no part of the definition


class Stage(NamedTuple):
    """A stage as its file describes it. ``path`` is the stage file, relative to the root;
    ``name`` the stage's name in a repro.yaml (None for a ``*.repro`` file)."""

    path: str
    cmd: str | None = None
    wdir: str = "."
    image: Image | None = None
    network: str = "none"
    deps: tuple[Dependency, ...] = ()
    outs: tuple[Out, ...] = ()
    resources: Resources = Resources()
    env: tuple[tuple[str, str], ...] = ()  # variables the stage declares, sorted by name
    md5: str | None = None
    name: str | None = None
    # The SOURCE_DATE_EPOCH its last run had (pipeline/source_date.py): what a run on the same
    # inputs gets again. A record of the run, like the outputs' hashes: no part of the md5.
    source_date_epoch: int | None = None

    @property
    def address(self) -> str:
        """How the stage is named everywhere (graph, status, run-cache, logs): its stage file,
        or for a repro.yaml stage its name, prefixed with the file below the root."""
        if self.name is None:
            return self.path
        return self.name if self.path == PIPELINE_FILE else f"{self.path}:{self.name}"

    @property
    def record_path(self) -> str:
        """The file a run rewrites: the stage file, or the repro.lock beside a repro.yaml."""
        return self.path if self.name is None else posixpath.join(self.stage_dir, LOCK_FILE)

    @property
    def is_data_source(self) -> bool:
        """A stage made by ``repro add``: no command, just tracked data."""
        return self.cmd is None

    @property
    def stage_dir(self) -> str:
        return os.path.dirname(self.path)

    @property
    def work_dir(self) -> str:
        """The working directory relative to the project root."""
        return os.path.normpath(os.path.join(self.stage_dir, self.wdir))

    def definition_md5(self) -> str:
        """md5 of what defines the stage (FIELDS' ``defines``): cmd, wdir, image id, network,
        paths and flags. Metric options are left out on purpose: ``metrics modify`` must not
        force a re-run."""
        payload = {
            f.key: f.defines(self) for f in FIELDS if f.defines is not None and f.joins(self)
        }
        payload.update(
            (kind.FIELD, kind.defines(deps))
            for kind, deps in self.deps_by_kind()
            if deps or kind.FIELD == "deps"  # a new kind leaves older stages' md5s alone
        )
        return bytes_md5(json.dumps(payload, sort_keys=True).encode())

    def run_key_payload(self, image_id: str, dep_values: dict[str, Any]) -> dict[str, Any]:
        """What a run-cache key covers (FIELDS' ``runs``): a run of the same command in the
        same image, over dependencies with the same values, makes the same outputs."""
        payload = {
            f.key: f.runs(self, image_id, dep_values)
            for f in FIELDS
            if f.runs is not None and f.joins(self)
        }
        payload["deps"] = sorted(dep_values.items())  # every kind's values, by name
        return payload

    def with_md5(self) -> Stage:
        return self._replace(md5=self.definition_md5())

    def deps_by_kind(self) -> list[tuple[Any, tuple[Dependency, ...]]]:
        return [(kind, tuple(d for d in self.deps if isinstance(d, kind.TYPE))) for kind in KINDS]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field in FIELDS:
            value = field.dump(self)
            if value is not None:
                data[field.key] = value
        return data

    def out_paths(self) -> list[str]:
        return [o.path for o in self.outs]


def dump(stage: Stage) -> str:
    import yaml

    # No width: a long command or path stays on one line, as its author wrote it.
    text = yaml.safe_dump(
        stage.to_dict(), sort_keys=False, default_flow_style=False, width=float("inf")
    )
    return str(text)


def with_out_changed(
    stages: list[Stage], path: str, change: Callable[[Out], Out], what: str
) -> Stage:
    """The stage file of the stage that outputs ``path``, with that output changed: how a
    metric or plot is shown (``what``), which no definition md5 covers, so nothing re-runs."""
    for stage in stages:
        if path not in stage.out_paths():
            continue
        if stage.name is not None:
            raise ReproError(
                f"'{path}' is an output of '{stage.address}', and repro does not rewrite "
                f"{stage.path}: set how the {what} is shown under its entry there"
            )
        return stage._replace(outs=tuple(change(o) if o.path == path else o for o in stage.outs))
    raise ReproError(f"'{path}' is not an output of any stage; declare it as a {what} with run")


def write(root: Path, stage: Stage) -> None:
    """Write the stage file atomically (temp + rename), so a kill leaves the old or the new.
    A hand-written file keeps its key order, and its comments where it can (stage_text).
    A repro.yaml stage is recorded in its repro.lock; the repro.yaml is never rewritten."""
    from repro.fsutil import read_regular, write_atomic
    from repro.paths import inside
    from repro.stages.text import render

    check(stage)  # whatever built it: a file repro cannot read back is never written
    if stage.name is not None:  # a repro.yaml stage: what it ran with goes to the lock
        from repro.stages.pipeline_file import record

        record(root, stage)
        return
    target = inside(root, stage.path, "stage file", exact=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # never through a symlink, never blocking on a fifo: only a file's own text is kept
        old_text: str | None = read_regular(target).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        old_text = None
    text = render(stage, old_text)
    write_atomic(target, text.encode("utf-8"))
    WRITTEN[target] = text.encode("utf-8")
    PARSED.load(text)  # yaml is loaded already: the next command finds the file parsed


# Stage files this process wrote, with their bytes: while a stage runs (in parallel with
# others) these may change without the stage having written them.
WRITTEN: dict[Path, bytes] = {}


# -- the schema ------------------------------------------------------------------------------
class Field(NamedTuple):
    """One key of a stage file."""

    key: str
    # The stage's attributes it gives, from the file's mapping (the key may be absent).
    load: Callable[[dict[str, Any], str], dict[str, Any]]
    # Its value in the file; None leaves the key out.
    dump: Callable[[Stage], Any]
    # Its part of the definition md5; None: no part.
    defines: Callable[[Stage], Any] | None = None
    # Its part of the run-cache key, given the image ID and the dependencies' values.
    runs: Callable[[Stage, str, dict[str, Any]], Any] | None = None
    # False: a key added to the schema later, which joins the definition md5 and the run-cache
    # key only when the stage gives it a value, so that older stages keep their hashes.
    always: bool = True

    def joins(self, stage: Stage) -> bool:
        """Whether this key is part of ``stage``'s definition md5 and run-cache key."""
        return self.always or self.dump(stage) is not None


def _load_cmd(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    cmd = data.get("cmd")
    return {"cmd": None if cmd is None else fields.text(cmd, "cmd")}


def _load_wdir(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    wdir = fields.text(data.get("wdir", "."), "wdir")
    fields.check_wdir(stage_dir, wdir)
    return {"wdir": wdir}


def _load_image(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    if data.get("image") is None:
        return {"image": None}
    raw = fields.mapping(data["image"], "image")
    return {
        "image": Image(
            name=fields.text(raw.get("name"), "image.name"),
            id=fields.optional_text(raw.get("id"), "image.id"),
            digest=fields.optional_text(raw.get("digest"), "image.digest"),
        )
    }


def _dump_image(stage: Stage) -> dict[str, str] | None:
    if stage.image is None:
        return None
    image = {"name": stage.image.name, "id": stage.image.id, "digest": stage.image.digest}
    return {k: v for k, v in image.items() if v}


def _load_network(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    network = data.get("network", "none")
    if network not in NETWORK_MODES:
        raise Malformed(f"network must be one of {', '.join(NETWORK_MODES)}")
    return {"network": str(network)}


def _load_resources(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    if data.get("resources") is None:
        return {"resources": Resources()}
    raw = fields.mapping(data["resources"], "resources")
    unknown = set(raw) - {"cpus", "memory", "gpus"}
    if unknown:
        raise Malformed(f"unknown key resources.{sorted(map(str, unknown))[0]}")
    return {
        "resources": _resources(raw.get("cpus"), raw.get("memory"), raw.get("gpus"), "resources.")
    }


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _load_env(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    if data.get("env") is None:
        return {"env": ()}
    declared = []
    for name, value in fields.mapping(data["env"], "env").items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise Malformed(f"env name {name!r} must be letters, digits and _, not first a digit")
        if isinstance(value, bool) or not isinstance(value, (str, int)) or "\0" in str(value):
            raise Malformed(f"env value of {name} must be a string")
        declared.append((name, str(value)))
    return {"env": tuple(sorted(declared))}


def _dep_field(kind: Any) -> Field:
    """The field of a kind of dependency (deps/kinds.py); their values join ``Stage.deps``."""

    def load(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
        return {"deps": kind.load(stage_dir, data.get(kind.FIELD))}

    def dump(stage: Stage) -> list[Any] | None:
        deps = tuple(d for d in stage.deps if isinstance(d, kind.TYPE))
        return kind.dump(stage.stage_dir, deps) if deps else None

    return Field(kind.FIELD, load, dump)  # definition and run key: Stage gathers every kind


def _load_outs(data: dict[str, Any], stage_dir: str) -> dict[str, Any]:
    outs = []
    for raw_out in fields.sequence(data.get("outs"), "outs"):
        raw_out = fields.mapping(raw_out, "an out")
        cache = raw_out.get("cache", True)
        if not isinstance(cache, bool):
            raise Malformed("out cache must be true or false")
        metric = None
        if raw_out.get("metric") is not None:
            raw_metric = raw_out["metric"]
            if raw_metric is True:
                raw_metric = {}
            raw_metric = fields.mapping(raw_metric, "metric")
            mtype = fields.optional_text(raw_metric.get("type"), "metric type")
            if mtype is not None and mtype not in FORMATS:
                raise Malformed(f"metric type must be one of {', '.join(FORMATS)}")
            metric = Metric(mtype, fields.optional_text(raw_metric.get("xpath"), "metric xpath"))
        path = fields.to_root(stage_dir, fields.text(raw_out.get("path"), "out path"))
        persist = raw_out.get("persist", False)
        if not isinstance(persist, bool):
            raise Malformed("out persist must be true or false")
        md5 = fields.md5(raw_out.get("md5"), "out md5")
        plot = None if raw_out.get("plot") is None else _load_plot(raw_out["plot"])
        outs.append(Out(path, md5, cache, metric, persist, plot))
    return {"outs": tuple(outs)}


def _dump_outs(stage: Stage) -> list[dict[str, Any]] | None:
    outs = []
    for out in stage.outs:
        item = fields.drop_none({"path": fields.to_file(stage.stage_dir, out.path), "md5": out.md5})
        item["cache"] = out.cache
        if out.metric is not None:
            item["metric"] = out.metric.to_dict()
        if out.persist:
            item["persist"] = True
        if out.plot is not None:
            item["plot"] = out.plot.to_dict()
        outs.append(item)
    return outs or None


def _load_plot(raw: Any) -> Plot:
    raw = fields.mapping({} if raw is True else raw, "plot")
    unknown = set(raw) - set(Plot._fields)
    if unknown:
        raise Malformed(f"unknown plot key {sorted(map(str, unknown))[0]!r}")
    plot = Plot(**{key: fields.optional_text(raw.get(key), f"plot {key}") for key in Plot._fields})
    if plot.template is not None and plot.template not in TEMPLATES:
        raise Malformed(f"plot template must be one of {', '.join(TEMPLATES)}")
    return plot


def _out_flags(stage: Stage, *_: Any) -> list[list[Any]]:
    # persist only when set: the md5s and run-cache keys of earlier stages stay the same
    return [[o.path, o.cache, *([True] if o.persist else [])] for o in stage.outs]


FIELDS: tuple[Field, ...] = (
    Field(
        "cmd",
        _load_cmd,
        lambda s: s.cmd,
        defines=lambda s: s.cmd,
        runs=lambda s, _image, _deps: s.cmd,
    ),
    Field(
        "wdir",
        _load_wdir,
        lambda s: None if s.wdir == "." else s.wdir,
        defines=lambda s: s.wdir,
        runs=lambda s, _image, _deps: s.work_dir,
    ),
    Field(
        "image",
        _load_image,
        _dump_image,
        defines=lambda s: s.image.id if s.image else None,
        runs=lambda _s, image_id, _deps: image_id,
    ),
    Field(
        "network",
        _load_network,
        lambda s: s.network if s.cmd is not None and s.network != "none" else None,
        defines=lambda s: s.network if s.cmd else None,
        runs=lambda s, _image, _deps: s.network,
    ),
    Field(
        "env",
        _load_env,
        lambda s: dict(s.env) or None,
        defines=lambda s: dict(s.env),
        runs=lambda s, _image, _deps: dict(s.env),
        always=False,
    ),
    Field(
        "resources",
        _load_resources,
        lambda s: s.resources.to_dict() or None,
        defines=lambda s: s.resources.to_dict(),  # the run-cache ignores them: same outputs
    ),
    *(_dep_field(kind) for kind in KINDS),
    Field("outs", _load_outs, _dump_outs, defines=_out_flags, runs=_out_flags),
    Field(
        "source_date_epoch",
        lambda data, _dir: {
            "source_date_epoch": fields.epoch(data.get("source_date_epoch"), "source_date_epoch")
        },
        lambda s: s.source_date_epoch,
    ),
    Field("md5", lambda data, _dir: {"md5": fields.md5(data.get("md5"), "md5")}, lambda s: s.md5),
)
FIELD_KEYS = frozenset(f.key for f in FIELDS)


# -- loading ---------------------------------------------------------------------------------
def from_dict(path: str, data: Any) -> Stage:
    data = fields.mapping(data, "the file")
    unknown = set(data) - FIELD_KEYS
    if unknown:
        raise Malformed(f"unknown key {sorted(unknown)[0]!r}")
    stage_dir = posixpath.dirname(path)
    values: dict[str, Any] = {"deps": ()}
    for field in FIELDS:
        for attribute, value in field.load(data, stage_dir).items():
            values[attribute] = values[attribute] + value if attribute == "deps" else value
    return Stage(path=path, **values)


# -- rules shared by stage files and the command line ----------------------------------------
def check(stage: Stage) -> None:
    """Refuse a stage (built from the command line) that its file could not hold, or that
    would run outside the project: the rules the loader applies to a stage file."""
    try:
        fields.check_name(stage.path, "stage file")
        for dep in stage.deps:
            fields.check_name(dep.path, "dependency")
        for out in stage.outs:
            fields.check_name(out.path, "output")
        fields.check_wdir(stage.stage_dir, stage.wdir)
        for text, what in ((stage.cmd, "the command"), (stage.image and stage.image.name, "image")):
            if text is not None and not fields.is_utf8(text):
                raise Malformed(
                    f"{what} '{fields.shown(text)}' is not valid UTF-8; stage files are UTF-8 text"
                )
    except Malformed as exc:
        raise ReproError(str(exc)) from None


def check_path(path: str, what: str) -> None:
    """Refuse a path that stage files (UTF-8 YAML) or .gitignore lines cannot hold."""
    try:
        fields.check_name(path, what)
    except Malformed as exc:
        raise ReproError(str(exc)) from None


def env_from_cli(items: list[str], environ: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """--env NAME=VALUE, or --env NAME for the value NAME has now in ``environ``: the variables
    a stage declares, as its file records them."""
    declared: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            if name not in environ:
                raise ReproError(
                    f"--env {name}: {name} is not set here; give its value: --env {name}=VALUE"
                )
            value = environ[name]
        try:
            declared.update(_load_env({"env": {name: value}}, "")["env"])
        except Malformed as exc:
            raise UsageError(f"--env {item}: {exc}") from None
    return tuple(sorted(declared.items()))


def resources_from_cli(cpus: str | None, memory: str | None, gpus: str | None) -> Resources:
    """--cpus, --memory and --gpus as Docker takes them; a bad one is a usage error."""
    try:
        return _resources(cpus, memory, gpus, "--")
    except Malformed as exc:
        raise UsageError(str(exc)) from None


# Docker's units (docker-py's parse_bytes): an optional b after k, m or g; b alone is bytes.
_BYTE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_MIN_MEMORY = 6 << 20  # the engine refuses less
_MAX_MEMORY = (1 << 63) - 1  # what the engine's int64 holds
_MIN_CPUS = 0.01  # the engine's step; less would round to no limit at all


def _resources(cpus: Any, memory: Any, gpus: Any, prefix: str) -> Resources:
    """Resources checked as the engine takes them; ``prefix`` names them in messages."""
    if cpus is not None and _cpu_count(cpus) < _MIN_CPUS:
        raise Malformed(
            f"{prefix}cpus must be a number of CPUs of at least {_MIN_CPUS}, such as 2 or 0.5, "
            f"not {cpus!r}"
        )
    if isinstance(memory, int) and not isinstance(memory, bool):
        memory = str(memory)
    if memory is not None and not _MIN_MEMORY <= memory_bytes(memory) <= _MAX_MEMORY:
        raise Malformed(
            f"{prefix}memory must be a size such as 512m or 2g (bytes, or k, m, g; at least "
            f"6m), not {memory!r}"
        )
    if isinstance(gpus, int) and not isinstance(gpus, bool):
        gpus = str(gpus)
    if gpus is not None and not (
        gpus == "all" or (isinstance(gpus, str) and _digits(gpus) and int(gpus) >= 1)
    ):
        raise Malformed(f"{prefix}gpus must be 'all' or a count of at least 1, not {gpus!r}")
    return Resources(None if cpus is None else _cpu_count(cpus), memory, gpus)


def _cpu_count(value: Any) -> float:
    """A finite number of CPUs (a number, or digits with a point); -1 if it is not one."""
    import math

    if isinstance(value, str) and value.strip("0123456789.") == "":  # not nan, inf, 1e3
        try:
            value = float(value)
        except ValueError:  # "1.2.3", "."
            return -1
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return -1
    return float(value) if math.isfinite(value) else -1


def memory_bytes(value: Any) -> int:
    """Bytes of a memory size as Docker writes it (512m, 2g, 1.5g, 1024); -1 if it is not one."""
    if not isinstance(value, str):
        return -1
    text = value.lower()
    if len(text) > 2 and text.endswith("b") and text[-2] in "kmg":
        text = text[:-1]
    unit = _BYTE_UNITS.get(text[-1:])
    if unit is not None:
        text = text[:-1]
    whole, dot, fraction = text.partition(".")
    if not _digits(whole) or (dot and not _digits(fraction)):
        return -1
    size = float(text) * (unit or 1)
    return int(size) if size < _MAX_MEMORY else _MAX_MEMORY + 1


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse(path: str, text: str) -> Stage:
    """Parse a stage file's text; any problem is one ReproError naming the file."""
    try:
        data = PARSED.load(text)
    except NotYaml as exc:
        raise ReproError(
            f"stage file '{path}' is not valid YAML{exc}; fix it or restore it with git checkout"
        ) from None
    try:
        return from_dict(path, data)
    except Malformed as exc:
        raise ReproError(
            f"stage file '{path}' is malformed: {exc}; fix it or restore it with git checkout"
        ) from None


def load(root: Path, path: str) -> Stage:
    from repro.fsutil import NotRegular, read_regular

    try:
        text = read_regular(root / path).decode("utf-8")
    except FileNotFoundError:
        raise ReproError(f"stage file '{path}' does not exist") from None
    except NotRegular:
        raise ReproError(
            f"stage file '{path}' is a symlink, fifo or device, not a file; remove it"
        ) from None
    except UnicodeDecodeError:
        raise ReproError(f"'{path}' is not a stage file") from None
    return parse(path, text)


def load_file(root: Path, path: str) -> list[Stage]:
    """The stages of a stage file: a ``*.repro`` file's one, each of a repro.yaml's, none of
    a repro.lock (the stages of the repro.yaml beside it read it)."""
    name = posixpath.basename(path)
    if name == LOCK_FILE:
        return []
    if name == PIPELINE_FILE:
        from repro.stages import pipeline_file

        return pipeline_file.load(root, path)
    return [load(root, path)]


def reload(root: Path, stage: Stage) -> Stage:
    """``stage`` as its file says now (a run upstream may have rewritten it)."""
    for found in load_file(root, stage.path):
        if found.address == stage.address:
            return found
    raise ReproError(f"stage '{stage.address}' is gone from '{stage.path}'; run again to see why")
