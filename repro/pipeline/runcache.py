"""The run-cache: a successful run remembered by what went into it.

The key covers cmd, working dir, image ID, network, every dep's hash and the outs' paths and
flags; the entry lists the outs' hashes. Entries live in <cache>/runs/ab/cdef… as JSON, written
atomically, so a changed stage whose inputs were seen before is restored, not re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from repro.fsutil import write_atomic
from repro.objects.digest import bytes_md5
from repro.objects.runs import entry_path
from repro.stages.stage import Out, Stage


def key(stage: Stage, image_id: str, dep_values: dict[str, Any]) -> str:
    """The run-cache key of ``stage`` run in ``image_id`` over dependencies with these values
    (what it covers: Stage.run_key_payload)."""
    payload = stage.run_key_payload(image_id, dep_values)
    return bytes_md5(json.dumps(payload, sort_keys=True).encode())


def lookup(cache_dir: Path, run_key: str) -> dict[str, str] | None:
    """out path → md5 recorded for this key, or None when the run was never seen."""
    try:
        data = json.loads(entry_path(cache_dir, run_key).read_text(encoding="utf-8"))
        return {str(item["path"]): str(item["md5"]) for item in data["outs"]}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def save(cache_dir: Path, run_key: str, outs: tuple[Out, ...]) -> None:
    target = entry_path(cache_dir, run_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"outs": [{"path": o.path, "md5": o.md5, "cache": o.cache} for o in outs]}
    write_atomic(target, json.dumps(payload, sort_keys=True).encode("utf-8"))
