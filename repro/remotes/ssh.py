"""A remote on another host, over SFTP (paramiko).

Connection settings come, first match wins, from the repro config options, the URL,
``~/.ssh/config`` (Host, HostName, User, Port, IdentityFile, ProxyCommand) and the defaults.
Keys come from the ssh agent, the configured identity files and ``~/.ssh/id_*``. Host keys are
checked against ``~/.ssh/known_hosts`` (and ``/etc/ssh/ssh_known_hosts``); an unknown host is
refused, never added, so a first connection cannot be silently intercepted.

A connection that drops after it worked (sshd restarted, a flaky link) is re-established and
the operation repeated a few times with growing pauses; every operation is idempotent since
uploads are renamed into place. A server that stops answering (stopped, hung, a link that
silently lost its packets) counts as dropped once it has sent nothing for ``timeout`` seconds
(the remote's ``timeout`` option, default 30): connecting, logging in and every request wait
at most that long, so the whole operation gives up after at most
``len(RETRY_DELAYS) + 1`` × ``timeout`` + ``sum(RETRY_DELAYS)`` seconds. A first connection
that fails, an authentication or host key problem, and a refusal by the server (permission
denied) fail at once.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import os
import posixpath
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.config import SSHConfig, SSHConfigDict
from paramiko.ssh_exception import ConfigParseError, SSHException

from repro.errors import RemoteError, ReproError
from repro.fsutil import is_temp, temp_name
from repro.remotes import common, openssh

# OpenSSH's sshd allows 10 sessions per connection by default (MaxSessions); stay below it,
# with the SFTP channels and the streams together.
MAX_CHANNELS = 8
MAX_STREAMS = 2
# Seconds without a word from the server before its connection counts as dropped.
DEFAULT_TIMEOUT = 30.0
# Objects this big or bigger are read as a stream from ``cat`` on the server when it runs
# commands: SFTP answers each 32 KiB read on its own, and paramiko's read-ahead slows down
# with the square of the reads in flight (193 s for 1 GiB on loopback, the stream 12 s).
STREAM_ABOVE = 1 << 20
STREAM_CHUNK = 1 << 20
# SFTP reads are at most 32 KiB; reading in bigger chunks only adds copying.
SFTP_CHUNK = 32 << 10
# What the server must print for streams to be used: it runs commands through a shell.
STREAM_PROBE = "printf repro-stream"
# What a dropped connection raises; an SFTP status error (a plain OSError) leaves a channel usable.
_BROKEN = (SSHException, EOFError, ConnectionError, TimeoutError)
# Seconds to wait before each retry once the connection dropped: five attempts in all and
# 7.5 s of waiting at most, long enough for sshd to restart or a link to come back.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
# After a failed reconnect the other threads wait this long before trying one themselves.
RECONNECT_GAP = 0.25
SSH_CONFIG = Path("~/.ssh/config")
KNOWN_HOSTS = (Path("~/.ssh/known_hosts"), Path("/etc/ssh/ssh_known_hosts"))
T = TypeVar("T")

# paramiko logs a dropped connection from its own thread, traceback and all, and Python
# prints unhandled log records on stderr; repro reports the failure itself, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class Target(NamedTuple):
    """Where and as whom to connect, after merging options, URL and ``~/.ssh/config``."""

    alias: str  # the host as written in the URL
    hostname: str
    port: int
    user: str
    root: str
    key_files: tuple[str, ...] = ()
    password: str | None = None
    proxy_command: str | None = None
    known_hosts_files: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @property
    def display(self) -> str:
        return f"ssh://{self.user}@{self.alias}:{self.port}{self.root}"


class _Unreachable(RemoteError):
    """The server did not answer (refused, reset, timed out), perhaps only for a moment."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Dropped(Exception):
    """The connection died under an operation, or has not come back yet: worth a retry."""


def open_remote(url: str, options: Mapping[str, str]) -> SshRemote:
    """Open ``ssh://[user@]host[:port]/path``; no connection is made until first use."""
    return SshRemote(url, resolve_target(url, options))


def resolve_target(url: str, options: Mapping[str, str]) -> Target:
    """Merge the repro options, the URL and ``~/.ssh/config`` into a ``Target``."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ReproError(f"ssh remote URL '{url}' has no host: use ssh://[user@]host[:port]/path")
    config = _ssh_config(parts.hostname)
    # Parsed by hand: urlsplit's .port raises on a bad port, and "[::1]:22" has colons.
    url_port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    port_text = options.get("port") or url_port or config.get("port") or "22"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ReproError(f"ssh port '{port_text}' of '{url}' is not a port number")
    port = int(port_text)
    key_files = []
    if options.get("keyfile"):
        key_files.append(Path(options["keyfile"]).expanduser())
        if not key_files[0].is_file():
            raise ReproError(
                f"ssh keyfile {key_files[0]} does not exist; fix it with "
                "'repro remote modify NAME keyfile PATH'"
            )
    # Like OpenSSH, skip configured identities that are absent (a "Host *" default, say).
    key_files += [p for p in map(Path, config.get("identityfile", [])) if p.expanduser().is_file()]
    timeout = _timeout(options.get("timeout"), url)
    known_hosts = [str(p.expanduser()) for p in KNOWN_HOSTS]
    known_hosts += config.get("userknownhostsfile", "").split()
    return Target(
        alias=parts.hostname,
        hostname=config.get("hostname", parts.hostname),
        port=port,
        user=options.get("user") or parts.username or config.get("user") or getpass.getuser(),
        root=unquote(parts.path) or ".",
        key_files=tuple(str(k.expanduser()) for k in key_files),
        password=options.get("password"),
        proxy_command=config.get("proxycommand"),
        known_hosts_files=tuple(str(Path(k).expanduser()) for k in known_hosts),
        timeout=timeout,
    )


def _timeout(text: str | None, url: str) -> float:
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < common.MAX_TIMEOUT:  # also refuses nan and inf
        raise ReproError(
            f"ssh timeout '{text}' of '{url}' is not a number of seconds; fix it with "
            "'repro remote modify NAME timeout SECONDS'"
        )
    return seconds


def _ssh_config(host: str) -> SSHConfigDict:
    path = SSH_CONFIG.expanduser()
    if not path.is_file():
        return SSHConfigDict()
    try:
        return SSHConfig.from_path(str(path)).lookup(host)
    except (OSError, ConfigParseError) as exc:
        raise ReproError(f"cannot read {path}: {exc}; fix or move it") from exc


def _fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key = key


def _refuse_unknown_hosts() -> paramiko.MissingHostKeyPolicy:
    """A policy that refuses a host whose key is not known: adding it blindly would defeat
    host keys. (Made here, not at import: paramiko's client module loads its transport.)"""

    # The ignore is for mypy without types-paramiko, where the base class is Any.
    class RefuseUnknownHosts(paramiko.MissingHostKeyPolicy):  # type: ignore[misc,unused-ignore]
        def missing_host_key(
            self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
        ) -> None:
            raise _UnknownHostKey(hostname, key)

    return RefuseUnknownHosts()


def _connect(target: Target) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for known_hosts in target.known_hosts_files:
        # "system" host keys are never written back, whatever happens during connect.
        with suppress(FileNotFoundError):
            client.load_system_host_keys(known_hosts)
    client.set_missing_host_key_policy(_refuse_unknown_hosts())
    where = f"{target.hostname}:{target.port}"
    started = time.monotonic()
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            password=target.password,
            key_filename=list(target.key_files) or None,  # type: ignore[arg-type,unused-ignore]  # a list works too
            timeout=target.timeout,
            banner_timeout=target.timeout,
            auth_timeout=target.timeout,
            channel_timeout=target.timeout,
            sock=paramiko.ProxyCommand(target.proxy_command) if target.proxy_command else None,
        )
    except _UnknownHostKey as exc:
        client.close()
        raise RemoteError(
            f"the ssh host key of {where} is unknown ({exc.key.get_name()} "
            f"{_fingerprint(exc.key)}); refusing to connect: check the key, record it with "
            f"'ssh -p {target.port} {target.user}@{target.hostname}', then retry"
        ) from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise RemoteError(
            f"the ssh host key of {where} does not match known_hosts "
            f"(now {_fingerprint(exc.key)}): the host was reinstalled or someone is "
            "intercepting; check it, then fix ~/.ssh/known_hosts"
        ) from None
    except paramiko.AuthenticationException:
        client.close()
        raise RemoteError(
            f"ssh authentication failed for {target.user}@{where}: load your key into "
            "ssh-agent, set IdentityFile in ~/.ssh/config, or run "
            "'repro remote modify NAME keyfile PATH'"
        ) from None
    except (OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        # paramiko reports a silent server in several ways, a timeout not always among them.
        silent = _timed_out(exc) or time.monotonic() - started >= target.timeout
        reason = common.silence(target.timeout) if silent else _reason(exc)
        raise _Unreachable(
            f"cannot connect to ssh server {where}: {reason}; check the host and port "
            "and that sshd runs there",
            reason,
        ) from None
    return client


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is, or wraps (paramiko's banner error), a wait that timed out."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _reason(exc: BaseException) -> str:
    """A short reason, e.g. "Connection refused", rather than paramiko's wrapper message."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
        exc = next(iter(exc.errors.values()))
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().rstrip(":")  # paramiko's "Server connection dropped: "
    if text:
        return text
    return "the connection closed" if isinstance(exc, EOFError) else type(exc).__name__


class _ChannelPool:
    """One ssh connection shared by up to ``limit`` SFTP channels, one per working thread.

    An SFTP channel serialises its requests, so parallel transfers need several channels;
    they share the connection, its authentication and its host key check. A server that
    allows fewer sessions (sshd's MaxSessions) lowers the limit instead of failing.
    """

    def __init__(self, target: Target, limit: int = MAX_CHANNELS) -> None:
        self._target = target
        self._limit = limit
        self._open = 0  # channels in use or idle
        self._idle: list[paramiko.SFTPClient] = []
        self._changed = threading.Condition()
        self._connect_lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._failure: RemoteError | None = None  # final: no thread tries again
        self._connected = False  # a connection worked once, so a failure may pass
        self._last_drop: tuple[float, str] | None = None  # when a reconnect failed, and why
        self._abandoned: paramiko.Transport | None = None  # the last one closed for silence
        self._streams = threading.BoundedSemaphore(MAX_STREAMS)

    def reached(self) -> None:
        """The server answered another connection of this command (OpenSSH's): a first
        connection of ours that fails now has dropped, and is tried again."""
        self._connected = True

    def _transport(self) -> paramiko.Transport:
        with self._connect_lock:
            transport = self._client.get_transport() if self._client else None
            if transport is not None and transport.is_active():
                return transport
            if self._failure is not None:
                # Waiting threads must not each retry a connection that cannot work.
                raise RemoteError(str(self._failure))
            if self._last_drop and time.monotonic() - self._last_drop[0] < RECONNECT_GAP:
                raise _Dropped(self._last_drop[1])  # another thread has just tried
            # First use, or the connection dropped: (re)connect once for all threads.
            if self._client is not None:
                self._client.close()
            self._client = None
            try:
                self._client = _connect(self._target)
            except _Unreachable as exc:
                if not self._connected:
                    # A wrong host or port, or no sshd: waiting would not help.
                    self._failure = exc
                    raise
                self._last_drop = (time.monotonic(), exc.reason)
                raise _Dropped(exc.reason) from None
            except RemoteError as exc:
                self._failure = exc
                raise
            self._connected, self._last_drop = True, None
            transport = self._client.get_transport()
            if transport is None:
                raise RemoteError(f"lost the connection to {self._target.display}; retry")
            return transport

    def _acquire(self) -> paramiko.SFTPClient:
        while True:
            with self._changed:
                while True:
                    while self._idle:
                        sftp = self._idle.pop()
                        if not sftp.sock.closed:
                            return sftp
                        self._open -= 1  # its connection died
                    if self._open < self._limit:
                        self._open += 1
                        break
                    self._changed.wait()
            try:
                transport = self._transport()
            except BaseException:
                self._release(None)
                raise
            try:
                return self._open_sftp(transport)
            except paramiko.SSHException:
                if not transport.is_active():
                    self._release(None)
                    raise
                # A live connection that refuses a channel has run out of sessions. (Threads
                # racing here may get paramiko's generic error instead of ChannelException.)
                with self._changed:
                    self._open -= 1
                    self._changed.notify_all()
                    if self._open == 0:
                        raise RemoteError(
                            f"{self._target.display} refused an SFTP session; check that the "
                            "server enables the sftp subsystem"
                        ) from None
                    # The server allows no more sessions per connection: share the ones open.
                    self._limit = self._open
            except BaseException:
                self._release(None)
                raise

    def _open_sftp(self, transport: paramiko.Transport) -> paramiko.SFTPClient:
        """A new SFTP channel whose every wait is bounded by the target's timeout."""
        return paramiko.SFTPClient(
            self._start_channel(transport, lambda c: c.invoke_subsystem("sftp"))
        )

    @contextmanager
    def stream(self, command: str) -> Iterator[paramiko.Channel]:
        """A channel running ``command`` on the server, its waits bounded by the timeout; a
        dropped connection raises ``_Dropped``, a refused channel ``paramiko.SSHException``."""
        with self._streams:
            try:
                transport = self._transport()
            except _BROKEN as exc:
                raise self._dropped(exc, None) from None
            try:
                channel = self._start_channel(transport, lambda c: c.exec_command(command))
            except _BROKEN as exc:
                if isinstance(exc, paramiko.SSHException) and transport.is_active():
                    # A live connection refused the session (sshd's MaxSessions): no drop.
                    raise
                raise self._dropped(exc, None) from None
            try:
                yield channel
            except _BROKEN as exc:
                raise self._dropped(exc, transport) from None
            finally:
                with suppress(OSError, EOFError, paramiko.SSHException):
                    channel.close()

    def _dropped(self, exc: BaseException, transport: paramiko.Transport | None) -> _Dropped:
        if _timed_out(exc) or self.is_abandoned(transport):
            self.abandon(transport)
            return _Dropped(common.silence(self._target.timeout))
        return _Dropped(_reason(exc))

    def _start_channel(
        self, transport: paramiko.Transport, start: Callable[[paramiko.Channel], None]
    ) -> paramiko.Channel:
        timeout = self._target.timeout
        # paramiko waits for the server's answer to a new channel without any timeout: a
        # server that stopped answering would hang here forever, so its connection is closed.
        watchdog = threading.Timer(timeout, self.abandon, [transport])
        watchdog.start()
        try:
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            start(channel)
            return channel
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if transport is self._abandoned:
                raise TimeoutError(common.silence(self._target.timeout)) from None
            raise paramiko.SSHException(_reason(exc)) from None
        finally:
            watchdog.cancel()

    def give_up(self, failure: RemoteError) -> None:
        """Fail every later operation at once with ``failure``."""
        with self._connect_lock:
            self._failure = failure

    def abandon(self, transport: paramiko.Transport | None) -> None:
        """Close ``transport`` if it is still the pool's: its server stopped answering, so the
        next operation connects anew rather than wait on it again."""
        with self._connect_lock:
            self._abandoned = transport
            if self._client is not None and self._client.get_transport() is transport:
                self._client.close()

    def is_abandoned(self, transport: paramiko.Transport | None) -> bool:
        """Whether ``transport`` was closed for its silence (its channels fail, each in its
        own way, for that reason)."""
        return transport is not None and transport is self._abandoned

    def _release(self, sftp: paramiko.SFTPClient | None) -> None:
        with self._changed:
            if sftp is None or sftp.sock.closed:
                self._open -= 1
            else:
                self._idle.append(sftp)
            self._changed.notify()

    @contextmanager
    def channel(self) -> Iterator[paramiko.SFTPClient]:
        """A channel of its own for the caller; a dropped connection raises ``_Dropped``."""
        try:
            sftp = self._acquire()
        except _BROKEN as exc:  # the connection died while the channel opened
            raise self._dropped(exc, None) from None
        try:
            yield sftp
        except Exception as exc:
            # paramiko reports a closed channel as a plain OSError ("Socket is closed").
            if isinstance(exc, _BROKEN) or (isinstance(exc, OSError) and sftp.sock.closed):
                # The channel may be mid-request or dead; never hand it to another thread.
                _close_quietly(sftp)
                raise self._dropped(exc, sftp.sock.get_transport()) from None
            raise
        finally:
            self._release(sftp)

    def close(self) -> None:
        with self._changed:
            for sftp in self._idle:
                _close_quietly(sftp)
            self._open -= len(self._idle)
            self._idle.clear()
        with self._connect_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _is_dropped(exc: Exception) -> bool:
    return isinstance(exc, _Dropped)


def _exit_status(channel: paramiko.Channel, timeout: float) -> int:
    """The command's exit status, waited for at most ``timeout`` seconds."""
    if not channel.status_event.wait(timeout):
        raise TimeoutError(f"no exit status in {timeout:g} s")
    status: int = channel.recv_exit_status()
    return status


def _stderr(channel: paramiko.Channel) -> str:
    """The first line the command wrote on its stderr, for an error message."""
    text = channel.recv_stderr(4096).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "no message"


def _write_file(sftp: paramiko.SFTPClient, source: IO[bytes], path: str) -> None:
    """``source`` into the new file ``path``, every write's answer read. paramiko's putfo
    pipelines its writes and drops their answers, refusals and all: on a full disk some
    writes failed unseen, and a file cut short, or with holes, went on to take its name."""
    with sftp.open(path, "wb") as out:
        out.set_pipelined(True)
        while chunk := source.read(SFTP_CHUNK):
            out.write(chunk)
        out.flush()
        # The answers paramiko itself reads only once 100 writes are in flight.
        pending = out._reqs  # type: ignore[attr-defined,unused-ignore]
        try:
            while pending:
                sftp._read_response(pending.popleft())  # raises for a refused write
        except OSError as exc:
            raise OSError(
                f"the server did not write all of it ({_reason(exc)}): is its disk full?"
            ) from None


def _close_quietly(sftp: paramiko.SFTPClient) -> None:
    """Close a channel whose connection may be dead (closing sends a message, which fails)."""
    with suppress(OSError, EOFError, paramiko.SSHException):
        sftp.close()


class SshRemote:
    """Objects are files under ``root`` on the server; uploads are renamed into place."""

    forkable = False

    def __init__(self, url: str, target: Target) -> None:
        self.url = url
        self.target = target
        self._pool = _ChannelPool(target)
        self._made_dirs: set[str] = set()
        self._made_dirs_lock = threading.Lock()
        self._streams_ok: bool | None = None
        # Many objects at once: tar streams through OpenSSH's client, where it works.
        self._tar = openssh.TarStreams(target, RETRY_DELAYS, self._given_up, self._pool.reached)
        self._probe_lock = threading.Lock()

    def _path(self, key: str) -> str:
        return posixpath.join(self.target.root, common.check_key(key))

    def _call(
        self,
        action: str,
        path: str,
        operation: Callable[[paramiko.SFTPClient], T],
        missing_ok: bool = False,
    ) -> T:
        """Run ``operation`` on a channel of the pool; when the connection drops under it,
        reconnect and run it again, a bounded number of times. It must be idempotent."""

        def attempt() -> T:
            with self._pool.channel() as sftp:
                return operation(sftp)

        with self._errors(action, path, missing_ok):
            return common.retrying(attempt, _is_dropped, RETRY_DELAYS)

    @contextmanager
    def _errors(self, action: str, path: str, missing_ok: bool = False) -> Iterator[None]:
        """Turn SFTP failures into one-line RemoteErrors; with ``missing_ok`` a missing file
        stays FileNotFoundError (the caller's "no such key")."""
        try:
            yield
        except RemoteError:
            raise
        except _Dropped as exc:
            raise self._given_up(action, path, str(exc)) from None
        except FileNotFoundError:
            if missing_ok:
                raise
            raise RemoteError(
                f"cannot {action} {path} on {self.target.display}: a folder on the way is "
                "missing or is a file; check the remote's path"
            ) from None
        except PermissionError as exc:
            raise self._permission_error(action, path, exc) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(
                f"cannot {action} {path} on {self.target.display}: {_reason(exc)}; "
                "check the connection and retry"
            ) from None

    def _given_up(self, action: str, path: str, reason: str) -> RemoteError:
        """The error once a dropped connection's retries are spent; every other operation
        fails at once with it too (each would wait through its own attempts)."""
        error = RemoteError(
            f"cannot {action} {path}: lost the connection to {self.target.display} ({reason}) "
            f"and {len(RETRY_DELAYS) + 1} attempts failed; check that the server is up and "
            "reachable, then run the command again (finished transfers are kept)"
        )
        self._pool.give_up(error)
        return error

    def _permission_error(self, action: str, path: str, exc: PermissionError) -> RemoteError:
        user, host = self.target.user, self.target.alias
        if action in ("write", "delete"):
            # exc.filename, when known, is a folder being made: the one to fix holds it.
            folder = posixpath.dirname(exc.filename or path)
            return RemoteError(
                f"cannot {action} in {folder} on {host}: permission denied for user {user}; "
                f"give {user} write permission there (owner or mode), or choose another "
                "remote path"
            )
        return RemoteError(
            f"cannot {action} {path} on {host}: permission denied for user {user}; give {user} "
            "read permission on it and its folders (owner or mode), or ask the server's admin"
        )

    def _exists_one(self, key: str) -> bool:
        path = self._path(key)

        def is_file(sftp: paramiko.SFTPClient) -> bool:
            try:  # lstat: a symlink, FIFO or device at the name is no object
                return stat.S_ISREG(sftp.lstat(path).st_mode or 0)
            except FileNotFoundError:
                return False

        return self._call("check", path, is_file)

    def exists(self, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)
        found = self._tar.exists(wanted)  # one find through OpenSSH's client, where it works
        if found is not None:
            return found
        return common.bulk_exists(wanted, self._exists_one, self.list)

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        start = common.folder_prefix(prefix)
        base = posixpath.join(self.target.root, start) if start else self.target.root
        # Collected first so that no channel stays borrowed while the caller iterates.
        found = self._call(
            "list",
            base,
            lambda sftp: list(self._walk(sftp, base.rstrip("/") or "/", start, common.MAX_DEPTH)),
        )
        yield from found

    def _walk(
        self, sftp: paramiko.SFTPClient, folder: str, key_prefix: str, depth: int
    ) -> Iterator[tuple[str, int]]:
        """The regular files of ``folder``, and of its folders ``depth`` levels down."""
        try:
            entries = sftp.listdir_attr(folder)
        except FileNotFoundError:
            return
        for entry in sorted(entries, key=lambda e: e.filename):
            mode = entry.st_mode or 0
            if is_temp(entry.filename):
                continue
            if stat.S_ISDIR(mode):
                if depth:
                    inner = posixpath.join(folder, entry.filename)
                    yield from self._walk(sftp, inner, f"{key_prefix}{entry.filename}/", depth - 1)
            elif stat.S_ISREG(mode):
                yield f"{key_prefix}{entry.filename}", entry.st_size or 0

    def _makedirs(self, sftp: paramiko.SFTPClient, folder: str) -> None:
        """Make ``folder`` and the folders on its way. Those below the root must be real
        folders: a symlink planted there is refused, not written through. (SFTP has no
        ``openat``: one swapped in between this check and a write is the server's user's
        own doing, with that user's rights.)"""
        with self._made_dirs_lock:
            if folder in self._made_dirs:
                return
        root = self.target.root.rstrip("/") or "/"
        below = posixpath.relpath(folder, root).split("/") if folder != root else []
        if ".." in below:  # keys are checked: a bug, not the server's doing
            raise ValueError(f"{folder} is not under {root}")
        self._make_root(sftp, root)
        current = root
        for name in below:
            current = posixpath.join(current, name)
            with self._made_dirs_lock:
                if current in self._made_dirs:  # checked already: once per folder
                    continue
            try:
                mode = sftp.lstat(current).st_mode or 0
            except FileNotFoundError:
                self._mkdir(sftp, current)
                mode = stat.S_IFDIR
            if not stat.S_ISDIR(mode):
                where = f"{current} on {self.target.display}"
                raise common.not_a_folder(where, mode, f"{folder} on {self.target.display}")
            with self._made_dirs_lock:
                self._made_dirs.add(current)

    def _make_root(self, sftp: paramiko.SFTPClient, root: str) -> None:
        """Make the root and the folders above it, through symlinks if so: the path is the
        user's choice."""
        with self._made_dirs_lock:
            if root in self._made_dirs:
                return
        missing: list[str] = []
        current = root
        while current not in ("", "/", "."):
            try:
                if stat.S_ISDIR(sftp.stat(current).st_mode or 0):
                    break
            except FileNotFoundError:
                missing.append(current)
            current = posixpath.dirname(current)
        for path in reversed(missing):
            self._mkdir(sftp, path)
        with self._made_dirs_lock:
            self._made_dirs.add(root)

    @staticmethod
    def _mkdir(sftp: paramiko.SFTPClient, path: str) -> None:
        try:
            sftp.mkdir(path)
        except OSError as exc:
            # Another thread or client may have made it meanwhile; only that is fine.
            try:
                made = stat.S_ISDIR(sftp.lstat(path).st_mode or 0)
            except OSError:
                made = False
            if not made:
                exc.filename = path  # SFTP errors do not say which request failed
                raise exc from None

    def put(self, source: Path, key: str) -> None:
        path = self._path(key)
        folder, name = posixpath.split(path)
        leftovers: list[str] = []  # temp files of attempts that a dropped connection cut

        def upload(sftp: paramiko.SFTPClient) -> None:
            while leftovers:
                with suppress(OSError):
                    sftp.remove(leftovers.pop())
            self._makedirs(sftp, folder)
            tmp = posixpath.join(folder, temp_name(name))
            src.seek(0)
            try:
                _write_file(sftp, src, tmp)
                self._rename(sftp, tmp, path)
            except BaseException:
                leftovers.append(tmp)
                with suppress(OSError, paramiko.SSHException, EOFError):
                    sftp.remove(tmp)
                    leftovers.pop()
                raise

        with source.open("rb") as src:
            self._call("write", path, upload)

    def _rename(self, sftp: paramiko.SFTPClient, tmp: str, path: str) -> None:
        try:
            # Atomic and replaces an existing file, like rename(2).
            sftp.posix_rename(tmp, path)
        except OSError:
            # Servers without the OpenSSH extension: plain rename refuses an existing target,
            # which then holds the same bytes (keys are content hashes) if it is a file; a
            # folder someone made there (rename(2) refuses it too) holds no object.
            try:
                sftp.rename(tmp, path)
            except OSError:
                mode = sftp.lstat(path).st_mode or 0
                if not stat.S_ISREG(mode):
                    raise common.not_a_file(f"{path} on {self.target.display}", mode) from None
                sftp.remove(tmp)

    def get(self, key: str, dest: str | os.PathLike[str]) -> str:
        path = self._path(key)

        def download(sftp: paramiko.SFTPClient, streams: bool = True) -> str | int:
            """The md5 of the bytes read, or the size of an object to stream instead (only
            with ``streams``)."""
            out.seek(0)
            out.truncate()  # what an attempt cut short wrote
            digest = hashlib.md5()
            # lstat before open: the server would open a FIFO and wait forever, or a
            # device. It also gives the size, in place of an fstat of the open file.
            info = sftp.lstat(path)
            if not stat.S_ISREG(info.st_mode or 0):
                raise common.not_a_file(f"{path} on {self.target.display}", info.st_mode or 0)
            left = info.st_size or 0
            streamable = left >= STREAM_ABOVE and common.shell_safe(path)
            if streams and streamable and self._streams_work():
                return left
            with sftp.open(path, "rb") as remote_file:
                # Up to the size lstat gave, not to the end: for a small object, the read
                # that would find the end is a round trip as long as the one that read it.
                # Bytes beyond, or missing, fail the md5 check all the same.
                while left > 0 and (chunk := remote_file.read(min(left, SFTP_CHUNK))):
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            return digest.hexdigest()

        def stream(size: int) -> str:
            out.seek(0)
            out.truncate()
            digest = hashlib.md5()
            left = size  # no more: a server that sends without end cannot fill the disk
            with self._pool.stream(f"cat -- {shlex.quote(path)}") as channel:
                while left > 0 and (chunk := channel.recv(min(left, STREAM_CHUNK))):
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
                # An early end is a failure (denied, say) or a file that shrank meanwhile.
                if left and _exit_status(channel, self.target.timeout) != 0:
                    raise OSError(f"cat {path} failed: {_stderr(channel)}")
            return digest.hexdigest()

        with open(dest, "wb") as out:
            read = self._call("read", path, download, missing_ok=True)
            if isinstance(read, str):
                return read
            size = read
            with self._errors("read", path):
                try:
                    return common.retrying(lambda: stream(size), _is_dropped, RETRY_DELAYS)
                except paramiko.SSHException:
                    pass  # no session to spare on the server now: this one over SFTP
            read = self._call(
                "read", path, lambda sftp: download(sftp, streams=False), missing_ok=True
            )
            assert isinstance(read, str)  # without streams, download reads the object itself
            return read

    def _streams_work(self) -> bool:
        """Whether the server runs ``cat`` for us (not a server that only offers SFTP), asked
        once."""
        with self._probe_lock:
            if self._streams_ok is None:
                try:
                    with self._pool.stream(STREAM_PROBE) as channel:
                        channel.shutdown_write()  # an SFTP-only server then ends at once
                        said = channel.makefile("rb").read(64)
                        status = _exit_status(channel, self.target.timeout)
                    self._streams_ok = said == b"repro-stream" and status == 0
                except (_Dropped, paramiko.SSHException, OSError):
                    self._streams_ok = False
            return self._streams_ok

    def delete(self, key: str) -> None:
        path = self._path(key)

        def remove(sftp: paramiko.SFTPClient) -> None:
            with suppress(FileNotFoundError):  # gone already, maybe by an attempt cut short
                sftp.remove(path)

        self._call("delete", path, remove)

    def get_many(
        self, items: Sequence[tuple[str, str]], more: bool = False
    ) -> Iterator[tuple[str, str]]:
        """Many objects in one tar stream (see ``openssh.TarStreams.get_many``)."""
        return self._tar.get_many(items, more)

    def put_many(
        self,
        items: Sequence[tuple[str, str]],
        sent: Callable[[int, int], None] | None = None,
        more: bool = False,
    ) -> Iterator[tuple[str, int]]:
        """Many objects in tar streams (see ``openssh.TarStreams.put_many``)."""
        return self._tar.put_many(items, sent, more)

    def prepare_put(self) -> None:
        """A put_many follows: its first session logs in now (``TarStreams.prepare_put``)."""
        self._tar.prepare_put()

    def close(self) -> None:
        self._tar.close()
        self._pool.close()
