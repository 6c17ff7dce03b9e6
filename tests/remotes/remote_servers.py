"""Real servers for the remote tests, on loopback: a private OpenSSH server with throwaway keys
(and the ~/.ssh setup a user would write for it), buckets on an S3 endpoint, and a front to an
S3 endpoint that misbehaves on purpose.

These are plain helpers, imported by the tests and by conftest.py (which keeps only fixtures).
"""

from __future__ import annotations

import datetime
import getpass
import http.client
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


# Bytes a second on each connection of a "slow" front: a hundredth of what md5 hashes on one core.
SLOW_RATE = 4 << 20
# Of a "trickle" front: never silent long enough to time out, never done in a test's time.
TRICKLE_RATE = 128 << 10


@contextmanager
def hostile_front(
    upstream: str,
    tamper: str,
    ranges: list[str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[str]:
    """An S3 endpoint forwarding every request to ``upstream``, its answers to GETs changed as
    ``tamper`` says: "no-etag", "chunked" (no Content-Length), "whole" (ranges ignored),
    "slow" (SLOW_RATE bytes a second on each connection), "trickle" (TRICKLE_RATE: never
    silent, never done) or "bad-tls" (half the body, then a TLS record that is garbage). The
    Range of each GET is added to ``ranges`` ("" for none). ``tls``: the certificate and key
    it answers HTTPS with."""
    target = urlsplit(upstream)

    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = dict(self.headers.items())
            get = self.command == "GET"
            if get and ranges is not None:
                ranges.append(self.headers.get("Range", ""))
            if get and tamper == "whole":
                headers.pop("Range", None)
            connection = http.client.HTTPConnection(target.hostname or "", target.port)
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            connection.close()
            self.send_response(answer.status)
            dropped = {"transfer-encoding", "connection", "content-length"}
            if get and tamper == "no-etag":
                dropped.add("etag")
            for name, value in answer.getheaders():
                if name.lower() not in dropped:
                    self.send_header(name, value)
            if get and tamper == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            rate = {"slow": SLOW_RATE, "trickle": TRICKLE_RATE}.get(tamper) if get else None
            if rate is not None:
                for start in range(0, len(data), rate // 10):
                    self.wfile.write(data[start : start + rate // 10])
                    time.sleep(0.1)
                return
            if get and tamper == "bad-tls":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                # Application data, TLS 1.2 framing, 32 bytes no key decrypts.
                os.write(self.connection.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = forward

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client dropping a part it no longer wants is no failure here

    server = Server(("127.0.0.1", 0), Front)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, signed by its own key, and the key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
