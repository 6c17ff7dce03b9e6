"""Converting a DVC 3 project in two steps: ``plan`` reads and checks everything and renders
every file in memory (any refusal happens there, before a byte is written); ``apply`` writes.

The cache is reused where it is, never copied or hashed again. One inside the project
(``.dvc/cache``, DVC's default) would be mounted read-write into every stage, which repro
forbids for a cache: its objects move (one rename) to ``.repro/cache``, which stages only
ever see read-only, and a symlink takes their place so that DVC keeps working on the same
objects until the user removes ``.dvc/``. A cache outside the project is used in place.
"""

from __future__ import annotations

import os
import posixpath
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from repro.config import Config
from repro.errors import ReproError
from repro.fromdvc import hashes, pipelines, settings
from repro.fsutil import read_regular, write_atomic
from repro.memo.state import FileKey
from repro.paths import is_within
from repro.project import REPRO_DIR, Project
from repro.stages import pipeline_file
from repro.stages import stage as stage_mod
from repro.walk import LOCK_FILE, PIPELINE_FILE

PIPELINE, LOCK = "dvc.yaml", "dvc.lock"
_OBJECTS = "files"  # the folder of objects in DVC 3's cache and in repro's


class Plan(NamedTuple):
    """Everything a conversion writes, rendered."""

    files: dict[str, bytes]  # project-relative path → bytes
    settings: list[settings.Setting]
    dvc_cache: Path
    memo_rows: list[tuple[FileKey, str]]
    warnings: list[str]


def plan(root: Path, image_for: Callable[[], str]) -> Plan:
    """Read the DVC project at ``root``; ``image_for()`` names the stages' image (asked only
    when some stage has a command)."""
    if not (root / settings.DVC_DIR).is_dir():
        raise ReproError(
            f"{root} is not a DVC project (no {settings.DVC_DIR}/ here); run 'repro init "
            "--from-dvc' at the top of one, or 'repro init' to start afresh"
        )
    if os.path.lexists(root / REPRO_DIR):
        raise ReproError(f"{root} is a repro project already ({REPRO_DIR}/ exists); nothing to do")
    names = _candidates(root)
    warnings: list[str] = []
    files: dict[str, bytes] = {}
    pipelines_found = [n for n in names if posixpath.basename(n) == PIPELINE]
    parsed = {n: pipelines.load_yaml(n, _read(root, n)) for n in pipelines_found}
    image = None
    if any(_has_commands(raw) for raw in parsed.values()):
        image = image_for()
    for name, raw in parsed.items():
        files.update(_pipeline(root, name, raw, str(image), warnings))
    for name in names:
        if name.endswith(".dvc") and posixpath.basename(name) != ".dvc":
            raw = pipelines.load_yaml(name, _read(root, name))
            for stage in pipelines.data_stages(name, raw, warnings):
                files[stage.path] = stage_mod.dump(stage).encode("utf-8")
    for path in files:
        if os.path.lexists(root / path):
            raise ReproError(f"{path} exists already; move it away and retry")
    found = settings.read(root)
    _check_cache(root, found.cache_dir)
    warnings.extend(found.warnings)
    memo = hashes.memo_path(root, found.site_cache_dir)
    rows = hashes.trusted_rows(root, memo) if memo is not None else []
    values = found.values
    if image is not None:
        values = [*values, settings.Setting("core.image", image, False)]
    return Plan(files, values, found.cache_dir, rows, warnings)


def _check_cache(root: Path, cache: Path) -> None:
    """Refuse a DVC cache repro cannot take as its own. A cloned repository may plant one
    (tracked objects, or symlinks to the user's files that a push would upload and a checkout
    would link into the work tree), point .dvc/ or its cache.dir through a symlink, or name a
    folder another user writes; repro's cache holds only files this user made."""
    hint = "then run 'repro init --from-dvc' again"
    for path in (root / settings.DVC_DIR, root / settings.DVC_DIR / "cache"):
        if os.path.islink(path):
            raise ReproError(
                f"{path} is a symlink (to {os.readlink(path)}); a cloned repository may have "
                f"planted it: remove it, set DVC's cache.dir to the real folder, {hint}"
            )
    if not os.path.isdir(cache):
        return
    if is_within(str(cache), os.path.realpath(root)):
        rel = os.path.relpath(cache, os.path.realpath(root))
        tracked = subprocess.run(
            ["git", "ls-files", "-z", "--", rel], cwd=root, capture_output=True, check=True
        ).stdout
        if tracked:
            first = os.fsdecode(tracked.split(b"\0")[0])
            raise ReproError(
                f"the repository tracks {first} in DVC's cache, which a cloned repository may "
                f"have planted: run 'git rm -r --cached {rel}', delete {rel}, {hint}"
            )
    owner = os.stat(cache).st_uid
    if owner != os.geteuid():
        raise ReproError(
            f"DVC's cache {cache} belongs to uid {owner}, not to you, and repro would trust "
            f"its objects: use a cache of your own (DVC's cache.dir), {hint}"
        )
    for folder, dirs, files in os.walk(cache / _OBJECTS):
        for name in dirs + files:
            entry = os.path.join(folder, name)
            kind = os.lstat(entry).st_mode
            if stat.S_ISLNK(kind) or not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
                raise ReproError(
                    f"{entry} in DVC's cache is not a file or folder (a symlink, fifo or "
                    f"device); remove it ('dvc fetch' brings a missing object back), {hint}"
                )


def _candidates(root: Path) -> list[str]:
    """dvc.yaml and .dvc files of the work tree, as git sees it (ignored outputs left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    names = sorted({os.fsdecode(n) for n in listed.split(b"\0") if n})
    return [
        n
        for n in names
        if not n.startswith(settings.DVC_DIR + "/")
        and (posixpath.basename(n) == PIPELINE or n.endswith(".dvc"))
    ]


def _read(root: Path, name: str) -> str:
    try:
        return read_regular(root / name).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReproError(f"{name} cannot be read ({exc}); fix it and retry") from None


def _has_commands(raw: Any) -> bool:
    stages = raw.get("stages") if isinstance(raw, dict) else None
    return bool(stages)


def _pipeline(root: Path, name: str, raw: Any, image: str, warnings: list[str]) -> dict[str, bytes]:
    """repro.yaml and repro.lock for the dvc.yaml ``name``."""
    folder = posixpath.dirname(name)
    converted = pipelines.convert_pipeline(name, raw, image)
    warnings.extend(converted.warnings)
    pipeline_name = posixpath.join(folder, PIPELINE_FILE)
    pipeline_text = _dump(converted.data)
    out = {pipeline_name: pipeline_text}
    lock_name = posixpath.join(folder, LOCK)
    if not (root / lock_name).exists():
        return out
    lock = pipelines.load_yaml(lock_name, _read(root, lock_name))
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise ReproError(f"{lock_name} has no 'stages' mapping; fix it or remove it, and retry")
    pinned = _pinned(image)
    entries = {
        str(stage): pipelines.lock_entry(f"{lock_name}: stage '{stage}'", entry, dict(pinned))
        for stage, entry in lock["stages"].items()
    }
    # Each stage's definition md5 as repro computes it: from the two files read back.
    text, lock_text = pipeline_text.decode("utf-8"), _dump({"stages": entries}).decode("utf-8")

    read_vars = pipeline_file.vars_reader(root, folder)
    for stage in pipeline_file.parse(pipeline_name, text, lock_text, read_vars):
        if stage.name in entries:
            entries[stage.name]["md5"] = stage.definition_md5()
    out[posixpath.join(folder, LOCK_FILE)] = _dump({"stages": entries})
    return out


def _dump(data: dict[str, Any]) -> bytes:
    import yaml

    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=float("inf"))
    return str(text).encode("utf-8")


def _pinned(image: str) -> dict[str, str]:
    """The image as repro.lock pins it: the ID its name resolves to now."""
    from repro.runners import choose_runner
    from repro.runners.spec import Image

    found = choose_runner(None).ensure(Image(image), pinned=False)
    return {k: v for k, v in (("name", image), ("id", found.id), ("digest", found.digest)) if v}


def apply(root: Path, plan: Plan) -> list[str]:
    """Write what ``plan`` rendered into the project at ``root`` (whose .repro/ exists now);
    the paths to commit."""
    repro_dir = root / REPRO_DIR
    config = Config(repro_dir)
    for setting in plan.settings:
        config.set(setting.key, setting.value, local=setting.local)
    _reuse_cache(root, plan.dvc_cache, config)
    Project(root).state.put_files(plan.memo_rows, time.time_ns())
    for path, data in plan.files.items():
        write_atomic(root / path, data)
    written = [*plan.files, f"{REPRO_DIR}/config", f"{REPRO_DIR}/.gitignore"]
    subprocess.run(["git", "add", "--", *written], cwd=root, check=True, capture_output=True)
    return written


def _reuse_cache(root: Path, dvc_cache: Path, config: Config) -> None:
    if not is_within(str(dvc_cache), os.path.realpath(root)):
        config.set("cache.dir", str(dvc_cache), local=True)  # a path of this machine
        return
    objects = dvc_cache / _OBJECTS
    if not objects.is_dir() or objects.is_symlink():
        return
    moved = root / REPRO_DIR / "cache" / _OBJECTS
    os.rename(objects, moved)
    os.symlink(os.path.relpath(moved, dvc_cache), objects)
