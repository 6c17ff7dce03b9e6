"""One stage container, with or without the canonical environment: the A/B of its cost.

``canonical`` runs ``true`` through repro's own Docker runner, in the environment every stage
gets (the project at /project, HOME a tmpfs, a fixed host name, /etc/passwd and /etc/group
mounted, SOURCE_DATE_EPOCH). ``plain`` makes the same engine calls with the options stages had
before that environment: the project at its host path, HOME=/tmp, nothing else mounted. Both
import the same modules, so the difference is what the environment costs the engine.

Usage: python3 canonical_probe.py canonical|plain PROJECT IMAGE
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from repro.runners.docker.runner import DockerRunner
from repro.runners.spec import Resources, RunSpec


def plain(runner: DockerRunner, project: Path, image: str) -> int:
    from docker.types import Mount

    container = runner.client.containers.create(
        image=image,
        command=["/bin/sh", "-c", "true"],
        user=f"{os.getuid()}:{os.getgid()}",
        working_dir=str(project),
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
        labels={"repro.stage": "probe"},
        pids_limit=4096,
        detach=True,
        mounts=[Mount(str(project), str(project), type="bind")],
    )
    try:
        container.start()
        for _ in container.logs(stream=True, follow=True):
            pass
        return int(container.wait().get("StatusCode", 1))
    finally:
        container.remove(force=True)


def canonical(runner: DockerRunner, project: Path, image: str) -> int:
    image_id = str(runner.client.images.get(image).id)
    spec = RunSpec("probe", "true", image_id, project, project, "none", (), Resources())
    return runner.run(spec, lambda _chunk: None)


def main() -> int:
    mode, project, image = sys.argv[1], Path(sys.argv[2]).resolve(), sys.argv[3]
    runner = DockerRunner()
    return (canonical if mode == "canonical" else plain)(runner, project, image)


if __name__ == "__main__":
    sys.exit(main())
