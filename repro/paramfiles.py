"""Parameter files (params.yaml and friends): reading one by its format, finding a value by its
dotted key, and changing one value, for parameter dependencies and experiments alike.

A key is a dotted path through mappings: ``train.lr`` is ``{"train": {"lr": …}}``. A file's
format is its extension: ``.yaml``/``.yml``, ``.json`` or ``.toml``; anything else is read as
YAML, as DVC does.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from repro.errors import ReproError

DEFAULT_FILE = "params.yaml"
FORMATS = ("yaml", "json", "toml")
_BY_EXTENSION = {"yaml": "yaml", "yml": "yaml", "json": "json", "toml": "toml"}
_MISSING = object()


def format_of(path: str) -> str:
    name = path.rpartition("/")[2]
    suffix = name.rpartition(".")[2].lower() if "." in name else ""
    return _BY_EXTENSION.get(suffix, "yaml")


def parse(data: bytes, path: str) -> dict[str, Any]:
    """The mapping a parameter file holds; one line naming the file when it does not parse."""
    kind = format_of(path)
    hint = f"fix '{path}' or restore it with git checkout"
    try:
        text = data.decode("utf-8")
        if kind == "json":
            value = json.loads(text)
        elif kind == "toml":
            value = _toml().loads(text)
        else:
            import yaml

            value = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError:
        raise ReproError(f"params file '{path}' is not UTF-8 text; {hint}") from None
    except Exception as exc:  # json, toml and yaml errors, without importing yaml up front
        detail = str(exc).splitlines()[0] if kind != "yaml" else _yaml_where(exc)
        raise ReproError(f"params file '{path}' is not valid {kind}{detail}; {hint}") from None
    if value is None:
        return {}
    problem = oversized(value)
    if problem is not None:
        raise ReproError(f"params file '{path}' {problem}; {hint}")
    if not isinstance(value, dict):
        raise ReproError(f"params file '{path}' must hold a mapping of keys to values; {hint}")
    return value


VALUES_LIMIT = 1_000_000  # values a YAML file may expand to through its aliases


def oversized(value: Any) -> str | None:
    """What is wrong with YAML whose aliases make it expand beyond VALUES_LIMIT values (a
    "billion laughs" in a cloned repository would take every command's memory) or refer to
    themselves; None when nothing is. Shared structure is counted without being walked again,
    so this takes time in proportion to the text, not to what it expands to."""
    sizes: dict[int, int] = {}

    def size(item: Any) -> int:
        if not isinstance(item, (dict, list)):
            return 1
        key = id(item)
        if key in sizes:
            if sizes[key] < 0:
                raise _Oversized("refers to itself through a YAML alias")
            return sizes[key]
        sizes[key] = -1  # being counted
        children = item.values() if isinstance(item, dict) else item
        total = 1 + sum(size(child) for child in children)
        if total > VALUES_LIMIT:
            raise _Oversized(f"expands to more than {VALUES_LIMIT:,} values through YAML aliases")
        sizes[key] = total
        return total

    try:
        size(value)
    except _Oversized as exc:
        return str(exc)
    except RecursionError:
        return "nests too deeply"
    return None


class _Oversized(Exception):
    pass


def _yaml_where(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def lookup(params: dict[str, Any], key: str) -> Any:
    """The value at a dotted ``key``; raises KeyError when there is none."""
    value: Any = params
    if key in params:  # a flat key holding dots, as some files have
        return params[key]
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def has(params: dict[str, Any], key: str) -> bool:
    try:
        lookup(params, key)
    except KeyError:
        return False
    return True


def assign(params: dict[str, Any], key: str, value: Any) -> None:
    """Set an existing dotted ``key`` to ``value`` in place; KeyError when it is not there
    (a typo must not quietly add a parameter no stage reads)."""
    if key in params:
        params[key] = value
        return
    *parents, last = key.split(".")
    holder: Any = params
    for part in parents:
        if not isinstance(holder, dict) or part not in holder:
            raise KeyError(key)
        holder = holder[part]
    if not isinstance(holder, dict) or last not in holder:
        raise KeyError(key)
    holder[last] = value


def dumps(params: dict[str, Any], path: str) -> bytes:
    """The text of a parameter file holding ``params``, in the file's format."""
    kind = format_of(path)
    if kind == "json":
        return (json.dumps(params, indent=2) + "\n").encode()
    if kind == "toml":
        import tomli_w

        return tomli_w.dumps(params).encode()
    import yaml

    return str(yaml.safe_dump(params, sort_keys=False, default_flow_style=False)).encode()


def parse_value(text: str) -> Any:
    """A value given on the command line (``-S train.lr=0.2``): read as YAML, so 0.2 is a
    number, true a boolean and [1, 2] a list; anything else stays the text it is."""
    import yaml

    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # the same parser, for Python 3.10

    return tomli
