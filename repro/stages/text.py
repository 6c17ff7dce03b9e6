"""The text of a stage file repro rewrites: its own files are dumped afresh (keys in the order
of stage.FIELDS, deterministic); a hand-written one keeps its key order, long lines and, where
only the hashes repro fills in change, its comments and layout too.

A hand-written file whose definition is unchanged (a run that records md5s, image IDs and
the default image) is edited in place: each recorded value replaces the old one, or a new
line is put after the last line of its mapping. Any other rewrite (``metrics modify``, a file
laid out in ways the edit does not handle) dumps the data again in the file's own key order;
comments are then lost. Every edit is read back and must give the very stage written, or
the plain dump is used.
"""

from __future__ import annotations

from typing import Any

import yaml

from repro.errors import ReproError
from repro.stages.stage import Stage, dump, from_dict, parse

_Edit = tuple[int, int, str]  # (start, end, replacement) in the old text


class _Unfit(Exception):
    """The old text cannot be edited in place."""


def render(stage: Stage, old_text: str | None) -> str:
    """The text to write for ``stage`` over a file that held ``old_text`` (None: no file)."""
    fresh = dump(stage)
    if old_text is None:
        return fresh
    try:
        old = parse(stage.path, old_text)
    except ReproError:
        return fresh
    if old_text == dump(old):  # repro wrote it: stay deterministic
        return fresh
    for candidate in (_edited(old_text, old, stage), _dumped_like(stage, old_text)):
        if candidate is not None and _reads_as(candidate, stage):
            return candidate
    return fresh


def _reads_as(text: str, stage: Stage) -> bool:
    try:
        return from_dict(stage.path, yaml.safe_load(text)) == stage
    except Exception:  # noqa: BLE001 - any failure to read it back means: do not use it
        return False


def _bare(stage: Stage) -> Stage:
    """The stage without what a run records: md5s, the image's id and digest, the
    SOURCE_DATE_EPOCH it ran with."""
    return stage._replace(
        md5=None,
        source_date_epoch=None,
        image=stage.image and stage.image._replace(id=None, digest=None),
        deps=tuple(d.recorded_as(None) for d in stage.deps),
        outs=tuple(o._replace(md5=None) for o in stage.outs),
    )


# -- in place ------------------------------------------------------------------------------------
def _edited(text: str, old: Stage, new: Stage) -> str | None:
    adds_image = old.image is None and new.image is not None
    if _bare(old) != _bare(new._replace(image=None) if adds_image else new):
        return None
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        edits: list[_Edit] = []
        if adds_image:
            assert new.image is not None
            image = {"name": new.image.name, "id": new.image.id, "digest": new.image.digest}
            block = _block({"image": {k: v for k, v in image.items() if v}})
            cmd = value_node(root, "cmd")
            where = line_end(text, cmd) if cmd is not None else len(text.rstrip("\n"))
            edits.append((where, where, "\n" + block))
        elif new.image is not None:
            image_node = _mapping(value_node(root, "image"))
            edits += _set(text, image_node, "id", new.image.id)
            edits += _set(text, image_node, "digest", new.image.digest)
        recorded_values = [
            *((kind.FIELD, [d.recorded for d in deps]) for kind, deps in new.deps_by_kind()),
            ("outs", [o.md5 for o in new.outs]),
        ]
        for key, recorded in recorded_values:
            if any(not isinstance(value, (str, type(None))) for value in recorded):
                raise _Unfit  # a value that is no scalar: dumped again instead
            if recorded:
                sequence = value_node(root, key)
                if not isinstance(sequence, yaml.SequenceNode) or sequence.flow_style:
                    raise _Unfit
                for node, md5 in zip(sequence.value, recorded, strict=True):
                    edits += _set(text, _mapping(node), "md5", md5)
        epoch = None if new.source_date_epoch is None else str(new.source_date_epoch)
        edits += _set(text, _mapping(root), "source_date_epoch", epoch, top=True, number=True)
        edits += _set(text, _mapping(root), "md5", new.md5, top=True)
    except (_Unfit, yaml.YAMLError, ValueError):
        return None
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text if text.endswith("\n") else text + "\n"


def _mapping(node: Any) -> yaml.MappingNode:
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        raise _Unfit
    return node


def value_node(mapping: Any, key: str) -> Any:
    """The node a block mapping holds under ``key``; None when it has none."""
    for key_node, found in _mapping(mapping).value:
        if key_node.value == key:
            return found
    return None


def line_end(text: str, node: Any) -> int:
    """Where the last line of ``node`` ends (before its newline, after any comment)."""
    index = node.end_mark.index
    if node.end_mark.column == 0 and index > 0:  # a block scalar ends at the next line
        index -= 1
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def _set(
    text: str,
    mapping: yaml.MappingNode,
    key: str,
    value: str | None,
    top: bool = False,
    number: bool = False,
) -> list[_Edit]:
    """Edits that make ``key`` of ``mapping`` hold ``value`` (``number``: written bare, as the
    integer it spells)."""
    node = value_node(mapping, key)
    written = None if value is None else value if number else _scalar(value)
    if node is not None:
        if not isinstance(node, yaml.ScalarNode) or value is None:
            raise _Unfit
        if node.value == value:
            return []
        return [(node.start_mark.index, node.end_mark.index, str(written))]
    if value is None:
        return []
    if top:  # a new top-level key fits at the end of the file, whatever the last value is
        where = len(text.rstrip("\n"))
        return [(where, where, f"\n{key}: {written}")]
    last_key, last_value = mapping.value[-1]
    if not isinstance(last_value, yaml.ScalarNode):
        raise _Unfit
    indent = " " * last_key.start_mark.column
    where = line_end(text, last_value)
    return [(where, where, f"\n{indent}{key}: {written}")]


def _scalar(value: str) -> str:
    return _block({"k": value})[len("k: ") :]


def _block(data: dict[str, Any]) -> str:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=float("inf"))
    return str(text).rstrip("\n")


# -- dumped again ----------------------------------------------------------------------------
def _dumped_like(stage: Stage, old_text: str) -> str | None:
    """``stage`` dumped with the keys in the order the old file had them."""
    try:
        old_data = yaml.safe_load(old_text)
    except yaml.YAMLError:
        return None
    data = _ordered_like(stage.to_dict(), old_data)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=float("inf"))
    return str(text)


def _ordered_like(new: Any, old: Any) -> Any:
    """``new`` with the keys of each mapping in ``old``'s order; a key ``old`` lacks goes
    right after the key it follows in ``new`` (stage.FIELDS' order)."""
    if isinstance(new, list):
        olds = old if isinstance(old, list) else []
        return [_ordered_like(n, olds[i] if i < len(olds) else None) for i, n in enumerate(new)]
    if not isinstance(new, dict):
        return new
    old_map = old if isinstance(old, dict) else {}
    keys = [k for k in old_map if k in new]
    for position, key in enumerate(new):
        if key not in keys:
            before = [k for k in list(new)[:position] if k in keys]
            keys.insert(keys.index(before[-1]) + 1 if before else 0, key)
    return {k: _ordered_like(new[k], old_map.get(k)) for k in keys}
