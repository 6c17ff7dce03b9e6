"""Which product answers on the Docker API, and what differs when it runs in a VM.

Docker Desktop, Colima, OrbStack and Podman all speak the Docker API, but only a native
Docker Engine on Linux sees every host path: the others run containers in a VM that shares
a few host folders with it, so a bind-mount source elsewhere fails. Rootless engines (rootless
Docker, rootless Podman) map the container's uid 0 to the user. ``repro doctor`` reports all
of it; the facts are gathered here, from what ``docker version`` and ``docker info`` return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

# Host folders each VM shares with its containers by default, on each host platform;
# absent: every path (a native engine, OrbStack, WSL2's integration, which shares the
# distro's own files and /mnt/c). "~" is the user's home.
_SHARED: dict[tuple[str, str], tuple[str, ...]] = {
    ("Docker Desktop", "macOS"): ("/Users", "/Volumes", "/private", "/tmp", "/var/folders"),
    ("Docker Desktop", "Linux"): ("~",),
    ("Colima", "macOS"): ("~", "/tmp/colima"),
    ("Colima", "Linux"): ("~", "/tmp/colima"),
    ("Podman", "macOS"): ("~", "/private", "/var/folders"),
}


class Engine(NamedTuple):
    """What answers on the Docker API, as its users name it, and how it reaches host files."""

    product: str  # Docker Engine, Docker Desktop, Colima, OrbStack, Podman
    shared: tuple[str, ...] | None  # host folders bind mounts may come from; None: any
    rootless: bool  # container uid 0 is the user; other uids are the user's subordinate ids


def identify(
    version: Mapping[str, Any], info: Mapping[str, Any], platform: str, home: str
) -> Engine:
    """The engine behind answers to ``docker version`` and ``docker info``, on a host of
    ``platform`` (host.platform()) whose user's home is ``home``."""
    components = {str(c.get("Name", "")) for c in version.get("Components") or ()}
    system = str(info.get("OperatingSystem", ""))
    name = str(info.get("Name", ""))
    if any(c.startswith("Podman") for c in components):
        product = "Podman"
    elif system.startswith("Docker Desktop"):
        product = "Docker Desktop"
    elif system.startswith("OrbStack") or name == "orbstack":
        product = "OrbStack"
    elif name == "colima" or name.startswith("colima-"):
        product = "Colima"
    else:
        product = "Docker Engine"
    security = info.get("SecurityOptions") or ()
    rootless = any("name=rootless" in str(option) for option in security)
    shared = _SHARED.get((product, platform))
    if shared is not None:
        shared = tuple(home if folder == "~" else folder for folder in shared)
    return Engine(product, shared, rootless)
