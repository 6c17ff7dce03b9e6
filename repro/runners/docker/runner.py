"""Run stages in Docker containers through docker-py.

Each stage runs ``/bin/sh -c CMD`` in its pinned image ID, as the invoking uid:gid, with no
capabilities, no-new-privileges and no network unless asked, in the canonical environment
(runners/canonical.py): the project is bind-mounted at one fixed path, HOME is an empty tmpfs,
the host name is fixed, and /etc/passwd and /etc/group, mounted read-only from files made once
per image and user under .repro/tmp/accounts, name the caller's uid and gid. .git, .repro, the
declared deps and every other stage's outputs are mounted again read-only on top, because the
stage runs as the owner of those files and could chmod them. Only regular files and folders
that really lie inside the project are ever mounted.

Every container carries this process's session label, so that the reaper (reaper.py) removes
it should repro die without doing so itself. Images travel as ``docker save`` archives.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from repro import host
from repro.errors import ReproError
from repro.runners import canonical
from repro.runners.docker import engine
from repro.runners.docker.client import import_docker
from repro.runners.spec import Image, RunSpec

TYPE_CHECKING = False  # `repro status` makes a runner: it imports no more than it needs
if TYPE_CHECKING:
    from repro.runners.base import About, LogSink, Runner

ENGINE = "Docker engine"


def open_runner() -> Runner:
    """The Docker runner; no engine is contacted until it is used."""
    return DockerRunner()


class DockerRunner:
    def __init__(self) -> None:
        self._client: Any = None
        self._translate: Callable[[Path], Path] | None = None
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()  # guards _running and _stopped
        self._stopped = False
        self._reaped = False
        # Held while no stage may execute: by quiet(), and by run() around mount checks, create
        # and start. Reentrant so that the core may nest quiet() blocks.
        self._quiet_lock = threading.RLock()
        self._quiet_depth = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            docker = import_docker()
            try:
                client = docker.from_env(timeout=300)
                client.ping()
            except (docker.errors.DockerException, OSError) as exc:
                raise engine.unreachable(exc) from None
            self._client = client
        return self._client

    def about(self) -> About:
        from repro.runners.base import About
        from repro.runners.docker.engines import identify

        try:
            version = self.client.version()
            info = self.client.info()
        except ReproError as exc:
            return About(ENGINE, problem=str(exc))
        os_name, arch = version.get("Os"), version.get("Arch")
        found = identify(version, info, host.platform(), os.path.expanduser("~"))
        return About(
            ENGINE,
            f"{version.get('Version')} (API {version.get('ApiVersion')})",
            f"{os_name}/{arch}" if os_name and arch else None,
            product=found.product,
            shared=found.shared,
            rootless=found.rootless,
        )

    # -- images ------------------------------------------------------------------------------
    def resolver(self) -> Callable[[str], str | None]:
        """One HTTP request over the engine's unix socket per name, without docker-py (which
        is needed, and asked, for engines reached over TLS or ssh)."""
        if engine.socket_path() is not None:
            return engine.image_id
        return self.resolve

    def resolve(self, name: str) -> str | None:
        docker = import_docker()

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
        docker = import_docker()

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
        docker = import_docker()

        try:
            self.client.images.pull(reference)
        except docker.errors.DockerException as exc:
            first = str(exc).splitlines()[0][:200]
            raise ReproError(f"could not pull {reference}: {first}") from None

    def export_image(self, image_id: str, into: IO[bytes]) -> None:
        client = self.client
        try:
            image = client.images.get(image_id)
        except Exception:  # noqa: BLE001 - docker.errors without importing docker early
            raise ReproError(
                f"image {image_id[:19]}… is not on this host, so it cannot be pushed; "
                "reproduce the stage or docker load the image first"
            ) from None
        for chunk in image.save(named=False):
            into.write(chunk)

    def import_image(self, archive: IO[bytes]) -> None:
        self.client.images.load(archive)

    def tag(self, image_id: str, name: str) -> None:
        repository, tag = name, "latest"
        if ":" in name.rpartition("/")[2]:
            repository, _, tag = name.rpartition(":")
        client = self.client
        try:
            client.images.get(image_id).tag(repository, tag)
        except Exception:  # noqa: BLE001 - docker.errors; a name the engine refuses stays untagged
            return

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
        docker = import_docker()

        markers = ("/.dockerenv", "/run/.containerenv")  # Docker's, Podman's
        if not any(map(os.path.exists, markers)) and not os.environ.get("REPRO_IN_CONTAINER"):
            return None
        candidates = host.container_ids()
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
        view = spec.scratch or root
        mounts = [
            Mount(str(canonical.PROJECT), str(self.host_path(view)), type="bind", read_only=False)
        ]
        seen = {root}
        for path in (root / ".git", root / ".repro", *spec.read_only):
            target = mount_target(root, path)
            if target is None or target in seen:
                continue
            seen.add(target)
            inside = canonical.inside(root, target)
            mounts.append(
                Mount(str(inside), str(self.host_path(target)), type="bind", read_only=True)
            )
        return mounts

    def run(self, spec: RunSpec, log: LogSink) -> int:
        # Only here: the reaper's imports (subprocess, secrets) would slow `repro status`,
        # which makes a runner to ask for image IDs.
        from repro.runners.docker import reaper

        self.reap(spec.project_root)

        uid, gid = os.getuid(), os.getgid()
        kwargs: dict[str, Any] = {
            "image": spec.image_id,
            "command": canonical.command(spec.cmd),
            "user": f"{uid}:{gid}",
            "working_dir": str(canonical.inside(spec.project_root, spec.workdir)),
            "network_mode": spec.network,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "environment": canonical.variables(spec.source_date_epoch, spec.env),
            "hostname": canonical.HOSTNAME,
            "tmpfs": {str(canonical.HOME): f"uid={uid},gid={gid},mode=0700,exec"},
            "labels": {
                "repro.stage": spec.name,
                "repro.project": str(spec.project_root),
                reaper.SESSION_LABEL: reaper.session(),
            },
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
        # Labelled for the reaper alone: it never starts, so it is no stage of the project.
        accounts = self._accounts(spec, uid, gid, {reaper.SESSION_LABEL: reaper.session()})
        # With the other stages paused, none of them can swap a checked path for a symlink
        # before the engine mounts it.
        with self.quiet():
            kwargs["mounts"] = self._mounts(spec) + accounts
            container = self._create(spec, kwargs)
            self._start(container)
        try:
            for chunk in container.logs(stream=True, follow=True):
                log(chunk)
            status = container.wait()
            return int(status.get("StatusCode", 1))
        finally:
            self._remove(container)

    def _create(self, spec: RunSpec, kwargs: dict[str, Any]) -> Any:
        docker = import_docker()

        with self._lock:
            stopped = self._stopped
        if stopped:
            raise ReproError("the run was stopped; no new stage starts")
        try:
            container = self.client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            raise ReproError(
                f"image {spec.image_id[:19]}… vanished before the run; retry"
            ) from None
        except docker.errors.APIError as exc:
            raise _refusal("create", exc) from None
        with self._lock:
            self._running[container.id] = container
            stopped = self._stopped
        if stopped:  # stop_all ran between our check and now, and did not see this one
            self._remove(container)
            raise ReproError("the run was stopped; no new stage starts")
        return container

    def _accounts(self, spec: RunSpec, uid: int, gid: int, labels: dict[str, str]) -> list[Any]:
        """Read-only mounts of the /etc/passwd and /etc/group the stage sees (canonical.account).

        Made from the image's own, read through a container created and removed for it, once
        per image and user: writing them into each stage's container instead costs the engine
        80 ms a stage, a mount nothing.
        """
        from docker.types import Mount

        from repro.fsutil import write_atomic

        folder = spec.project_root / ".repro" / "tmp" / "accounts"
        folder = folder / f"{spec.image_id.rpartition(':')[2][:32]}-{uid}-{gid}"
        files = {"passwd": folder / "passwd", "group": folder / "group"}
        if not all(path.is_file() for path in files.values()):
            reader = self.client.containers.create(spec.image_id, ["true"], labels=labels)
            try:
                tables = canonical.account(
                    _read_file(reader, "/etc/passwd"), _read_file(reader, "/etc/group"), uid, gid
                )
            finally:
                reader.remove(force=True)
            folder.mkdir(parents=True, exist_ok=True)
            for path, text in zip(files.values(), tables, strict=True):
                write_atomic(path, text.encode(), mode=0o644)
        return [
            Mount(f"/etc/{name}", str(self.host_path(path)), type="bind", read_only=True)
            for name, path in files.items()
        ]

    def _start(self, container: Any) -> None:
        docker = import_docker()

        try:
            container.start()
        except docker.errors.APIError as exc:
            self._remove(container)
            raise _refusal("start", exc) from None
        except BaseException:
            self._remove(container)
            raise

    def _remove(self, container: Any) -> None:
        docker = import_docker()

        with self._lock:
            self._running.pop(container.id, None)
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """While inside, no stage process of this runner executes: running containers are
        paused (cgroup freezer) and none is created or started."""
        with self._quiet_lock:
            outermost = self._quiet_depth == 0
            self._quiet_depth += 1
            try:
                paused = self._pause_all() if outermost else []
                try:
                    yield
                finally:
                    if paused:
                        self._unpause(paused)
            finally:
                self._quiet_depth -= 1

    def _pause_all(self) -> list[Any]:
        with self._lock:
            running = list(self._running.values())
        if not running:
            return []  # the usual case: no API call
        docker = import_docker()
        paused = []
        for container in running:
            try:
                container.pause()
            except docker.errors.NotFound:
                continue  # removed meanwhile (Ctrl-C, or it finished)
            except docker.errors.APIError as exc:
                # "not running" (dockerd) or "a stopped container" (containerd): it exited
                # between the listing and the pause, as the engine says before its state
                # shows it.
                said = _first_line(exc)
                exited = "not running" in said or "stopped container" in said
                if not exited and _still_running(container):
                    raise ReproError(
                        f"could not pause stage container {container.short_id} to check the "
                        f"workspace safely: {said}; retry without -j"
                    ) from None
                continue  # it exited: it writes nothing more
            paused.append(container)
        return paused

    def _unpause(self, paused: list[Any]) -> None:
        docker = import_docker()

        for container in paused:
            # Removed meanwhile (Ctrl-C): nothing to resume.
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.unpause()

    def reap(self, project_root: Path) -> int:
        """Remove containers a killed repro left behind for this project, once per runner.

        Called under the project lock, so no live repro of this project owns any of them; the
        runner's lock keeps parallel stages from starting until the reaping is done.
        """
        docker = import_docker()

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
            self._stopped = True
            running = list(self._running.values())
        for container in running:
            self._remove(container)


def _read_file(container: Any, path: str) -> str:
    """The text of a file of a container's image; empty when the image has none."""
    import io
    import tarfile

    docker = import_docker()
    try:
        chunks, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        member = archive.next()
        if member is None or not member.isfile():  # a link to elsewhere: the stage's own entries
            return ""
        handle = archive.extractfile(member)
        return handle.read().decode("utf-8", "replace") if handle is not None else ""


def _still_running(container: Any) -> bool:
    try:
        container.reload()
    except Exception:  # noqa: BLE001 - gone, or the engine is: either way not running
        return False
    return bool(container.status in ("running", "paused"))


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def _refusal(step: str, exc: Exception) -> ReproError:
    """An engine's refusal to create or start a stage's container, with what to do about it."""
    reason = _first_line(exc)
    lowered = reason.lower()
    if ("device driver" in lowered and "gpu" in lowered) or "nvidia" in lowered:
        return ReproError(
            f"the Docker engine has no GPU support ({reason}); drop --gpus or install the "
            "NVIDIA container toolkit on this host and restart the engine"
        )
    if "mounts denied" in lowered or "bind source path does not exist" in lowered:
        # Docker Desktop, Colima, Podman machine: the engine's VM does not share the folder.
        hint = (
            "the engine runs in a VM that does not share the project's folder; move the "
            "project under a folder it shares, or share this one (repro doctor names them)"
        )
    elif "memory" in lowered:
        hint = "give the stage more memory (--memory) or drop the limit"
    elif "cpu" in lowered:
        hint = "give the stage at most as many CPUs as the host has (--cpus)"
    else:
        hint = "check the stage's image, resources and network, and retry"
    return ReproError(
        f"the Docker engine refused to {step} the stage's container ({reason}); {hint}"
    )


# -- what may be mounted ---------------------------------------------------------------------
def _kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file or folder"


def mount_target(root: Path, path: Path) -> Path | None:
    """Where ``path`` really is, under ``root``, if it may be bind-mounted into a stage; None
    when it does not exist. Refuses sockets, devices, FIFOs and anything outside the project,
    however reached: the engine follows symlinks in a mount's source on the host."""
    from repro.paths import is_within, real_root

    base = real_root(root)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ReproError(
            f"refusing to mount {path} into a stage: it lies outside the project {root}"
        ) from None
    shown = path.relative_to(root).as_posix()
    current = base
    for index, part in enumerate(parts):
        step = os.path.join(current, part)
        try:
            mode = os.lstat(step).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # a symlink loop
            raise ReproError(
                f"refusing to mount '{shown}' into a stage: {exc.strerror}; remove the link"
            ) from None
        if stat.S_ISLNK(mode):
            resolved = os.path.realpath(step)
            if not is_within(resolved, base):
                link = "/".join(parts[: index + 1])
                via = (
                    "it is a symlink"
                    if index == len(parts) - 1
                    else f"its parent '{link}' is a symlink"
                )
                raise ReproError(
                    f"refusing to mount '{shown}' into a stage: {via} leading out of the project "
                    f"(to {resolved}); remove the link or use a path inside the project"
                )
            step = resolved
        current = step
    if ".." in parts or not is_within(os.path.realpath(current), base):
        raise ReproError(
            f"refusing to mount '{shown}' into a stage: it lies outside the project; "
            "use a path inside the project"
        )
    try:
        mode = os.lstat(current).st_mode
    except FileNotFoundError:
        return None  # a dangling link inside the project: nothing to mount
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ReproError(
            f"refusing to mount '{shown}' into a stage: it is {_kind(mode)}, which a stage must "
            "never reach; remove it from the stage's deps and outputs"
        )
    return root / os.path.relpath(current, base)
