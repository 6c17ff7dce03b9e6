#!/usr/bin/env python3
"""The busybox image that the tests and the benchmarks run their stages in, built offline.

    scripts/busybox-image.py TAG     import the image as TAG and print its ID

One static busybox binary, a link for each tool a stage calls, /tmp and /etc: an image of
2 MB that any Docker engine imports without a registry. tests/helpers.py and
benchmarks/machine.py both run this file, so what the tests check and what the benchmarks
measure run in the same image. It is a script beside the others that prepare a machine
(ensure-tools.sh installs busybox-static): neither tests/ nor benchmarks/ is a package the
other can import, and both must work from a clean checkout, the benchmarks with the standard
library only.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence

TOOLS = [
    "sh",
    "cat",
    "cp",
    "echo",
    "ls",
    "mkdir",
    "sort",
    "true",
    "false",
    "sleep",
    "md5sum",
    "chmod",
    "rm",
    "touch",
    "ip",
    "ifconfig",
    "id",
    "wc",
    "head",
    "tail",
    "seq",
    "mv",
    "ln",
    "date",
    "test",
    "grep",
    "sed",
    "env",
    "stat",
    "dd",
    "yes",
    "printf",
    "chown",
    "kill",
]


def rootfs(busybox: str) -> bytes:
    """The image's only layer, as a tar: the folders, busybox, and a link per tool to it."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for folder, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for tool in TOOLS:
            info = tarfile.TarInfo(f"bin/{tool}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return layer.getvalue()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: scripts/busybox-image.py TAG", file=sys.stderr)
        return 2
    busybox = shutil.which("busybox")
    if busybox is None:
        print(
            "busybox-image: error: busybox is not installed "
            "(scripts/ensure-tools.sh busybox installs busybox-static)",
            file=sys.stderr,
        )
        return 1
    done = subprocess.run(
        ["docker", "import", "-", argv[0]], input=rootfs(busybox), capture_output=True
    )
    if done.returncode != 0:
        print(f"busybox-image: error: {done.stderr.decode().strip()}", file=sys.stderr)
        return 1
    print(done.stdout.decode().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
