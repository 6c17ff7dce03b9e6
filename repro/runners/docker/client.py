"""docker-py, imported only when a Docker engine is needed, and without its SSH support.

docker.transport skips its SSH adapter when paramiko fails to import; that import alone costs
0.12 s, so for a local engine it is made to fail for that one import (paramiko stays
importable for repro's SSH remotes).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def import_docker() -> Any:
    """The docker module, for an engine reached over ssh:// with paramiko, else without."""
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
