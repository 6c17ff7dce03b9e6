"""Templating of repro.yaml: ``vars``, ``${…}`` interpolation, ``foreach``/``do`` and ``matrix``
turned into plain, fully resolved stage definitions, with the meaning DVC 3 gives them in
dvc.yaml, so a ported pipeline runs the same commands.

Pure: the only input beyond the parsed file is a callback that reads a vars file. Where this
differs from DVC, on purpose:

- ``${x}`` as a whole string keeps x's type in any field, lists and mappings included (DVC
  allows that only in ``foreach``), so ``deps: ${inputs}`` works; inside a longer string a list
  or mapping is an error, except a mapping in ``cmd``, which becomes ``--key value`` options as
  in DVC (booleans as ``--flag``; a list as ``--key a b``). A mapping as the whole ``cmd`` is
  rendered as options too.
- Mapping keys are interpolated as text (DVC keeps an exact ``${n}`` key's type).
- A ``foreach`` or ``matrix`` whose values would give two stages one name is an error (DVC keeps
  the last one); so is a matrix axis that is not a list, and a matrix with no axis.

As in DVC: a key defined by two vars items is an error (mappings merge key by key; a value is
never overridden), a vars file given twice is read once, ``params.yaml`` beside repro.yaml is
read first when it exists, a stage's own vars files are found relative to its ``wdir``,
``\\${`` is a literal ``${``, booleans in text are ``true``/``false`` and ``None`` is ``None``.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import string
from collections.abc import Callable, Iterator
from contextlib import suppress
from itertools import product
from typing import Any

from repro.paramfiles import DEFAULT_FILE, oversized
from repro.stages.fields import Malformed, mapping, shown

ReadVars = Callable[[str], dict[str, Any]]

TOP_KEYS = ("stages", "vars", "image")
JOIN = "@"
# More stages than anyone runs by hand: a matrix of 100 x 100 x 100 is a typo or an attack.
MAX_STAGES = 10_000
# A reference is ${…} not preceded by a backslash; the shortest body, as DVC matches it.
_REFERENCE = re.compile(r"(?<!\\)\$\{(?P<body>.*?)\}")
_EXPRESSION = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+|\[[^.\[\]]+\])*")
# DVC's rule for stage names, and no spaces: a name is typed as a command-line target.
_REFUSED_IN_NAMES = (set(string.punctuation) - {"_", "-"}) | set(string.whitespace)
_HOW_TO_REFER = "write ${name}, ${name.key} or ${name[0]}"


def expand(data: Any, read_vars: ReadVars) -> dict[str, dict[str, Any]]:
    """The stages of a parsed repro.yaml (``data``: its top-level mapping), by name, each a
    definition mapping with every ${…} resolved and every foreach/matrix unrolled, in file order;
    a stage without its own ``image`` gets the top-level one. ``read_vars(path)`` returns the
    mapping of a vars file (path relative to the repro.yaml's folder; FileNotFoundError when
    there is none). Raises :class:`Malformed` with a one-line message on any error."""
    top = mapping(data, "repro.yaml")
    for key in top:
        if key not in TOP_KEYS:
            raise Malformed(
                f"unknown key '{key}' at the top of repro.yaml; use stages, vars, image"
            )
    if "stages" not in top:
        raise Malformed("repro.yaml has no 'stages'; add a mapping of stage names to definitions")
    stages = mapping(top["stages"], "'stages'")
    scope = Scope("vars")
    with suppress(FileNotFoundError):  # the default vars are optional
        scope.merge_file(DEFAULT_FILE, read_vars(DEFAULT_FILE), None)
    scope.load(top.get("vars"), read_vars, "")
    image = Scope("image", scope).resolve(top["image"], "image") if "image" in top else None
    expanded: dict[str, dict[str, Any]] = {}
    for name, definition in stages.items():
        _check_name(name)
        for generated, stage in _unroll(name, definition, scope, read_vars):
            if len(expanded) >= MAX_STAGES:
                raise Malformed(
                    f"stage '{name}' makes the pipeline more than {MAX_STAGES:,} stages; "
                    "expand over fewer values, or split the work inside a stage"
                )
            if generated in expanded:
                raise Malformed(
                    f"stage '{generated}' is defined twice; make the values that "
                    f"'{name}' is expanded over distinct"
                )
            if image is not None and "image" not in stage:
                stage["image"] = image
            expanded[generated] = stage
    return expanded


def load_yaml(text: str) -> Any:
    """YAML as repro.yaml is read: safe, and a key given twice in one mapping is an error
    (Malformed "stage 'x' is defined twice" for stage names; "key 'k' given twice" otherwise)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_repeated_keys(node, set())
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise Malformed(f"not valid YAML ({where}{problem})") from None
    finally:
        loader.dispose()
    problem = oversized(data)
    if problem is not None:
        raise Malformed(problem)
    return data


def _refuse_repeated_keys(node: Any, seen: set[int], role: str = "top") -> None:
    """Refuse a key given twice in one mapping; ``role`` says whether ``node`` is the whole
    file, the ``stages`` mapping (whose keys are stage names) or anything else."""
    import yaml

    if id(node) in seen:  # an alias: already checked, and may refer to itself
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(item, seen, "other")
    if not isinstance(node, yaml.MappingNode):
        return
    keys: set[tuple[str, str]] = set()
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            key = (key_node.tag, key_node.value)
            if key in keys:
                line = key_node.start_mark.line + 1
                if role == "stages":
                    raise Malformed(
                        f"stage '{key_node.value}' is defined twice (line {line}); "
                        "rename one of them"
                    )
                raise Malformed(f"key '{key_node.value}' given twice (line {line}); keep one")
            keys.add(key)
        inner = "stages" if role == "top" and key_node.value == "stages" else "other"
        _refuse_repeated_keys(value_node, seen, inner)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise Malformed(f"stage name {name!r} must be text; name it with letters, digits, _ or -")
    refused = sorted(set(name) & _REFUSED_IN_NAMES)
    if refused:
        raise Malformed(
            f"stage name '{shown(name)}' holds {' '.join(repr(c) for c in refused)}; "
            "name it with letters, digits, _ and - only"
        )


def _unroll(
    name: str, definition: Any, scope: Scope, read_vars: ReadVars
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The stages one entry of ``stages`` stands for: itself, or one per foreach/matrix item."""
    body = mapping(definition, f"stage '{name}'")
    if "foreach" in body or "do" in body:
        if "matrix" in body:
            raise Malformed(f"stage '{name}': use either foreach/do or matrix, not both")
        for key in ("foreach", "do"):
            if key not in body:
                raise Malformed(
                    f"stage '{name}' has no '{key}'; foreach needs a do: and do a foreach:"
                )
        extra = sorted(str(key) for key in body if key not in ("foreach", "do"))
        if extra:
            raise Malformed(f"stage '{name}': move {', '.join(extra)} under do:")
        template = mapping(body["do"], f"stage '{name}': do")
        loops = _foreach_items(name, body["foreach"], scope)
        origin = "foreach"
    elif "matrix" in body:
        template = {key: value for key, value in body.items() if key != "matrix"}
        loops = _matrix_items(name, body["matrix"], scope)
        origin = "matrix"
    else:
        yield name, _resolve_stage(name, body, scope.child(name, {}, ""), read_vars)
        return
    for suffix, loop in loops:
        generated = f"{name}{JOIN}{suffix}"
        yield (
            generated,
            _resolve_stage(generated, template, scope.child(generated, loop, origin), read_vars),
        )


def _foreach_items(name: str, items: Any, scope: Scope) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name suffix, loop variables) of each foreach item, named as DVC names them: a list's
    values, a mapping's keys, or the indexes of a list holding lists or mappings."""
    resolved = Scope(f"stage '{name}'", scope).resolve(items, "foreach")
    if isinstance(resolved, dict):
        for key, value in resolved.items():
            yield _text(key), {"key": _text(key), "item": value}
    elif isinstance(resolved, list):
        composite = any(isinstance(value, (dict, list)) for value in resolved)
        for index, value in enumerate(resolved):
            yield str(index) if composite else _text(value), {"item": value}
    else:
        raise Malformed(
            f"stage '{name}': foreach must be a list or a mapping, not "
            f"{_kind(resolved)} {shown(str(resolved))!r}; give it a list of values or a mapping"
        )


def _matrix_items(name: str, axes: Any, scope: Scope) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name suffix, loop variables) of each point of the cartesian product, named as DVC names
    them: the values joined by ``-``, a list or mapping value as its axis name and index."""
    where = f"stage '{name}'"
    resolved = mapping(Scope(where, scope).resolve(axes, "matrix"), f"{where}: matrix")
    if not resolved:
        raise Malformed(f"{where}: matrix has no axis; give it one, as axis: [values…]")
    for axis, values in resolved.items():
        if not isinstance(values, list):
            raise Malformed(
                f"{where}: matrix axis '{axis}' must be a list of values, not "
                f"{_kind(values)}; write {axis}: [a, b]"
            )
    for point in product(*(list(enumerate(values)) for values in resolved.values())):
        item = {axis: value for axis, (_, value) in zip(resolved, point, strict=True)}
        fragments = [
            f"{axis}{index}" if isinstance(value, (dict, list)) else _text(value)
            for axis, (index, value) in zip(resolved, point, strict=True)
        ]
        key = "-".join(fragments)
        yield key, {"key": key, "item": item}


def _resolve_stage(
    name: str, template: dict[str, Any], scope: Scope, read_vars: ReadVars
) -> dict[str, Any]:
    """One stage's definition resolved, after its own vars (files relative to its wdir)."""
    definition = dict(template)
    own_vars = definition.pop("vars", None)
    if own_vars is not None:
        wdir = scope.resolve(definition.get("wdir"), "wdir")
        scope.load(own_vars, read_vars, wdir if isinstance(wdir, str) else "", f"{name}.")
    # The fields' own names stay as written, as in DVC; only their values are templates.
    return {key: scope.resolve(value, str(key)) for key, value in definition.items()}


class Scope:
    """The variables one stage sees, where each came from, and the vars files read into them.

    Merging never changes a mapping in place, so a child scope (a stage's own vars, a loop's
    ``item``) shares its parent's values and the vars files' mappings without copying them.
    """

    def __init__(self, where: str, parent: Scope | None = None) -> None:
        self.where = where  # how errors name what is resolved: "stage 'train'", "image", "vars"
        self.values: dict[str, Any] = dict(parent.values) if parent else {}
        self.sources: dict[str, str] = dict(parent.sources) if parent else {}
        self.files: dict[str, list[str] | None] = dict(parent.files) if parent else {}
        self.reserved: frozenset[str] = frozenset()

    def child(self, stage: str, loop: dict[str, Any], origin: str) -> Scope:
        """The scope of one stage: these variables plus the loop's (``item``, ``key``, set by
        ``origin``: foreach or matrix), which the stage's own vars cannot redefine."""
        scope = Scope(f"stage '{stage}'", self)
        scope.values.update(loop)
        scope.sources.update(dict.fromkeys(loop, origin))
        scope.reserved = frozenset(loop)
        return scope

    def load(self, items: Any, read_vars: ReadVars, folder: str, prefix: str = "") -> None:
        """Merge a ``vars`` list: file names (``file.yaml:k1,k2`` for some keys) and mappings."""
        where = f"{self.where}: vars" if prefix else "vars"
        if items is None:
            return
        if not isinstance(items, list):
            raise Malformed(f"{where} must be a list of file names and mappings")
        if _REFERENCE.search(str(items)):
            raise Malformed(f"{where} cannot use ${{…}}; name the files and values as they are")
        for index, item in enumerate(items):
            if isinstance(item, dict):
                self.merge(item, f"{prefix}vars[{index}]")
            elif isinstance(item, str) and item:
                file, _, names = item.partition(":")
                path = posixpath.normpath(posixpath.join(folder, file))
                keys = [key for key in names.split(",") if key] or None
                if self._already_read(path, keys, item, where):
                    continue
                try:
                    self.merge_file(path, read_vars(path), keys)
                except FileNotFoundError:
                    raise Malformed(
                        f"{where}: file '{path}' does not exist; create it or remove it from vars"
                    ) from None
            else:
                raise Malformed(f"{where}[{index}] must be a file name or a mapping")

    def _already_read(self, path: str, keys: list[str] | None, item: str, where: str) -> bool:
        if path not in self.files:
            return False
        read = self.files[path]
        if keys is None and read is None:
            return True  # a whole file may be listed twice
        if read is None:
            also = " (it is read by default)" if path == DEFAULT_FILE else ""
            raise Malformed(
                f"{where}: '{item}' picks keys of '{path}', which is already read whole{also}; "
                f"list '{path}' alone"
            )
        if keys is None or set(keys) & set(read):
            raise Malformed(
                f"{where}: '{item}' reads keys of '{path}' that are already read; "
                "list each key once"
            )
        return False

    def merge_file(self, path: str, data: dict[str, Any], keys: list[str] | None) -> None:
        if keys is not None:
            missing = [key for key in keys if key not in data]
            if missing:
                raise Malformed(
                    f"vars file '{path}' has no key '{missing[0]}'; add it there or stop "
                    "asking for it"
                )
            data = {key: data[key] for key in keys}
        self.merge(data, path)
        self.files[path] = (self.files.get(path) or []) + keys if keys is not None else None

    def merge(self, update: dict[str, Any], source: str) -> None:
        for key in update:
            if key in self.reserved:
                raise Malformed(
                    f"{self.where}: vars cannot define '{key}', which {self.sources[key]} sets; "
                    "rename it"
                )
        self.values = self._merged(self.values, update, "", source)

    def _merged(
        self, into: dict[str, Any], update: dict[str, Any], prefix: str, source: str
    ) -> dict[str, Any]:
        merged = dict(into)
        for key, value in update.items():
            if not isinstance(key, str):
                continue  # as in DVC: ${…} can name only text keys
            path = f"{prefix}{key}"
            if isinstance(merged.get(key), dict) and isinstance(value, dict):
                merged[key] = self._merged(merged[key], value, f"{path}.", source)
            elif key in merged:
                raise Malformed(
                    f"{self.where}: '{path}' from '{source}' is already defined in "
                    f"'{self._source_of(path)}'; a value is never redefined, rename one of them"
                )
            else:
                merged[key] = value
                self.sources[path] = source
        return merged

    def _source_of(self, path: str) -> str:
        parts = path.split(".")
        for end in range(len(parts), 0, -1):
            found = self.sources.get(".".join(parts[:end]))
            if found is not None:
                return found
        return "vars"

    def resolve(self, value: Any, field: str) -> Any:
        """``value`` with every ${…} in its strings resolved; ``field`` is the stage field it
        belongs to, which decides how a mapping in text is rendered."""
        if isinstance(value, str):
            return self._resolve_text(value, field)
        if isinstance(value, dict):
            return {
                self._resolve_key(key): self.resolve(item, field) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.resolve(item, field) for item in value]
        return value

    def _resolve_key(self, key: Any) -> Any:
        """A mapping key, interpolated as text (a key cannot be a list or mapping)."""
        return self._resolve_text(key, "a key") if isinstance(key, str) else key

    def _resolve_text(self, text: str, field: str) -> Any:
        references = list(_REFERENCE.finditer(text))
        if len(references) == 1 and references[0].group(0) == text and field != "a key":
            value = self.lookup(references[0]["body"])
            if field == "cmd" and isinstance(value, dict):
                return _options(value, self.where)
            return _copy(value)
        pieces: list[str] = []
        end = 0
        for reference in references:
            value = self.lookup(reference["body"])
            if isinstance(value, list) or (isinstance(value, dict) and field != "cmd"):
                raise Malformed(
                    f"{self.where}: {reference.group(0)} is a {_kind(value)}, which cannot be "
                    f"part of a text in {field}; make '{reference.group(0)}' the whole value"
                )
            rendered = _options(value, self.where) if isinstance(value, dict) else _text(value)
            pieces += [text[end : reference.start()], rendered]
            end = reference.end()
        pieces.append(text[end:])
        return "".join(pieces).replace("\\${", "${")

    def lookup(self, expression: str) -> Any:
        """The value ``a.b[0]`` names: keys through mappings, indexes through lists."""
        if not _EXPRESSION.fullmatch(expression):
            raise Malformed(
                f"{self.where}: '${{{expression}}}' is not a valid reference; {_HOW_TO_REFER}"
            )
        value: Any = self.values
        for part in expression.replace("[", ".").replace("]", "").split("."):
            part = part.strip()
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and _is_index(part, len(value)):
                value = value[int(part)]
            else:
                raise Malformed(
                    f"{self.where}: ${{{expression}}} is not defined "
                    f"(vars: {self._described()}); define it in vars or fix the name"
                )
        return value

    def _described(self) -> str:
        sources = list(dict.fromkeys(self.sources.values()))
        return ", ".join(sources) if sources else "none"


def _is_index(part: str, length: int) -> bool:
    try:
        return -length <= int(part) < length
    except ValueError:
        return False


def _text(value: Any) -> str:
    """A scalar as DVC writes it into text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: Any) -> str:
    kinds = {dict: "mapping", list: "list", str: "text", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _copy(value: Any) -> Any:
    """A fresh copy of a vars value, so no two stages share a mutable list or mapping."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _options(values: dict[str, Any], where: str) -> str:
    """A mapping as command-line options, as DVC renders it in ``cmd``: ``--key value``, nested
    keys dotted, ``--flag`` for true (nothing for false), ``--key a b`` for a list."""
    words: list[str] = []
    for key, value in _flattened(values, ""):
        if isinstance(value, bool):
            words += [f"--{key}"] if value else []
        elif isinstance(value, str):
            words += [f"--{key}", shlex.quote(value)]
        elif isinstance(value, list) and value:
            if any(isinstance(item, (dict, list)) for item in value):
                raise Malformed(f"{where}: cmd option '{key}' holds a nested list; flatten it")
            words += [f"--{key}"] + [
                shlex.quote(item) if isinstance(item, str) else f"{item}" for item in value
            ]
        else:
            words += [f"--{key}", f"{value}"]
    return " ".join(words)


def _flattened(values: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flattened(value, f"{prefix}{key}.")
        elif not isinstance(value, dict):
            yield f"{prefix}{key}", value
