"""An S3 endpoint that accepts connections and never answers: a moto server of its own,
SIGSTOPped in the middle of a push. The push must fail in one line within the documented
bound, and the next push, once the server runs again, must complete."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import Project, make_tree
from remotes.remote_helpers import start_push
from remotes.remote_servers import free_port, make_bucket

from repro.remotes import s3

TIMEOUT = 1  # seconds: the remote's option, small to keep the test short
FILES = 400  # enough that the push is still running when the server stops


@pytest.fixture
def moto_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """moto's S3 server in a process of its own, which a signal can stop."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto_server did not start") from None
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.wait()


def test_a_stopped_endpoint_fails_the_push_in_one_line_then_the_next_push_completes(
    project: Project, moto_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    server, endpoint = moto_process
    bucket = make_bucket(endpoint)
    make_tree(project.root / "data", FILES, folders=10, size=64, seed=7)
    project.ok("add", "data")
    project.ok("remote", "add", "-d", "store", f"s3://{bucket}/store")
    project.ok("remote", "modify", "store", "endpointurl", endpoint)
    project.ok("remote", "modify", "store", "timeout", str(TIMEOUT))
    client = boto3.client("s3", endpoint_url=endpoint)

    push = start_push(
        project, lambda: bool(client.list_objects_v2(Bucket=bucket, MaxKeys=1)["KeyCount"])
    )
    os.kill(server.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    out, err = push.communicate(timeout=120)
    waited = time.monotonic() - stopped

    assert push.returncode == 1, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert f"S3 endpoint {endpoint} did not answer within {TIMEOUT} s" in err
    # The documented bound (s3.py): every attempt of a request waits a second for the go-ahead
    # and then times out, with the backoff between; two seconds of slack for a loaded machine.
    assert waited < s3.ATTEMPTS * (TIMEOUT + 1) + 3 + 2, f"took {waited:.1f} s"

    os.kill(server.pid, signal.SIGCONT)
    project.ok("push")
    stored = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    assert sum(page.get("KeyCount", 0) for page in stored) == FILES + 1  # and the manifest


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "1e12"])
def test_a_timeout_that_is_no_positive_number_is_refused(
    project: Project, s3_endpoint: str, value: str, tmp_path: Path
) -> None:
    (project.root / "data.txt").write_text("data\n")
    project.ok("add", "data.txt")
    project.ok("remote", "add", "-d", "store", f"s3://{make_bucket(s3_endpoint)}/x")
    project.ok("remote", "modify", "store", "endpointurl", s3_endpoint)
    project.ok("remote", "modify", "store", "timeout", value)
    result = project.repro("push")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert f"timeout={value!r} is not a number of seconds" in result.err
