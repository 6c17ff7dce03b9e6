"""Run stages in Docker containers through docker-py (SPEC §3.1).

Each stage runs ``/bin/sh -c CMD`` in its pinned image ID, as the invoking uid:gid, with no
capabilities, no-new-privileges and no network unless asked. The project is bind-mounted at
its own path; .git, .repro, the declared deps and every other stage's outputs are mounted again
read-only on top, because the stage runs as the owner of those files and could chmod them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.runners import LogSink, RunSpec
from repro.stage import Image

_CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")


def _import_docker() -> Any:
    """docker-py, without the 0.12 s it spends importing paramiko for ssh:// engines.

    docker.transport skips its SSH adapter when paramiko fails to import; for a local engine we
    make it fail for that one import (paramiko stays importable for repro's SSH remotes).
    """
    if "docker" in sys.modules or os.environ.get("DOCKER_HOST", "").startswith("ssh://"):
        import docker

        return docker
    hidden = "paramiko" not in sys.modules
    if hidden:
        sys.modules["paramiko"] = None  # type: ignore[assignment]
    try:
        import docker
    finally:
        if hidden:
            del sys.modules["paramiko"]
    return docker


def _engine_error(exc: Exception) -> ReproError:
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return ReproError(
        f"no Docker engine answers at {where} ({type(exc).__name__}); start Docker "
        "(scripts/ensure-docker.sh does it as root) or point DOCKER_HOST at a running engine"
    )


class DockerRunner:
    def __init__(self) -> None:
        self._client: Any = None
        self._translate: Callable[[Path], Path] | None = None
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._reaped = False

    @property
    def client(self) -> Any:
        if self._client is None:
            docker = _import_docker()
            try:
                client = docker.from_env(timeout=300)
                client.ping()
            except (docker.errors.DockerException, OSError) as exc:
                raise _engine_error(exc) from None
            self._client = client
        return self._client

    # -- images ------------------------------------------------------------------------------
    def resolve(self, name: str) -> str | None:
        docker = _import_docker()

        try:
            return str(self.client.images.get(name).id)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise ReproError(
                f"the Docker engine refused to inspect image '{name}': {exc}"
            ) from None

    def _digest(self, image_id: str) -> str | None:
        attrs = self.client.images.get(image_id).attrs
        digests = attrs.get("RepoDigests") or []
        return str(digests[0]) if digests else None

    def ensure(self, image: Image, pinned: bool) -> Image:
        docker = _import_docker()

        if pinned and image.id:
            if self.resolve(image.id) is not None:
                return image
            if image.digest:
                self._pull(image.digest)
                if self.resolve(image.id) is not None:
                    return image
            raise ReproError(
                f"pinned image {image.id[:19]}… of '{image.name}' is not on this host; get it "
                "with 'repro pull --images' (or docker load it) and retry"
            )
        image_id = self.resolve(image.name)
        if image_id is None and image.digest:
            try:
                self._pull(image.digest)
                image_id = self.resolve(image.digest)
            except ReproError:
                image_id = None
        if image_id is None and image.id and self.resolve(image.id) is not None:
            image_id = image.id
        if image_id is None:
            raise ReproError(
                f"image '{image.name}' is not on this host; build it (docker build -t "
                f"{image.name} …), docker pull it, or get it with 'repro pull --images'"
            )
        try:
            digest = self._digest(image_id)
        except docker.errors.DockerException:
            digest = None
        return Image(image.name, image_id, digest or image.digest)

    def _pull(self, reference: str) -> None:
        docker = _import_docker()

        try:
            self.client.images.pull(reference)
        except docker.errors.DockerException as exc:
            first = str(exc).splitlines()[0][:200]
            raise ReproError(f"could not pull {reference}: {first}") from None

    # -- paths -------------------------------------------------------------------------------
    def host_path(self, path: Path) -> Path:
        """What the engine calls ``path``: itself, unless repro runs inside a container."""
        if self._translate is None:
            self._translate = self._make_translator()
        return self._translate(path)

    def _make_translator(self) -> Callable[[Path], Path]:
        own = self._own_container()
        if own is None:
            return lambda p: p
        mounts = [
            (Path(m["Destination"]), Path(m["Source"]))
            for m in own.attrs.get("Mounts", [])
            if m.get("Type") in ("bind", "volume") and m.get("Source")
        ]
        mounts.sort(key=lambda pair: len(str(pair[0])), reverse=True)

        def translate(path: Path) -> Path:
            for dest, source in mounts:
                if path == dest or dest in path.parents:
                    return source / path.relative_to(dest)
            raise ReproError(
                f"repro runs in container {own.short_id}, but {path} lies on no mount of it, so "
                "stage containers cannot see it; start this container with the project on a "
                f"bind mount or volume (e.g. -v /host/dir:{path})"
            )

        return translate

    def _own_container(self) -> Any:
        """This process's container on the same engine, or None when not in one."""
        docker = _import_docker()

        if not os.path.exists("/.dockerenv") and not os.environ.get("REPRO_IN_CONTAINER"):
            return None
        candidates: list[str] = []
        try:
            with open("/proc/self/mountinfo", encoding="utf-8") as handle:
                candidates.extend(_CONTAINER_ID.findall(handle.read()))
        except OSError:
            pass
        hostname = os.environ.get("HOSTNAME") or ""
        if hostname:
            candidates.append(hostname)
        for candidate in dict.fromkeys(candidates):
            try:
                return self.client.containers.get(candidate)
            except (docker.errors.NotFound, docker.errors.APIError):
                continue
        return None

    # -- running -----------------------------------------------------------------------------
    def _mounts(self, spec: RunSpec) -> list[Any]:
        from docker.types import Mount

        root = spec.project_root
        mounts = [Mount(str(root), str(self.host_path(root)), type="bind", read_only=False)]
        seen = {root}
        for path in (root / ".git", root / ".repro", *spec.read_only):
            if path in seen or not os.path.lexists(path):
                continue
            seen.add(path)
            mounts.append(Mount(str(path), str(self.host_path(path)), type="bind", read_only=True))
        return mounts

    def run(self, spec: RunSpec, log: LogSink) -> int:
        docker = _import_docker()

        self.reap(spec.project_root)

        kwargs: dict[str, Any] = {
            "image": spec.image_id,
            "command": ["/bin/sh", "-c", spec.cmd],
            "user": f"{os.getuid()}:{os.getgid()}",
            "working_dir": str(spec.workdir),
            "network_mode": spec.network,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mounts": self._mounts(spec),
            "environment": {"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
            "labels": {"repro.stage": spec.name, "repro.project": str(spec.project_root)},
            "pids_limit": 4096,
            "detach": True,
        }
        res = spec.resources
        if res.cpus:
            kwargs["nano_cpus"] = int(res.cpus * 1e9)
        if res.memory:
            kwargs["mem_limit"] = res.memory
        if res.gpus:
            from docker.types import DeviceRequest

            count = -1 if res.gpus == "all" else int(res.gpus)
            kwargs["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
        try:
            container = self.client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            raise ReproError(
                f"image {spec.image_id[:19]}… vanished before the run; retry"
            ) from None
        except docker.errors.APIError as exc:
            raise ReproError(f"the Docker engine refused to create the container: {exc}") from None
        with self._lock:
            self._running[container.id] = container
        try:
            container.start()
            for chunk in container.logs(stream=True, follow=True):
                log(chunk)
            status = container.wait()
            return int(status.get("StatusCode", 1))
        finally:
            self._remove(container)

    def _remove(self, container: Any) -> None:
        docker = _import_docker()

        with self._lock:
            self._running.pop(container.id, None)
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    def reap(self, project_root: Path) -> int:
        """Remove containers a killed repro left behind for this project, once per runner.

        Called under the project lock, so no live repro of this project owns any of them; the
        runner's lock keeps parallel stages from starting until the reaping is done.
        """
        docker = _import_docker()

        with self._lock:
            if self._reaped:
                return 0
            self._reaped = True
            stale = self.client.containers.list(
                all=True, filters={"label": f"repro.project={project_root}"}
            )
            for container in stale:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
            return len(stale)

    def stop_all(self) -> None:
        with self._lock:
            running = list(self._running.values())
        for container in running:
            self._remove(container)
