"""Images travel through remotes as `docker save` archives keyed by image ID (SPEC §3.5).

A fresh host with no registry can then `repro pull --images` and run the very same image ID.
Archives live under ``images/sha256/<hex>.tar`` on the remote; the ID is verified on load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from repro.errors import ReproError

TYPE_CHECKING = False  # no import of typing at run time
if TYPE_CHECKING:
    from repro.remotes.base import Remote


def image_key(image_id: str) -> str:
    algo, _, digest = image_id.partition(":")
    return f"images/{algo}/{digest}.tar"


def _client() -> Any:
    from repro.runners.docker.runner import DockerRunner

    return DockerRunner().client


def push_images(remote: Remote, image_ids: Iterable[str], scratch: Path) -> tuple[int, int]:
    """Upload the images the remote lacks; return (uploaded, already there)."""
    ids = sorted(set(image_ids))
    if not ids:
        return 0, 0
    present = remote.exists([image_key(i) for i in ids])
    todo = [i for i in ids if image_key(i) not in present]
    client = _client() if todo else None
    for image_id in todo:
        assert client is not None
        try:
            image = client.images.get(image_id)
        except Exception:  # noqa: BLE001 - docker.errors without importing docker early
            raise ReproError(
                f"image {image_id[:19]}… is not on this host, so it cannot be pushed; "
                "reproduce the stage or docker load the image first"
            ) from None
        with tempfile.NamedTemporaryFile(dir=scratch, suffix=".tar", delete=False) as handle:
            tmp = Path(handle.name)
            try:
                for chunk in image.save(named=False):
                    handle.write(chunk)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        try:
            remote.put(tmp, image_key(image_id))
        finally:
            tmp.unlink(missing_ok=True)
    return len(todo), len(ids) - len(todo)


def pull_images(
    remote: Remote,
    image_ids: Iterable[str],
    scratch: Path,
    names: Mapping[str, Iterable[str]] | None = None,
) -> tuple[int, list[str]]:
    """Load the images this host lacks from the remote; return (loaded, not on the remote).
    Each image here then gets the ``names`` (by image ID) that are free or already its own,
    so that the name a stage file records runs that very image."""
    client = _client()
    from repro.runners.docker.runner import DockerRunner

    runner = DockerRunner()
    runner._client = client
    ids = sorted(set(image_ids))
    todo = [i for i in ids if runner.resolve(i) is None]
    result = _load(remote, client, runner, todo, scratch)
    for image_id in ids:
        for name in sorted(set((names or {}).get(image_id, ()))):
            _tag(client, runner, image_id, name)
    return result


def _tag(client: Any, runner: Any, image_id: str, name: str) -> None:
    """Tag the image ``image_id`` (when this host has it) as ``name``, unless that names
    another image: the user's own tags are never moved."""
    if "@" in name or runner.resolve(image_id) is None:
        return  # a digest is not a tag
    if runner.resolve(name) is not None:
        return  # already this image, or another one that is not ours to retag
    repository, tag = name, "latest"
    if ":" in name.rpartition("/")[2]:
        repository, _, tag = name.rpartition(":")
    try:
        client.images.get(image_id).tag(repository, tag)
    except Exception:  # noqa: BLE001 - docker.errors; a name the engine refuses stays untagged
        return


def _load(
    remote: Remote, client: Any, runner: Any, todo: list[str], scratch: Path
) -> tuple[int, list[str]]:
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
                client.images.load(handle)
        finally:
            tmp.unlink(missing_ok=True)
        if runner.resolve(image_id) is None:
            raise ReproError(
                f"the archive of image {image_id[:19]}… on {remote.url} holds another image; "
                "push it again from a host that has it"
            )
        loaded += 1
    return loaded, absent
