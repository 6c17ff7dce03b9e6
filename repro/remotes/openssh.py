"""The OpenSSH client, for streams of many objects: ``ssh HOST 'tar …'``.

paramiko decrypts every byte in Python (tens of MB/s) and SFTP costs a round trip or more per
object; OpenSSH's client does its cryptography in C, and one ``tar`` stream carries thousands of
objects. It is used only where it connects exactly as the paramiko path does: the same host,
port, user, identity files and proxy command, host keys checked strictly against the same
known_hosts files, no password and no prompt (BatchMode), nothing of ``~/.ssh/config`` but what
``ssh.resolve_target`` already read from it. Anything else goes the paramiko way.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

TYPE_CHECKING = False
if TYPE_CHECKING:
    from repro.remotes.ssh import Target

# Host and user names that cannot be taken for an option or split into user@host.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9_.:-]+|\[[0-9A-Fa-f:.]+\]")
_PLAIN_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
# The identities paramiko tries when told none (OpenSSH would read them from the passwd
# entry's home, not from $HOME as paramiko does).
_DEFAULT_KEYS = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")
# What OpenSSH's client exits with when it, not the remote command, failed.
CLIENT_FAILED = 255
# Writes to ssh gather this much: a pipe write per small object would cost ssh a packet each.
_PIPE_BUFFER = 1 << 20
# Of the remote side's stderr, only the start is kept, for an error message.
_STDERR_KEPT = 4096


def command_line(target: Target, remote_command: str) -> list[str] | None:
    """``ssh`` running ``remote_command`` on the target, or None where OpenSSH's client would
    not connect as paramiko does (none installed, a password, names it would parse)."""
    client = shutil.which("ssh")
    if client is None or target.password is not None:
        return None
    if not _PLAIN_HOST.fullmatch(target.hostname) or not _PLAIN_USER.fullmatch(target.user):
        return None
    keys = list(target.key_files)
    keys += [str(p) for p in (Path(f"~/.ssh/{k}").expanduser() for k in _DEFAULT_KEYS)]
    keys = [k for k in dict.fromkeys(keys) if Path(k).is_file()]
    values = [*keys, *target.known_hosts_files, target.proxy_command or ""]
    # ssh's option parser splits on blanks and reads quotes and %-tokens: keep to plain values.
    if any(c in value for value in values for c in '"%\n'):
        return None
    if any(" " in k for k in keys):
        return None
    known = " ".join(f'"{k}"' if " " in k else k for k in target.known_hosts_files)
    timeout = max(1, math.ceil(target.timeout))
    argv = [
        client,
        "-F",
        "/dev/null",
        "-T",
        "-x",
        "-a",
        "-p",
        str(target.port),
        "-l",
        target.user,
    ]
    options = {
        "BatchMode": "yes",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": known or "none",
        "GlobalKnownHostsFile": "none",  # /etc/ssh/ssh_known_hosts is among the files above
        "UpdateHostKeys": "no",
        "ConnectTimeout": str(timeout),
        # The transport's own check, beside the stream watchdog of ``Session``.
        "ServerAliveInterval": str(timeout),
        "ServerAliveCountMax": "2",
        "ControlMaster": "no",
        "ControlPath": "none",
        "ClearAllForwardings": "yes",
        "PermitLocalCommand": "no",
        "LogLevel": "ERROR",
    }
    if target.proxy_command:
        options["ProxyCommand"] = target.proxy_command
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    for key in keys:
        argv += ["-i", key]
    return [*argv, "--", target.hostname, remote_command]


class Silent(Exception):
    """The stream moved no byte for the timeout: the server or the link stopped answering."""


class Session:
    """``ssh`` running one remote command, its stdin and stdout pipes to the caller, killed
    once nothing moved on them for ``timeout`` seconds (the caller says when something did,
    with ``touch``). Its stderr is drained in the background, the start of it kept."""

    def __init__(self, argv: Sequence[str], timeout: float, armed: bool = True) -> None:
        self._timeout = timeout
        self._last = time.monotonic()
        self._armed = armed  # a session started ahead waits, silent, until it is used
        self.silent = False
        self._stderr = bytearray()
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=_PIPE_BUFFER,
            start_new_session=True,  # a Ctrl-C is the caller's to handle, not ssh's
        )
        self._done = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    @property
    def stdin(self) -> IO[bytes]:
        assert self._process.stdin is not None
        return self._process.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self._process.stdout is not None
        return self._process.stdout

    def touch(self, _amount: int = 0) -> None:
        self._last = time.monotonic()

    def arm(self) -> None:
        """From now on, silence counts."""
        self.touch()
        self._armed = True

    def _drain(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            if len(self._stderr) < _STDERR_KEPT:
                self._stderr += chunk[: _STDERR_KEPT - len(self._stderr)]

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self._timeout / 4)):
            if self._armed and time.monotonic() - self._last > self._timeout:
                self.silent = True
                self._process.kill()
                return

    def stderr_line(self) -> str:
        """The first line the remote side or ssh wrote on stderr."""
        lines = bytes(self._stderr).decode(errors="replace").strip().splitlines()
        return lines[0] if lines else "no message"

    def wait(self) -> int:
        """The exit status, once the remote command ended (bounded by the watchdog: the
        caller closes the command's input first)."""
        try:
            while True:
                try:
                    return self._process.wait(timeout=0.25)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            self._done.set()

    def close(self) -> None:
        """End it, whatever state it is in."""
        self._done.set()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with suppress(OSError, ValueError):  # a pipe its reader closed
                    stream.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
