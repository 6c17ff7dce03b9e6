"""The formats a metric file may be in (json, yaml, csv, tsv or raw): telling it from the file's
name, parsing its bytes, and selecting a value by an xpath.

An xpath is a key path: ``acc``, ``train.loss``, ``layers[0].units``. For csv/tsv it names a
column, optionally a row: ``acc`` (the column), ``acc[2]`` (row 2 of it).

Stage files name these formats and the command line offers them, so this module sits low in
the layers (it imports nothing of repro but its errors): a reader of another kind of file by
format (plots) starts here too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from repro.errors import ReproError

Value = Any  # a number, string, list or mapping parsed from a metric file

FORMATS = ("json", "yaml", "csv", "tsv", "raw")
_BY_EXTENSION = {"json": "json", "yaml": "yaml", "yml": "yaml", "csv": "csv", "tsv": "tsv"}
_TABLES = ("csv", "tsv")
_STEP = r"([^.\[\]]+)|\[(\d+)\]"  # compiled on first use: the stage loader imports this module


def format_of(path: str) -> str:
    """The format the file name's last dot says (``.json`` alone counts); raw when none."""
    name = path.rpartition("/")[2]
    suffix = name.rpartition(".")[2] if "." in name else ""
    return _BY_EXTENSION.get(suffix.lower(), "raw")


def _number(text: str) -> Value:
    # int() never takes a point or an exponent: skip its exception for every decimal of a
    # table (plots read tens of thousands of them).
    if "." not in text and "e" not in text and "E" not in text:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        return text


def _records(rows: Iterator[list[str]]) -> list[dict[str, Value]]:
    """A table's rows as records keyed by its header (blank lines skipped, as csv.DictReader
    does; a field beyond the header's is left out)."""
    header = next(rows, [])
    records = []
    for number, row in enumerate(rows, 2):
        if not row:
            continue
        if len(row) < len(header):
            raise ValueError(f"line {number} has {len(row)} fields, the header {len(header)}")
        records.append({key: _number(value) for key, value in zip(header, row, strict=False)})
    return records


def parse(data: bytes, metric_type: str, where: str) -> Value:
    """The whole content of a metric file as a value."""
    text = data.decode("utf-8", "replace")
    try:
        if metric_type == "json":
            return json.loads(text)
        if metric_type == "yaml":
            import yaml

            return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if metric_type in _TABLES:
            import csv
            import io

            return _records(
                csv.reader(io.StringIO(text), delimiter="," if metric_type == "csv" else "\t")
            )
    except ValueError as exc:
        raise ReproError(f"metric {where} is not valid {metric_type} ({exc})") from None
    except Exception as exc:  # yaml.YAMLError and csv.Error without importing them up front
        # A YAML error spans several lines; a csv one is a short phrase worth showing.
        detail = str(exc) if metric_type in _TABLES else type(exc).__name__
        raise ReproError(f"metric {where} is not valid {metric_type} ({detail})") from None
    return _number(text.strip())


def select(value: Value, xpath: str | None, metric_type: str, where: str) -> Value:
    """The part of ``value`` that ``xpath`` names; the whole value without one."""
    if not xpath:
        return value
    steps = [(m.group(1), m.group(2)) for m in re.finditer(_STEP, xpath)]
    if not steps:
        raise ReproError(f"xpath '{xpath}' is empty; use e.g. acc or train.loss")
    if metric_type in _TABLES:
        (column, _), *rest = steps
        rows = value if isinstance(value, list) else []
        if rows and column not in rows[0]:
            raise ReproError(f"metric {where} has no column '{column}'")
        values = [row.get(column) for row in rows]
        if rest and rest[0][1] is not None:
            index = int(rest[0][1])
            if index >= len(values):
                raise ReproError(f"metric {where} has no row {index}")
            return values[index]
        return values[0] if len(values) == 1 else values
    current = value
    for key, position in steps:
        try:
            current = current[int(position)] if position is not None else current[key]
        except (KeyError, IndexError, TypeError):
            raise ReproError(f"metric {where} has nothing at '{xpath}'") from None
    return current
