"""DVC 3's pipeline files in repro's words: ``dvc.yaml`` → ``repro.yaml``, ``dvc.lock`` →
``repro.lock`` entries, and ``*.dvc`` files → the stage files ``repro add`` writes.

The formats were made alike on purpose (repro.yaml is dvc.yaml plus an ``image``), so most of a
stage passes through as written, templating included. What repro has no word for is either
dropped with a warning, when nothing a run produces depends on it, or refused, when dropping it
would make repro run (or not run) what DVC would not.
"""

from __future__ import annotations

import posixpath
from typing import Any, NamedTuple

from repro.errors import ReproError
from repro.paths import check_relative
from repro.stages import stage as stage_mod
from repro.stages.stage import Out, Stage

# Stage keys kept as they are (templating keys included: repro.yaml expands them as DVC does).
STAGE_KEYS = ("cmd", "wdir", "deps", "params", "outs", "metrics", "plots", "vars")
TEMPLATE_KEYS = ("foreach", "do", "matrix")
# Keys that only describe a stage: nothing a run produces depends on them.
DESCRIBING = ("desc", "meta")
# Out options that say where DVC pushes data, or describe it; repro pushes every cached out.
OUT_DROPPED = ("remote", "push", "desc", "type", "labels", "meta")
# Plot options that say how DVC draws a plot: the plots of repro read their own.
PLOT_DROPPED = ("x", "y", "template", "title", "x_label", "y_label")
TOP_KEYS = ("stages", "vars")
# Top-level lists of files no stage produces, read by DVC's metrics/plots/params commands.
TOP_DROPPED = ("metrics", "plots", "params", "artifacts", "datasets")


class Converted(NamedTuple):
    """A dvc.yaml as repro.yaml data, with the warnings its conversion gave."""

    data: dict[str, Any]
    warnings: list[str]


def load_yaml(path: str, text: str) -> Any:
    """Parse a DVC file; one line naming it when it is not YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ReproError(
            f"{path} does not parse ({problem}{where}); fix it (dvc repro reads it too) and retry"
        ) from None


def _mapping(value: Any, path: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReproError(f"{path}: {what} must be a mapping; fix it and retry")
    return value


def convert_pipeline(path: str, raw: Any, image: str) -> Converted:
    """repro.yaml data for the dvc.yaml at ``path`` (its parsed ``raw``), stages in ``image``."""
    top = _mapping(raw, path, "the file")
    warnings = []
    for key in top:
        if key in TOP_DROPPED:
            warnings.append(
                f"{path}: top-level '{key}' dropped: repro finds metrics, plots and params "
                "through the stages that declare them"
            )
        elif key not in TOP_KEYS:
            raise ReproError(f"{path}: unknown top-level key '{key}'; remove it and retry")
    stages = {}
    for name, definition in _mapping(top.get("stages"), path, "'stages'").items():
        where = f"{path}: stage '{name}'"
        stages[str(name)] = _stage(where, _mapping(definition, path, f"stage '{name}'"), warnings)
    data: dict[str, Any] = {"image": image}
    if "vars" in top:
        data["vars"] = top["vars"]
    data["stages"] = stages
    return Converted(data, warnings)


def _stage(where: str, definition: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    if "do" in definition:  # foreach: the body is a stage of its own
        body = _stage(where, _mapping(definition["do"], where, "'do'"), warnings)
        return {**{k: v for k, v in definition.items() if k != "do"}, "do": body}
    kept: dict[str, Any] = {}
    for key, value in definition.items():
        if key in STAGE_KEYS or key in TEMPLATE_KEYS:
            kept[key] = _outs(where, key, value, warnings) if key in _OUT_KEYS else value
        elif key in DESCRIBING:
            warnings.append(f"{where}: '{key}' dropped (a description; repro.yaml has none)")
        elif key == "always_changed":
            if value:
                warnings.append(
                    f"{where}: 'always_changed' dropped; repro runs a stage when its inputs "
                    "change: run it anyway with 'repro repro --force STAGE'"
                )
        elif key == "frozen":
            if value:
                raise ReproError(
                    f"{where} is frozen, which repro has no word for; unfreeze it "
                    "('dvc unfreeze STAGE') or remove it, and retry"
                )
        else:
            raise ReproError(f"{where}: unknown key '{key}'; remove it and retry")
    return kept


# DVC's defaults per kind of output: metrics and plots are cached unless told otherwise, where
# repro.yaml leaves them uncached; so the flag is always written out.
_OUT_KEYS = {"outs": True, "metrics": True, "plots": True}


def _outs(where: str, key: str, value: Any, warnings: list[str]) -> list[Any]:
    if isinstance(value, str):  # a ${…} that expands to a list
        return [value]
    if not isinstance(value, list):
        raise ReproError(f"{where}: '{key}' must be a list; fix it and retry")
    converted: list[Any] = []
    for item in value:
        if isinstance(item, str):
            converted.append(item if key == "outs" else {item: {"cache": True}})
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise ReproError(f"{where}: an entry of '{key}' must be a path or {{path: options}}")
        ((out_path, options),) = item.items()
        options = dict(_mapping(options, where, f"the options of '{out_path}'"))
        for option in list(options):
            if option in ("cache", "persist"):
                continue
            if option in OUT_DROPPED or (key == "plots" and option in PLOT_DROPPED):
                warnings.append(f"{where}: option '{option}' of '{out_path}' dropped")
                del options[option]
            else:
                raise ReproError(
                    f"{where}: option '{option}' of '{out_path}' is unknown to repro; remove it"
                )
        if key != "outs":
            options.setdefault("cache", True)
        converted.append({out_path: options} if options else out_path)
    return converted


# -- dvc.lock ----------------------------------------------------------------------------------
def hash_of(where: str, entry: dict[str, Any]) -> str | None:
    """The md5 a dvc.lock or .dvc entry records: DVC 3's md5 of raw bytes (``hash: md5``);
    DVC 2's entries hashed text with its line endings changed, which repro never does."""
    md5 = entry.get("md5")
    if md5 is None:
        return None
    if entry.get("hash") != "md5":
        raise ReproError(
            f"{where} records a DVC 2 hash for '{entry.get('path')}'; run "
            "'dvc cache migrate --dvc-files' with DVC 3 first, then retry"
        )
    return str(md5)


def lock_entry(where: str, entry: Any, image: dict[str, str]) -> dict[str, Any]:
    """A dvc.lock stage entry as repro.lock holds it, without the definition md5 (that needs
    the stage as repro reads it)."""
    entry = _mapping(entry, where, "a lock entry")
    converted: dict[str, Any] = {"cmd": entry.get("cmd"), "image": image}
    for key in ("deps", "params", "outs"):
        if key == "params":
            if entry.get("params"):
                converted["params"] = entry["params"]
            continue
        items = []
        for item in entry.get(key) or ():
            item = _mapping(item, where, f"an entry of '{key}'")
            items.append({"path": item.get("path"), "md5": hash_of(where, item)})
        if items:
            converted[key] = items
    return converted


# -- *.dvc -------------------------------------------------------------------------------------
def data_stages(path: str, raw: Any, warnings: list[str]) -> list[Stage]:
    """The stage files ``repro add`` would write for what the .dvc file at ``path`` tracks."""
    top = _mapping(raw, path, "the file")
    if top.get("deps"):
        warnings.append(
            f"{path} imports data ('dvc import'), which repro does not convert; "
            "track the data with 'repro add' or 'repro import'"
        )
        return []
    folder = posixpath.normpath(posixpath.join(posixpath.dirname(path), top.get("wdir", ".")))
    stages = []
    for item in top.get("outs") or ():
        item = _mapping(item, path, "an out")
        for option in item:
            if option in OUT_DROPPED or option == "persist":
                warnings.append(f"{path}: option '{option}' of '{item.get('path')}' dropped")
        out_path = check_relative(posixpath.join(folder, str(item.get("path"))), f"{path}: out")
        out = Out(out_path, hash_of(path, item), bool(item.get("cache", True)))
        stage = Stage(path=out.path + stage_mod.STAGE_SUFFIX, outs=(out,)).with_md5()
        stage_mod.check(stage)
        stages.append(stage)
    return stages
