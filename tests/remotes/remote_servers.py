"""Real servers for the remote tests, on loopback: a private OpenSSH server with throwaway keys
(and the ~/.ssh setup a user would write for it), and buckets on an S3 endpoint.

These are plain helpers, imported by the tests and by conftest.py (which keeps only fixtures).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
SSH_ALIAS = "repro-test-sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "repro-test", "-f", str(path)],
        check=True,
    )
    return path


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    user_key: Path
    host_public_key: str  # "ssh-ed25519 AAAA…"
    pid: int = 0  # the listening sshd; each connection is a child of it
    log: list[str] = field(default_factory=list, compare=False)

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}\n"


def start_server(command: list[str], ready: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a server that logs on stderr; return once it logs ``ready``, with its log so far.

    The log keeps growing from a thread: a server that logs every request would otherwise
    block on a full pipe.
    """
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    log: list[str] = []
    for line in process.stderr:
        log.append(line)
        if ready in line:
            break
    else:
        process.wait()
        pytest.fail(f"{command[0]} did not start:\n{''.join(log)}")
    threading.Thread(target=lambda: log.extend(process.stderr or []), daemon=True).start()
    return process, log


@contextmanager
def running_sshd(
    folder: Path, extra_config: str = "", user: str | None = None, port: int | None = None
) -> Iterator[SshServer]:
    """A real OpenSSH server on 127.0.0.1 that accepts only a throwaway key, for ``user``
    (the current one by default). Keys already in ``folder`` are reused, so a server can be
    started again on the same ``port`` as the same host."""
    if not SSHD.exists():
        pytest.skip("no /usr/sbin/sshd: run scripts/ensure-test-services.sh")
    if os.geteuid() == 0:
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    host_key = folder / "host_key"
    user_key = folder / "user_key"
    if not host_key.exists():
        keygen(host_key)
        keygen(user_key)
        # sshd reads it as the user who logs in.
        shutil.copy(folder / "user_key.pub", folder / "authorized_keys")
    config = folder / "sshd_config"
    for _attempt in range(5):
        chosen = port or free_port()
        config.write_text(
            f"Port {chosen}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {folder}/sshd.pid\n"
            f"AuthorizedKeysFile {folder}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nMaxStartups 100\n"
            f"LogLevel INFO\n{extra_config}"
        )
        try:
            # sshd says when it listens; wait for that line rather than polling the port.
            command = [str(SSHD), "-D", "-e", "-f", str(config)]
            process, log = start_server(command, "Server listening")
            break
        except pytest.fail.Exception as failed:
            # A port picked free here may be taken (an outgoing connection's) before sshd binds.
            if port or "Address already in use" not in str(failed):
                raise
    else:
        pytest.fail("sshd found no free port in five tries")
    try:
        yield SshServer(
            port=chosen,
            user=user or getpass.getuser(),
            user_key=user_key,
            host_public_key=" ".join((folder / "host_key.pub").read_text().split()[:2]),
            pid=process.pid,
            log=log,
        )
    finally:
        # A test that failed while the server was stopped must not leave it stopped: a stopped
        # process takes no SIGTERM, and its sessions would hold logins on this machine.
        resume([process.pid, *descendants(process.pid)])
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):  # a process that ended meanwhile
            parent = int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat_file.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_server(server: SshServer) -> list[int]:
    """SIGSTOP the server and every session it runs; the pids stopped (the listener first, so
    that it forks no session meanwhile; a session that ended meanwhile is skipped)."""
    os.kill(server.pid, signal.SIGSTOP)
    stopped = [server.pid]
    for pid in descendants(server.pid):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    return stopped


def resume(pids: list[int]) -> None:
    """SIGCONT what ``stop_server`` stopped (a process that ended meanwhile is skipped)."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def cut_connections(server: SshServer, listener_too: bool = False) -> int:
    """SIGKILL the processes serving the server's connections (and the listener itself);
    return how many there were."""
    # Stopped, the listener forks no new session while we look for them; and killed only
    # after them, since its orphans would no longer be its descendants.
    os.kill(server.pid, signal.SIGSTOP)
    sessions = descendants(server.pid)
    for pid in sessions:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.kill(server.pid, signal.SIGKILL if listener_too else signal.SIGCONT)
    return len(sessions)


def logins(server: SshServer) -> int:
    return sum("Accepted publickey" in line for line in server.log)


def trust_sshd(home: Path, server: SshServer) -> None:
    """Record the server's host key and an ~/.ssh/config alias for it, as a user would."""
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts_line())
    (home / ".ssh" / "config").write_text(
        f"Host {SSH_ALIAS}\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.user_key}\n"
    )


def make_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"repro-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return bucket


@contextmanager
def running_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, a real HTTP endpoint for boto3: its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
