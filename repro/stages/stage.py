"""Stage files: one stage per YAML file, written deterministically (SPEC §1.2)."""

from __future__ import annotations

import json
import marshal
import os
import posixpath
from pathlib import Path
from typing import Any, NamedTuple

from repro.errors import ReproError, UsageError
from repro.fsutil import NAME_MAX
from repro.memo import store as memo
from repro.runners.spec import NETWORK_MODES, Image, Resources
from repro.walk import RESERVED_DIRS
from repro.walk import STAGE_SUFFIX as STAGE_SUFFIX

METRIC_TYPES = ("json", "yaml", "csv", "tsv", "raw")


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


class Dep(NamedTuple):
    path: str  # relative to the project root, POSIX
    md5: str | None = None


class Out(NamedTuple):
    path: str
    md5: str | None = None
    cache: bool = True
    metric: Metric | None = None


class Stage(NamedTuple):
    """A stage as its file describes it. ``path`` is the stage file, relative to the root."""

    path: str
    cmd: str | None = None
    wdir: str = "."
    image: Image | None = None
    network: str = "none"
    deps: tuple[Dep, ...] = ()
    outs: tuple[Out, ...] = ()
    resources: Resources = Resources()
    md5: str | None = None

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
        """md5 of what defines the stage: cmd, wdir, image id, network, paths and flags.

        Metric options are left out on purpose: ``metrics modify`` must not force a re-run.
        """
        payload = {
            "cmd": self.cmd,
            "wdir": self.wdir,
            "image": self.image.id if self.image else None,
            "network": self.network if self.cmd else None,
            "deps": [d.path for d in self.deps],
            "outs": [[o.path, o.cache] for o in self.outs],
            "resources": self.resources.to_dict(),
        }
        import hashlib  # loads OpenSSL: only commands that write or check stages need it

        return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def with_md5(self) -> Stage:
        return self._replace(md5=self.definition_md5())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.cmd is not None:
            data["cmd"] = self.cmd
        if self.wdir != ".":
            data["wdir"] = self.wdir
        if self.image is not None:
            image: dict[str, str] = {"name": self.image.name}
            if self.image.id:
                image["id"] = self.image.id
            if self.image.digest:
                image["digest"] = self.image.digest
            data["image"] = image
        if self.cmd is not None and self.network != "none":
            data["network"] = self.network
        if self.resources.to_dict():
            data["resources"] = self.resources.to_dict()
        if self.deps:
            data["deps"] = [
                _drop_none({"path": _to_file(self.stage_dir, d.path), "md5": d.md5})
                for d in self.deps
            ]
        outs = []
        for out in self.outs:
            item: dict[str, Any] = _drop_none(
                {"path": _to_file(self.stage_dir, out.path), "md5": out.md5}
            )
            item["cache"] = out.cache
            if out.metric is not None:
                item["metric"] = out.metric.to_dict()
            outs.append(item)
        if outs:
            data["outs"] = outs
        if self.md5:
            data["md5"] = self.md5
        return data

    def out_paths(self) -> list[str]:
        return [o.path for o in self.outs]


def _drop_none(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


def dump(stage: Stage) -> str:
    import yaml

    # No width: a long command or path stays on one line, as its author wrote it.
    text = yaml.safe_dump(
        stage.to_dict(), sort_keys=False, default_flow_style=False, width=float("inf")
    )
    return str(text)


def write(root: Path, stage: Stage) -> None:
    """Write the stage file atomically (temp + rename), so a kill leaves the old or the new.
    A hand-written file keeps its key order, and its comments where it can (stage_text)."""
    from repro.fsutil import read_regular, write_atomic
    from repro.paths import inside
    from repro.stages.text import render

    check(stage)  # whatever built it: a file repro cannot read back is never written
    target = inside(root, stage.path, "stage file", exact=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # never through a symlink, never blocking on a fifo: only a file's own text is kept
        old_text: str | None = read_regular(target).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        old_text = None
    text = render(stage, old_text)
    write_atomic(target, text.encode("utf-8"))
    WRITTEN[target] = text.encode("utf-8")
    _PARSED.load(text)  # yaml is loaded already: the next command finds the file parsed


# Stage files this process wrote, with their bytes: while a stage runs (in parallel with
# others) these may change without the stage having written them.
WRITTEN: dict[Path, bytes] = {}


# -- loading ---------------------------------------------------------------------------------
class _Bad(Exception):
    pass


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(f"{what} must be a non-empty string")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _md5(value: Any, what: str) -> str | None:
    if value is None:
        return None
    text = _str(value, what)
    core = text[:-4] if text.endswith(".dir") else text
    if len(core) != 32 or any(c not in "0123456789abcdef" for c in core):
        raise _Bad(f"{what} is not an md5 hash")
    return text


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{what} must be a list")
    return value


def _map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{what} must be a mapping")
    return value


def _to_root(stage_dir: str, path: str) -> str:
    from repro.paths import check_relative

    _check_text(path, "path")
    try:
        return check_relative(posixpath.join(stage_dir, path), "path")
    except ReproError as exc:
        raise _Bad(str(exc)) from None


def _to_file(stage_dir: str, path: str) -> str:
    return posixpath.relpath(path, stage_dir) if stage_dir else path


def from_dict(path: str, data: Any) -> Stage:
    data = _map(data, "the file")
    stage_dir = posixpath.dirname(path)
    known = {"cmd", "wdir", "image", "network", "deps", "outs", "md5", "resources"}
    unknown = set(data) - known
    if unknown:
        raise _Bad(f"unknown key {sorted(unknown)[0]!r}")
    image = None
    if data.get("image") is not None:
        raw = _map(data["image"], "image")
        image = Image(
            name=_str(raw.get("name"), "image.name"),
            id=_opt_str(raw.get("id"), "image.id"),
            digest=_opt_str(raw.get("digest"), "image.digest"),
        )
    network = data.get("network", "none")
    if network not in NETWORK_MODES:
        raise _Bad(f"network must be one of {', '.join(NETWORK_MODES)}")
    deps = tuple(
        Dep(
            _to_root(stage_dir, _str(_map(d, "a dep").get("path"), "dep path")),
            _md5(d.get("md5"), "dep md5"),
        )
        for d in _list(data.get("deps"), "deps")
    )
    outs = []
    for raw_out in _list(data.get("outs"), "outs"):
        raw_out = _map(raw_out, "an out")
        cache = raw_out.get("cache", True)
        if not isinstance(cache, bool):
            raise _Bad("out cache must be true or false")
        metric = None
        if raw_out.get("metric") is not None:
            raw_metric = raw_out["metric"]
            if raw_metric is True:
                raw_metric = {}
            raw_metric = _map(raw_metric, "metric")
            mtype = _opt_str(raw_metric.get("type"), "metric type")
            if mtype is not None and mtype not in METRIC_TYPES:
                raise _Bad(f"metric type must be one of {', '.join(METRIC_TYPES)}")
            metric = Metric(mtype, _opt_str(raw_metric.get("xpath"), "metric xpath"))
        outs.append(
            Out(
                _to_root(stage_dir, _str(raw_out.get("path"), "out path")),
                _md5(raw_out.get("md5"), "out md5"),
                cache,
                metric,
            )
        )
    resources = Resources()
    if data.get("resources") is not None:
        raw_res = _map(data["resources"], "resources")
        unknown = set(raw_res) - {"cpus", "memory", "gpus"}
        if unknown:
            raise _Bad(f"unknown key resources.{sorted(map(str, unknown))[0]}")
        resources = _resources(
            raw_res.get("cpus"), raw_res.get("memory"), raw_res.get("gpus"), "resources."
        )
    cmd = data.get("cmd")
    if cmd is not None:
        cmd = _str(cmd, "cmd")
    wdir = _str(data.get("wdir", "."), "wdir")
    _check_wdir(stage_dir, wdir)
    return Stage(
        path=path,
        cmd=cmd,
        wdir=wdir,
        image=image,
        network=str(network),
        deps=deps,
        outs=tuple(outs),
        resources=resources,
        md5=_md5(data.get("md5"), "md5"),
    )


# -- rules shared by stage files and the command line ----------------------------------------
def check(stage: Stage) -> None:
    """Refuse a stage (built from the command line) that its file could not hold, or that
    would run outside the project: the rules the loader applies to a stage file."""
    try:
        _check_text(stage.path, "stage file")
        for dep in stage.deps:
            _check_text(dep.path, "dependency")
        for out in stage.outs:
            _check_text(out.path, "output")
        _check_wdir(stage.stage_dir, stage.wdir)
        for text, what in ((stage.cmd, "the command"), (stage.image and stage.image.name, "image")):
            if text is not None and not _utf8(text):
                raise _Bad(
                    f"{what} '{_shown(text)}' is not valid UTF-8; stage files are UTF-8 text"
                )
    except _Bad as exc:
        raise ReproError(str(exc)) from None


def check_path(path: str, what: str) -> None:
    """Refuse a path that stage files (UTF-8 YAML) or .gitignore lines cannot hold."""
    try:
        _check_text(path, what)
    except _Bad as exc:
        raise ReproError(str(exc)) from None


def resources_from_cli(cpus: str | None, memory: str | None, gpus: str | None) -> Resources:
    """--cpus, --memory and --gpus as Docker takes them; a bad one is a usage error."""
    try:
        return _resources(cpus, memory, gpus, "--")
    except _Bad as exc:
        raise UsageError(str(exc)) from None


def _shown(path: str) -> str:
    """A path as one printable line: undecodable bytes as \\xNN, line breaks as \\n."""
    try:
        text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: bytes that were not UTF-8
        return False
    return True


def _check_text(path: str, what: str) -> None:
    if not _utf8(path):
        raise _Bad(
            f"{what} '{_shown(path)}' is not valid UTF-8; rename it (stage files are UTF-8 text)"
        )
    if "\n" in path or "\r" in path:
        raise _Bad(
            f"{what} '{_shown(path)}' has a line break in its name; rename it "
            "(.gitignore files and stage files hold one path per line)"
        )
    if any(len(part.encode("utf-8")) > NAME_MAX for part in path.split("/")):
        raise _Bad(
            f"{what} '{path}' has a name longer than {NAME_MAX} bytes, more than a file "
            "name can have; rename it to something shorter"
        )


def _check_wdir(stage_dir: str, wdir: str) -> None:
    """``wdir`` (relative to the stage file's folder) must lead to a folder of the project."""
    _check_text(wdir, "wdir")
    if wdir.startswith("/") or os.path.isabs(wdir):
        raise _Bad(f"wdir '{wdir}' is absolute; give a folder relative to the stage file")
    where = posixpath.normpath(posixpath.join(stage_dir, wdir))
    if where == ".." or where.startswith("../"):
        raise _Bad(f"wdir '{wdir}' leads outside the project; give a folder inside it")
    first = where.split("/", 1)[0]
    if first in RESERVED_DIRS:
        raise _Bad(f"wdir '{wdir}' leads into {first}/, where no stage runs")


# Docker's units (docker-py's parse_bytes): an optional b after k, m or g; b alone is bytes.
_BYTE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_MIN_MEMORY = 6 << 20  # the engine refuses less
_MAX_MEMORY = (1 << 63) - 1  # what the engine's int64 holds
_MIN_CPUS = 0.01  # the engine's step; less would round to no limit at all


def _resources(cpus: Any, memory: Any, gpus: Any, prefix: str) -> Resources:
    """Resources checked as the engine takes them; ``prefix`` names them in messages."""
    if cpus is not None and _cpu_count(cpus) < _MIN_CPUS:
        raise _Bad(
            f"{prefix}cpus must be a number of CPUs of at least {_MIN_CPUS}, such as 2 or 0.5, "
            f"not {cpus!r}"
        )
    if isinstance(memory, int) and not isinstance(memory, bool):
        memory = str(memory)
    if memory is not None and not _MIN_MEMORY <= _memory_bytes(memory) <= _MAX_MEMORY:
        raise _Bad(
            f"{prefix}memory must be a size such as 512m or 2g (bytes, or k, m, g; at least "
            f"6m), not {memory!r}"
        )
    if isinstance(gpus, int) and not isinstance(gpus, bool):
        gpus = str(gpus)
    if gpus is not None and not (
        gpus == "all" or (isinstance(gpus, str) and _digits(gpus) and int(gpus) >= 1)
    ):
        raise _Bad(f"{prefix}gpus must be 'all' or a count of at least 1, not {gpus!r}")
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


def _memory_bytes(value: Any) -> int:
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


class _NotYaml(Exception):
    """Text that is not YAML; the message says where, when the parser knows."""


class _ParsedYaml:
    """Stage files' loaded YAML keyed by their text, in memory and in a file between commands.

    A quick command such as ``status`` reads a few unchanged stage files; importing PyYAML and
    compiling its patterns would cost more than the rest of its work. The key is the whole
    text, so an edited file is parsed afresh whatever its mtime says.
    """

    LIMIT = 1024  # entries kept on disk; the oldest go first
    MAGIC = "repro-parsed-yaml-1"

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.file: Path | None = None
        self.dirty = False  # entries not in the file yet

    def attach(self, file: Path) -> None:
        """Keep entries in ``file`` from now on, starting from those it holds."""
        if file == self.file:
            return
        self.save()  # the previous project's new entries
        self.file = file
        stored = memo.load(file, self.MAGIC)
        self.entries = stored if isinstance(stored, dict) else {}

    def load(self, text: str) -> Any:
        """The YAML data of ``text``; raises _NotYaml when it is not YAML."""
        if text in self.entries:
            return self.entries[text]
        import yaml

        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise _NotYaml(f" at line {mark.line + 1}" if mark is not None else "") from None
        try:
            marshal.dumps(data)  # YAML timestamps and the like cannot be kept: parse each time
        except ValueError:
            return data
        self.entries[text] = data
        self.dirty = True
        return data

    def save(self) -> None:
        """Write the entries out, once per command: history parses hundreds of stage files."""
        if self.file is None or not self.dirty:
            return
        self.dirty = False
        memo.store(self.file, self.MAGIC, dict(list(self.entries.items())[-self.LIMIT :]))


_PARSED = _ParsedYaml()


def keep_parsed_in(file: Path) -> None:
    """Remember parsed stage files in ``file`` (a per-machine cache under .repro/tmp)."""
    _PARSED.attach(file)


def save_parsed() -> None:
    """Write out the stage files parsed since the last save (the CLI calls it on the way out)."""
    _PARSED.save()


def parse(path: str, text: str) -> Stage:
    """Parse a stage file's text; any problem is one ReproError naming the file."""
    try:
        data = _PARSED.load(text)
    except _NotYaml as exc:
        raise ReproError(
            f"stage file '{path}' is not valid YAML{exc}; fix it or restore it with git checkout"
        ) from None
    try:
        return from_dict(path, data)
    except _Bad as exc:
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
