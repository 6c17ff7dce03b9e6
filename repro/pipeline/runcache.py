"""The run-cache: a successful run remembered by what went into it.

The key covers cmd, working dir, image ID, network, every dep's hash and the outs' paths and
flags; the entry lists the outs' hashes. Entries live in <cache>/runs/ab/cdef… as JSON, written
atomically, so a changed stage whose inputs were seen before is restored, not re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from repro.fsutil import write_atomic
from repro.objects.digest import bytes_md5
from repro.objects.runs import entry_path
from repro.stages.fields import Malformed, epoch
from repro.stages.stage import Out, Stage


def key(stage: Stage, image_id: str, dep_values: dict[str, Any]) -> str:
    """The run-cache key of ``stage`` run in ``image_id`` over dependencies with these values
    (what it covers: Stage.run_key_payload)."""
    payload = stage.run_key_payload(image_id, dep_values)
    return bytes_md5(json.dumps(payload, sort_keys=True).encode())


class Entry(NamedTuple):
    """What a run left: the md5 of each output by path, and the SOURCE_DATE_EPOCH it had
    (None in entries written before it was recorded)."""

    outs: dict[str, str]
    source_date_epoch: int | None


def lookup(cache_dir: Path, run_key: str) -> dict[str, str] | None:
    """out path → md5 recorded for this key, or None when the run was never seen."""
    entry = read(cache_dir, run_key)
    return None if entry is None else entry.outs


def read(cache_dir: Path, run_key: str) -> Entry | None:
    """The entry of this key, or None when the run was never seen (or its entry, which may
    have come from a shared remote, is not one)."""
    try:
        data = json.loads(entry_path(cache_dir, run_key).read_text(encoding="utf-8"))
        outs = {str(item["path"]): str(item["md5"]) for item in data["outs"]}
        return Entry(outs, epoch(data.get("source_date_epoch"), "source_date_epoch"))
    except (FileNotFoundError, ValueError, KeyError, TypeError, Malformed):
        return None


def save(cache_dir: Path, run_key: str, outs: tuple[Out, ...], source_date_epoch: int) -> None:
    target = entry_path(cache_dir, run_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "outs": [{"path": o.path, "md5": o.md5, "cache": o.cache} for o in outs],
        "source_date_epoch": source_date_epoch,
    }
    write_atomic(target, json.dumps(payload, sort_keys=True).encode("utf-8"))
