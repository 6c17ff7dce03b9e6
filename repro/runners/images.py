"""Images travel through remotes as archives keyed by image ID, in every runner's format.

A fresh host with no registry can then ``repro pull --images`` and run the very same image ID.
Archives live under ``images/<algorithm>/<hex>.tar`` on the remote (``images/sha256/…``); what
an archive holds is the runner's business (a ``docker save`` for Docker), and its ID is checked
after loading: an archive that held another image is an error, never run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from repro.errors import ReproError

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from repro.remotes.base import Remote
    from repro.runners.base import Runner


def image_key(image_id: str) -> str:
    algo, _, digest = image_id.partition(":")
    return f"images/{algo}/{digest}.tar"


def push_images(
    runner: Runner, remote: Remote, image_ids: Iterable[str], scratch: Path
) -> tuple[int, int]:
    """Upload the images the remote lacks; return (uploaded, already there)."""
    ids = sorted(set(image_ids))
    if not ids:
        return 0, 0
    present = remote.exists([image_key(i) for i in ids])
    todo = [i for i in ids if image_key(i) not in present]
    for image_id in todo:
        with tempfile.NamedTemporaryFile(dir=scratch, suffix=".tar", delete=False) as handle:
            tmp = Path(handle.name)
            try:
                runner.export_image(image_id, handle)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        try:
            remote.put(tmp, image_key(image_id))
        finally:
            tmp.unlink(missing_ok=True)
    return len(todo), len(ids) - len(todo)


def pull_images(
    runner: Runner,
    remote: Remote,
    image_ids: Iterable[str],
    scratch: Path,
    names: Mapping[str, Iterable[str]] | None = None,
) -> tuple[int, list[str]]:
    """Load the images this host lacks from the remote; return (loaded, not on the remote).
    Each image here then gets the ``names`` (by image ID) that are free or already its own,
    so that the name a stage file records runs that very image."""
    ids = sorted(set(image_ids))
    todo = [i for i in ids if runner.resolve(i) is None]
    result = _load(runner, remote, todo, scratch)
    for image_id in ids:
        for name in sorted(set((names or {}).get(image_id, ()))):
            _tag(runner, image_id, name)
    return result


def _tag(runner: Runner, image_id: str, name: str) -> None:
    """Tag the image ``image_id`` (when this host has it) as ``name``, unless that names
    another image: the user's own tags are never moved."""
    if "@" in name or runner.resolve(image_id) is None:
        return  # a digest is not a tag
    if runner.resolve(name) is not None:
        return  # already this image, or another one that is not ours to retag
    runner.tag(image_id, name)


def _load(runner: Runner, remote: Remote, todo: list[str], scratch: Path) -> tuple[int, list[str]]:
    if not todo:
        return 0, []
    present = remote.exists([image_key(i) for i in todo])
    loaded, absent = 0, []
    for image_id in todo:
        if image_key(image_id) not in present:
            absent.append(image_id)
            continue
        fd, name = tempfile.mkstemp(dir=scratch, suffix=".tar")
        os.close(fd)
        tmp = Path(name)
        try:
            remote.get(image_key(image_id), tmp)
            with open(tmp, "rb") as handle:
                runner.import_image(handle)
        finally:
            tmp.unlink(missing_ok=True)
        if runner.resolve(image_id) is None:
            raise ReproError(
                f"the archive of image {image_id[:19]}… on {remote.url} holds another image; "
                "push it again from a host that has it"
            )
        loaded += 1
    return loaded, absent
