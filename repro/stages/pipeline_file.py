"""One-file pipelines: the named stages of a repro.yaml, and what they ran with in the
repro.lock beside it.

A repro.yaml says what each stage is, in DVC 3's dvc.yaml words plus images; repro.lock,
written by repro alone, records the hashes and pinned image IDs of each stage's last run.
A stage's definition and its lock entry become the very mapping a ``*.repro`` file holds,
and the Stage is built from that (stage.from_dict): every field, check and kind of
dependency is the one stage files have. A run rewrites the lock only, never the repro.yaml a
person wrote; ``repro run -n`` and ``repro remove`` edit its text in place, comments kept.
"""

from __future__ import annotations

import posixpath
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.memo.parsed import PARSED, NotYaml
from repro.paramfiles import DEFAULT_FILE as PARAMS_FILE
from repro.stages import fields
from repro.stages.deps.file import FileDep
from repro.stages.fields import Malformed
from repro.stages.stage import FIELD_KEYS, WRITTEN, Plot, Stage, from_dict
from repro.stages.templating import ReadVars, expand, load_yaml
from repro.walk import LOCK_FILE, PIPELINE_FILE

# The keys a definition writes its own way; every other key passes to the stage as it is.
_OUT_LISTS = {"outs": True, "metrics": False, "plots": True}  # key: default of cache
_OUT_FLAGS = ("cache", "persist")
# Keys of a stage file that a repro.lock holds instead: what a run records, never what a user
# defines.
RECORDED = frozenset({"md5", "source_date_epoch"})
_NAME = re.compile(r"[\w.@-]+")
# Runs of -j N finish in threads at once: each read-change-write of a lock is whole.
_LOCK_WRITES = threading.Lock()


def is_pipeline_file(path: str) -> bool:
    return posixpath.basename(path) == PIPELINE_FILE


def lock_path(path: str) -> str:
    """The repro.lock beside the repro.yaml at ``path``."""
    return posixpath.join(posixpath.dirname(path), LOCK_FILE)


# -- loading ---------------------------------------------------------------------------------
def load(root: Path, path: str) -> list[Stage]:
    """The stages of the repro.yaml at ``path`` (relative to ``root``), with their lock."""
    text = _text(root, path)
    lock_text = _text(root, lock_path(path), missing_ok=True)
    return parse(path, text, lock_text, vars_reader(root, posixpath.dirname(path)))


def vars_reader(root: Path, folder: str) -> ReadVars:
    """Reads the vars files of a repro.yaml in ``folder`` (relative to the project ``root``):
    a cloned repository names them, so each must lie in the project, through no symlink that
    leaves it (else its values, a user's tokens say, would flow into commands and the lock)."""

    def read_vars(name: str) -> dict[str, Any]:
        from repro.paramfiles import parse as parse_params
        from repro.paths import check_relative, inside

        rel = check_relative(posixpath.join(folder, name), f"vars file '{name}'")
        return parse_params(_read(inside(root, rel, "vars file", exact=True), name), name)

    return read_vars


def parse(path: str, text: str, lock_text: str | None, read_vars: ReadVars) -> list[Stage]:
    """The stages a repro.yaml's text defines, with what its lock's text recorded; any
    problem is one ReproError naming the file (and the stage)."""
    hint = "fix it or restore it with git checkout"
    try:
        found = expand(PARSED.load(text, strict=load_yaml), read_vars)
    except NotYaml as exc:
        raise ReproError(f"'{path}' is not valid YAML{exc}; {hint}") from None
    except (Malformed, FileNotFoundError) as exc:
        raise ReproError(f"'{path}' is malformed: {_hinted(str(exc), hint)}") from None
    recorded = _lock_entries(lock_path(path), lock_text)
    stages = []
    for name, definition in found.items():
        try:
            stage_name = _name(name)
            mapping = stage_mapping(posixpath.dirname(path), definition, recorded.get(stage_name))
            stages.append(from_dict(path, mapping)._replace(name=stage_name))
        except Malformed as exc:
            raise ReproError(
                f"'{path}': stage '{name}' is malformed: {_hinted(str(exc), hint)}"
            ) from None
    return stages


def _hinted(message: str, hint: str) -> str:
    """``message`` with ``hint`` unless it says what to do already (one hint per line)."""
    return message if "; " in message else f"{message}; {hint}"


def _name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Malformed("a stage name has letters, digits and . _ - @ only")
    return name


def _lock_entries(path: str, text: str | None) -> dict[str, dict[str, Any]]:
    """The lock's entries by stage name; none before the first run."""
    if text is None:
        return {}
    hint = f"restore it with 'git checkout {path}', or delete it to run its stages again"
    try:
        data = PARSED.load(text)
    except NotYaml as exc:
        raise ReproError(f"'{path}' is not valid YAML{exc}; {hint}") from None
    try:
        entries = fields.mapping(
            fields.mapping(data or {}, "the lock").get("stages") or {}, "stages"
        )
        return {str(k): fields.mapping(v, f"the entry of '{k}'") for k, v in entries.items()}
    except Malformed as exc:
        raise ReproError(f"'{path}' is malformed: {exc}; {hint}") from None


def stage_mapping(
    stage_dir: str, definition: Any, recorded: dict[str, Any] | None
) -> dict[str, Any]:
    """A repro.yaml stage and its lock entry as the mapping a ``*.repro`` file in the same
    folder would hold (paths relative to that folder, recorded values beside them)."""
    definition = fields.mapping(definition, "a stage")
    lock = recorded or {}
    for recorded_key in RECORDED:
        if recorded_key in definition:
            raise Malformed(f"unknown key '{recorded_key}' (repro.lock records it)")
    cmd = definition.get("cmd")
    if cmd is None:
        raise Malformed("cmd is missing")
    if isinstance(cmd, list):
        cmd = " && ".join(fields.text(part, "cmd") for part in cmd)
    wdir = fields.text(definition.get("wdir", "."), "wdir")

    def at(path: Any, what: str) -> str:
        """A path of the definition (relative to wdir) as the stage file writes it."""
        return posixpath.normpath(posixpath.join(wdir, fields.text(path, what)))

    def key(path: str) -> str:  # paths of the lock and the definition compared
        return posixpath.normpath(posixpath.join(stage_dir, path))

    mapping = {k: v for k, v in definition.items() if k not in ("image", *_OUT_LISTS)}
    mapping["cmd"] = cmd
    mapping["image"] = _image(definition.get("image"), lock.get("image"))
    deps_md5 = {key(at(d.get("path"), "dep path")): d.get("md5") for d in _items(lock, "deps")}
    if "deps" in definition:
        deps = [at(p, "dep") for p in fields.sequence(definition["deps"], "deps")]
        mapping["deps"] = [fields.drop_none({"path": p, "md5": deps_md5.get(key(p))}) for p in deps]
    if "params" in definition:  # a dependency kind of its own (stages/deps/params.py)
        mapping["params"] = _params(definition["params"], at, key, lock.get("params"))
    outs_md5 = {key(at(o.get("path"), "out path")): o.get("md5") for o in _items(lock, "outs")}
    mapping["outs"] = [
        fields.drop_none({**out, "md5": outs_md5.get(key(out["path"]))})
        for list_key, cache in _OUT_LISTS.items()
        for out in _outs(definition.get(list_key), list_key, cache, at)
    ]
    if "source_date_epoch" in lock:
        mapping["source_date_epoch"] = lock["source_date_epoch"]
    mapping["md5"] = lock.get("md5")
    return mapping


def _items(lock: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [
        fields.mapping(item, f"a lock {key} entry") for item in fields.sequence(lock.get(key), key)
    ]


def _image(name: Any, recorded: Any) -> dict[str, Any] | None:
    """The image a stage names with what the lock pinned for that name; with no name, the
    one the lock recorded (the project's default when the stage last ran)."""
    if name is None:
        return None if recorded is None else fields.mapping(recorded, "the lock's image")
    name = fields.text(name, "image")
    if isinstance(recorded, dict) and recorded.get("name") == name:
        return recorded
    return {"name": name}


def _params(
    raw: Any, at: Callable[[Any, str], str], key: Callable[[str], str], recorded: Any
) -> list[dict[str, Any]]:
    """``params: [k, {file: [k…]}]`` as stage files list them, with the recorded values."""
    values = {
        key(at(file, "params file")): fields.mapping(keys, "lock params")
        for file, keys in fields.mapping(recorded or {}, "lock params").items()
    }
    found = []
    for item in fields.sequence(raw, "params"):
        if isinstance(item, str):
            item = {PARAMS_FILE: [item]}
        for file, keys in fields.mapping(item, "a params entry").items():
            path = at(file, "params file")
            for name in fields.sequence(keys, f"params of '{file}'"):
                name = fields.text(name, "a params key")
                entry: dict[str, Any] = {"path": path, "key": name}
                if name in values.get(key(path), {}):
                    entry["value"] = values[key(path)][name]
                found.append(entry)
    return found


def _outs(raw: Any, list_key: str, cache: bool, at: Callable[[Any, str], str]) -> list[Any]:
    """``outs``, ``metrics`` or ``plots``: each a path, or ``{path: {cache, persist}}`` (and
    for a plot how it is drawn: x, y, template, title, x_label, y_label)."""
    found = []
    for item in fields.sequence(raw, list_key):
        flags: dict[str, Any] = {}
        if isinstance(item, dict):
            if len(item) != 1:
                raise Malformed(f"an entry of {list_key} is a path or {{path: {{cache: …}}}}")
            [(item, flags)] = item.items()
            flags = fields.mapping(flags or {}, f"the flags of '{item}'")
            unknown = (
                set(flags) - set(_OUT_FLAGS) - set(Plot._fields if list_key == "plots" else ())
            )
            if unknown:
                raise Malformed(f"unknown key {sorted(map(str, unknown))[0]!r} of '{item}'")
        out: dict[str, Any] = {"path": at(item, list_key[:-1] + " path")}
        out["cache"] = flags.get("cache", cache)
        if flags.get("persist") is not None:
            out["persist"] = flags["persist"]
        if list_key == "metrics":
            out["metric"] = {}
        if list_key == "plots":  # DVC 3's per-output plot options: {file: {x: …, y: …}}
            out["plot"] = {key: flags[key] for key in Plot._fields if key in flags}
        found.append(out)
    return found


def _text(root: Path, path: str, missing_ok: bool = False) -> Any:
    try:
        return _read(root / path, path).decode("utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ReproError(f"'{path}' does not exist") from None
    except UnicodeDecodeError:
        raise ReproError(
            f"'{path}' is not UTF-8 text; fix it or restore it with git checkout"
        ) from None


def _read(full: Path, shown: str) -> bytes:
    from repro.fsutil import NotRegular, read_regular

    try:
        return read_regular(full)
    except NotRegular:
        raise ReproError(f"'{shown}' is a symlink, fifo or device, not a file; remove it") from None


# -- the lock --------------------------------------------------------------------------------
def lock_entry(stage: Stage) -> dict[str, Any]:
    """What the lock records of a stage: its command, pinned image, the values of its
    dependencies, the hashes of its outputs (metrics and plots among them), its md5."""
    data = stage.to_dict()
    entry: dict[str, Any] = {"cmd": stage.cmd}
    if "image" in data:
        entry["image"] = data["image"]
    if stage.deps:
        entry["deps"] = [
            fields.drop_none({"path": _written(stage, d.path), "md5": d.recorded})
            for d in stage.deps
            if isinstance(d, FileDep)  # other kinds have keys of their own
        ]
    params: dict[str, dict[str, Any]] = {}
    for item in data.get("params", []):
        path = _written(stage, posixpath.normpath(posixpath.join(stage.stage_dir, item["path"])))
        if "value" in item:
            params.setdefault(path, {})[item["key"]] = item["value"]
    if params:
        entry["params"] = params
    if stage.outs:
        entry["outs"] = [
            fields.drop_none({"path": _written(stage, o.path), "md5": o.md5}) for o in stage.outs
        ]
    entry["source_date_epoch"] = stage.source_date_epoch
    entry["md5"] = stage.md5
    return fields.drop_none(entry)


def _written(stage: Stage, path: str) -> str:
    """A root-relative path as the repro.yaml writes it: relative to the stage's wdir."""
    return posixpath.relpath("/" + path, "/" + stage.work_dir)


def record(root: Path, stage: Stage) -> None:
    """Write what ``stage`` ran with into its lock, atomically; the entries of the other
    stages stay, in the order of the repro.yaml (an entry of a stage it lost is dropped)."""
    assert stage.name is not None
    with _LOCK_WRITES:
        try:
            entries = _lock_entries(stage.record_path, _text(root, stage.record_path, True))
        except ReproError:  # a broken lock: what it held is recorded again by the next runs
            entries = {}
        entries[stage.name] = lock_entry(stage)
        try:
            order = [s.name for s in load(root, stage.path)]
        except ReproError:  # edited while the stage ran: its status will tell
            order = list(entries)
        kept = {name: entries[name] for name in order if name in entries}
        text = _dump({"schema": "1", "stages": kept})
        save_text(root, stage.record_path, text)
    PARSED.load(text)  # yaml is loaded already: the next command finds the lock parsed


def _dump(data: Any) -> str:
    import yaml

    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=float("inf"))
    return str(text)


def forget(root: Path, stage: Stage) -> None:
    """Drop ``stage`` from its repro.yaml (text kept as written around it) and its lock."""
    assert stage.name is not None
    save_text(root, stage.path, _without(_text(root, stage.path), stage))
    lock = _text(root, stage.record_path, missing_ok=True)
    if lock is not None:
        entries = _lock_entries(stage.record_path, lock)
        entries.pop(stage.name, None)
        save_text(root, stage.record_path, _dump({"schema": "1", "stages": entries}))


def _without(text: str, stage: Stage) -> str:
    """The repro.yaml's text without ``stage``'s block."""
    import yaml

    from repro.stages.text import line_end, value_node

    data = load_yaml(text)
    stages = dict(data["stages"])
    if stage.name not in stages:
        raise ReproError(
            f"stage '{stage.address}' is made by a foreach or matrix in '{stage.path}'; "
            "remove it there"
        )
    del stages[stage.name]
    try:
        node = value_node(yaml.compose(text), "stages")
        pairs = [pair for pair in node.value if pair[0].value == stage.name]
        following = node.value[node.value.index(pairs[0]) + 1 :]
        start = text.rfind("\n", 0, pairs[0][0].start_mark.index) + 1
        if following:
            end = text.rfind("\n", 0, following[0][0].start_mark.index) + 1
        else:
            end = min(line_end(text, pairs[0][1]) + 1, len(text))
        candidate = text[:start] + text[end:]
        if stages and load_yaml(candidate) == {**data, "stages": stages}:  # else: stages: {}
            return candidate
    except Exception:  # noqa: BLE001 - a layout the edit does not handle: dumped again
        pass
    return _dump({**data, "stages": stages})


def appended(text: str | None, name: str, definition: dict[str, Any]) -> str:
    """A repro.yaml's text (None: no file yet) with one more stage at the end of ``stages``;
    what was written is kept as it is, comments included, where the layout allows."""
    import yaml

    from repro.stages.text import line_end, value_node

    block = _dump({name: definition}).rstrip("\n")
    if text is None or not text.strip():
        return "stages:\n" + _indented(block, "  ") + "\n"
    data = load_yaml(text)
    wanted = {**(data or {}), "stages": {**((data or {}).get("stages") or {}), name: definition}}
    try:
        node = value_node(yaml.compose(text), "stages")
        if node is None:
            candidate = text.rstrip("\n") + "\nstages:\n" + _indented(block, "  ") + "\n"
        else:
            indent = " " * node.value[0][0].start_mark.column
            where = line_end(text, node)
            candidate = text[:where] + "\n" + _indented(block, indent) + text[where:]
        if load_yaml(candidate) == wanted:
            return candidate if candidate.endswith("\n") else candidate + "\n"
    except Exception:  # noqa: BLE001 - an empty or flow-style mapping: dumped again
        pass
    return _dump(wanted)


def _params_of(stage: Stage, listed: list[dict[str, Any]]) -> list[Any]:
    """Params as a repro.yaml lists them: keys of params.yaml, then ``{file: [keys]}``."""
    by_file: dict[str, list[str]] = {}
    for item in listed:
        path = _written(stage, posixpath.normpath(posixpath.join(stage.stage_dir, item["path"])))
        by_file.setdefault(path, []).append(item["key"])
    plain = by_file.pop(PARAMS_FILE, [])
    return [*plain, *({file: keys} for file, keys in by_file.items())]


def appending(root: Path, stage: Stage, image: bool) -> tuple[Stage, str]:
    """``stage`` (built from the command line, named) as the repro.yaml at its path will
    define it once it is appended, with that file's new text; ``image``: as definition_of."""
    assert stage.name is not None
    text = _text(root, stage.path, missing_ok=True)
    if text is not None and stage.address in {s.address for s in load(root, stage.path)}:
        raise ReproError(
            f"stage '{stage.address}' is already defined in '{stage.path}'; choose another "
            f"name, or remove it first with 'repro remove {stage.address}'"
        )
    new_text = appended(text, stage.name, definition_of(stage, image))
    lock_text = _text(root, stage.record_path, missing_ok=True)
    for found in parse(stage.path, new_text, lock_text, vars_reader(root, stage.stage_dir)):
        if found.name == stage.name:
            return found, new_text
    raise ReproError(f"stage '{stage.name}' could not be added to '{stage.path}'")


def save_text(root: Path, path: str, text: str) -> None:
    """Write a repro.yaml's or repro.lock's new text atomically (a kill leaves the old or
    the new), noted as repro's own (stage.WRITTEN)."""
    from repro.fsutil import write_atomic
    from repro.paths import inside

    data = text.encode("utf-8")
    target = inside(root, path, "stage file", exact=True)
    write_atomic(target, data)
    WRITTEN[target] = data


def _indented(block: str, indent: str) -> str:
    return "\n".join(indent + line if line else line for line in block.split("\n"))


def definition_of(stage: Stage, image: bool) -> dict[str, Any]:
    """The repro.yaml definition of a stage built from the command line (``image``: whether
    it names its image, or leaves it to the file's or the project's default)."""
    definition: dict[str, Any] = {}
    for key, value in stage.to_dict().items():
        if key == "image":
            if image:
                definition["image"] = value["name"]
        elif key == "deps":
            definition["deps"] = [
                _written(stage, d.path) for d in stage.deps if isinstance(d, FileDep)
            ]
        elif key == "params":
            definition["params"] = _params_of(stage, value)
        elif key == "outs":
            for out in stage.outs:
                list_key = "metrics" if out.metric is not None else "outs"
                list_key = "plots" if out.plot is not None else list_key
                flags: dict[str, Any] = dict(out.plot.to_dict()) if out.plot else {}
                if out.cache != _OUT_LISTS[list_key]:
                    flags["cache"] = out.cache
                if out.persist:
                    flags["persist"] = True
                path = _written(stage, out.path)
                definition.setdefault(list_key, []).append({path: flags} if flags else path)
        elif key in FIELD_KEYS - RECORDED:
            definition[key] = value
    return definition
