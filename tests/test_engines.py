"""Which engine answers on the Docker API (repro/runners/docker/engines.py).

Only Docker Engine on Linux runs here; the other engines' answers are the fields each is
documented to set in `docker version` / `docker info` (simulated, not run: see README).
"""

from __future__ import annotations

from typing import Any

import pytest

from repro.runners.base import About
from repro.runners.docker.engines import Engine, identify
from repro.runners.docker.runner import _refusal

ENGINE_VERSION = {"Components": [{"Name": "Engine"}, {"Name": "containerd"}]}
HOME = "/Users/ada"


@pytest.mark.parametrize(
    ("version", "info", "platform", "expected"),
    [
        (ENGINE_VERSION, {"OperatingSystem": "Debian GNU/Linux 12 (bookworm)"}, "Linux",
         Engine("Docker Engine", None, False)),
        (ENGINE_VERSION, {"OperatingSystem": "Ubuntu 22.04", "SecurityOptions":
         ["name=seccomp,profile=builtin", "name=rootless"]}, "Linux",
         Engine("Docker Engine", None, True)),
        (ENGINE_VERSION, {"OperatingSystem": "Docker Desktop", "Name": "docker-desktop"},
         "macOS", Engine("Docker Desktop",
                         ("/Users", "/Volumes", "/private", "/tmp", "/var/folders"), False)),
        (ENGINE_VERSION, {"OperatingSystem": "Docker Desktop"}, "WSL2",
         Engine("Docker Desktop", None, False)),
        (ENGINE_VERSION, {"OperatingSystem": "Ubuntu 24.04 LTS", "Name": "colima"}, "macOS",
         Engine("Colima", (HOME, "/tmp/colima"), False)),
        (ENGINE_VERSION, {"OperatingSystem": "OrbStack", "Name": "orbstack"}, "macOS",
         Engine("OrbStack", None, False)),
        ({"Components": [{"Name": "Podman Engine"}]}, {"OperatingSystem": "fedora",
         "SecurityOptions": ["name=rootless"]}, "Linux", Engine("Podman", None, True)),
        ({"Components": [{"Name": "Podman Engine"}]}, {"OperatingSystem": "fedora"}, "macOS",
         Engine("Podman", (HOME, "/private", "/var/folders"), False)),
    ],
)  # fmt: skip
def test_each_engine_is_named_with_what_it_shares(
    version: dict[str, Any], info: dict[str, Any], platform: str, expected: Engine
) -> None:
    assert identify(version, info, platform, HOME) == expected


def test_a_path_outside_the_shared_folders_cannot_be_mounted() -> None:
    desktop = About("Docker engine", shared=("/Users", "/tmp"))
    assert desktop.shares("/Users/ada/proj")
    assert desktop.shares("/tmp")
    assert not desktop.shares("/Usersx/proj")
    assert not desktop.shares("/opt/proj")
    assert About("Docker engine").shares("/opt/proj")  # a native engine: every path


@pytest.mark.parametrize(
    "explanation",
    [
        # Docker Desktop's words when a bind-mount source is not shared with its VM
        "Mounts denied: \nThe path /opt/proj is not shared from the host and is not known to "
        "Docker.\nYou can configure shared paths from Docker -> Preferences... -> Resources",
        # an engine in a VM that does not have the path at all (Colima, Podman machine)
        'invalid mount config for type "bind": bind source path does not exist: /opt/proj',
    ],
)
def test_a_mount_the_vm_does_not_share_is_one_line_saying_so(explanation: str) -> None:
    import docker

    refused = docker.errors.APIError("500 Server Error", explanation=explanation)
    message = str(_refusal("create", refused))
    assert "\n" not in message
    assert message.endswith(
        "the engine runs in a VM that does not share the project's folder; move the project "
        "under a folder it shares, or share this one (repro doctor names them)"
    )
