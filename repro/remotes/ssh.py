"""A remote on another host, over SFTP (paramiko).

Connection settings come, first match wins, from the repro config options, the URL,
``~/.ssh/config`` (Host, HostName, User, Port, IdentityFile, ProxyCommand) and the defaults.
Keys come from the ssh agent, the configured identity files and ``~/.ssh/id_*``. Host keys are
checked against ``~/.ssh/known_hosts`` (and ``/etc/ssh/ssh_known_hosts``); an unknown host is
refused, never added, so a first connection cannot be silently intercepted.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import posixpath
import shutil
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paramiko

from repro.errors import RemoteError, ReproError
from repro.remotes.common import bulk_exists, check_key, folder_prefix, is_temp, temp_name

# OpenSSH's sshd allows 10 sessions per connection by default (MaxSessions); stay below it.
MAX_CHANNELS = 8
CONNECT_TIMEOUT = 20.0
PREFETCH_ABOVE = 256 << 10
# SFTP reads are at most 32 KiB; reading in bigger chunks only adds copying.
SFTP_CHUNK = 32 << 10
# What a dropped connection raises; an SFTP status error (a plain OSError) leaves a channel usable.
_BROKEN = (paramiko.SSHException, EOFError, ConnectionError, TimeoutError)
SSH_CONFIG = Path("~/.ssh/config")
KNOWN_HOSTS = (Path("~/.ssh/known_hosts"), Path("/etc/ssh/ssh_known_hosts"))


@dataclass(frozen=True)
class Target:
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

    @property
    def display(self) -> str:
        return f"ssh://{self.user}@{self.alias}:{self.port}{self.root}"


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
    )


def _ssh_config(host: str) -> paramiko.SSHConfigDict:
    path = SSH_CONFIG.expanduser()
    if not path.is_file():
        return paramiko.SSHConfigDict()
    try:
        return paramiko.SSHConfig.from_path(str(path)).lookup(host)
    except (OSError, paramiko.ConfigParseError) as exc:
        raise ReproError(f"cannot read {path}: {exc}; fix or move it") from exc


def _fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key = key


# The ignore is for mypy without types-paramiko, where the base class is Any.
class _RefuseUnknownHosts(paramiko.MissingHostKeyPolicy):  # type: ignore[misc,unused-ignore]
    """Refuse a host whose key is not known: adding it blindly would defeat host keys."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(hostname, key)


def _connect(target: Target) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for known_hosts in target.known_hosts_files:
        # "system" host keys are never written back, whatever happens during connect.
        with suppress(FileNotFoundError):
            client.load_system_host_keys(known_hosts)
    client.set_missing_host_key_policy(_RefuseUnknownHosts())
    where = f"{target.hostname}:{target.port}"
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            password=target.password,
            key_filename=list(target.key_files) or None,  # type: ignore[arg-type,unused-ignore]  # a list works too
            timeout=CONNECT_TIMEOUT,
            banner_timeout=CONNECT_TIMEOUT,
            auth_timeout=CONNECT_TIMEOUT,
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
        reason = _reason(exc)
        raise RemoteError(
            f"cannot connect to ssh server {where}: {reason}; check the host and port "
            "and that sshd runs there"
        ) from None
    return client


def _reason(exc: BaseException) -> str:
    """A short reason, e.g. "Connection refused", rather than paramiko's wrapper message."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
        exc = next(iter(exc.errors.values()))
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


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
        self._failure: RemoteError | None = None

    def _transport(self) -> paramiko.Transport:
        with self._connect_lock:
            transport = self._client.get_transport() if self._client else None
            if transport is not None and transport.is_active():
                return transport
            if self._failure is not None:
                # Waiting threads must not each retry a connection that just failed.
                raise RemoteError(str(self._failure))
            # First use, or the connection dropped: (re)connect once for all threads.
            if self._client is not None:
                self._client.close()
            self._client = None
            try:
                self._client = _connect(self._target)
            except RemoteError as exc:
                self._failure = exc
                raise
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
                return paramiko.SFTPClient.from_transport(transport) or _no_sftp()
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

    def _release(self, sftp: paramiko.SFTPClient | None) -> None:
        with self._changed:
            if sftp is None or sftp.sock.closed:
                self._open -= 1
            else:
                self._idle.append(sftp)
            self._changed.notify()

    @contextmanager
    def channel(self) -> Iterator[paramiko.SFTPClient]:
        sftp = self._acquire()
        try:
            yield sftp
        except _BROKEN:
            # The channel may be mid-request or dead; never hand it to another thread.
            sftp.close()
            raise
        finally:
            self._release(sftp)

    def close(self) -> None:
        with self._changed:
            for sftp in self._idle:
                sftp.close()
            self._open -= len(self._idle)
            self._idle.clear()
        with self._connect_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _no_sftp() -> paramiko.SFTPClient:
    raise paramiko.SSHException("the server closed the SFTP session at once")


class SshRemote:
    """Objects are files under ``root`` on the server; uploads are renamed into place."""

    forkable = False

    def __init__(self, url: str, target: Target) -> None:
        self.url = url
        self.target = target
        self._pool = _ChannelPool(target)
        self._made_dirs: set[str] = set()
        self._made_dirs_lock = threading.Lock()

    def _path(self, key: str) -> str:
        return posixpath.join(self.target.root, check_key(key))

    @contextmanager
    def _errors(self, action: str, path: str, missing_ok: bool = False) -> Iterator[None]:
        """Turn SFTP failures into one-line RemoteErrors; with ``missing_ok`` a missing file
        stays FileNotFoundError (the caller's "no such key")."""
        try:
            yield
        except RemoteError:
            raise
        except FileNotFoundError:
            if missing_ok:
                raise
            raise RemoteError(
                f"cannot {action} {path} on {self.target.display}: a folder on the way is "
                "missing or is a file; check the remote's path"
            ) from None
        except PermissionError:
            raise RemoteError(
                f"permission denied to {action} {path} on {self.target.display}: "
                f"check that {self.target.user} may write there"
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(
                f"cannot {action} {path} on {self.target.display}: {exc or type(exc).__name__}; "
                "check the connection and retry"
            ) from None

    def _exists_one(self, key: str) -> bool:
        path = self._path(key)
        with self._errors("check", path), self._pool.channel() as sftp:
            try:
                return stat.S_ISREG(sftp.stat(path).st_mode or 0)
            except FileNotFoundError:
                return False

    def exists(self, keys: Iterable[str]) -> set[str]:
        return bulk_exists(keys, self._exists_one, self.list)

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        start = folder_prefix(prefix)
        base = posixpath.join(self.target.root, start) if start else self.target.root
        with self._errors("list", base), self._pool.channel() as sftp:
            # Collected first so that no channel stays borrowed while the caller iterates.
            found = list(self._walk(sftp, base.rstrip("/") or "/", start))
        yield from found

    def _walk(
        self, sftp: paramiko.SFTPClient, folder: str, key_prefix: str
    ) -> Iterator[tuple[str, int]]:
        try:
            entries = sftp.listdir_attr(folder)
        except FileNotFoundError:
            return
        for entry in sorted(entries, key=lambda e: e.filename):
            mode = entry.st_mode or 0
            if is_temp(entry.filename):
                continue
            if stat.S_ISDIR(mode):
                yield from self._walk(
                    sftp, posixpath.join(folder, entry.filename), f"{key_prefix}{entry.filename}/"
                )
            elif stat.S_ISREG(mode):
                yield f"{key_prefix}{entry.filename}", entry.st_size or 0

    def _makedirs(self, sftp: paramiko.SFTPClient, folder: str) -> None:
        with self._made_dirs_lock:
            if folder in self._made_dirs:
                return
        missing: list[str] = []
        current = folder
        while current not in ("", "/", "."):
            try:
                if stat.S_ISDIR(sftp.stat(current).st_mode or 0):
                    break
            except FileNotFoundError:
                missing.append(current)
            current = posixpath.dirname(current)
        for path in reversed(missing):
            try:
                sftp.mkdir(path)
            except OSError as exc:
                # Another thread or client may have made it meanwhile; only that is fine.
                try:
                    made = stat.S_ISDIR(sftp.stat(path).st_mode or 0)
                except OSError:
                    made = False
                if not made:
                    raise exc from None
        with self._made_dirs_lock:
            self._made_dirs.add(folder)

    def put(self, source: Path, key: str) -> None:
        path = self._path(key)
        folder, name = posixpath.split(path)
        tmp = posixpath.join(folder, temp_name(name))
        with source.open("rb") as src, self._errors("write", path), self._pool.channel() as sftp:
            self._makedirs(sftp, folder)
            try:
                sftp.putfo(src, tmp, confirm=False)
                self._rename(sftp, tmp, path)
            except BaseException:
                with suppress(OSError, paramiko.SSHException, EOFError):
                    sftp.remove(tmp)
                raise

    @staticmethod
    def _rename(sftp: paramiko.SFTPClient, tmp: str, path: str) -> None:
        try:
            # Atomic and replaces an existing file, like rename(2).
            sftp.posix_rename(tmp, path)
        except OSError:
            # Servers without the OpenSSH extension: plain rename refuses an existing target,
            # which then holds the same bytes (keys are content hashes).
            try:
                sftp.rename(tmp, path)
            except OSError:
                sftp.stat(path)
                sftp.remove(tmp)

    def get(self, key: str, dest: Path) -> None:
        path = self._path(key)
        with (
            dest.open("wb") as out,
            self._errors("read", path, missing_ok=True),
            self._pool.channel() as sftp,
            sftp.open(path, "rb") as remote_file,
        ):
            size = remote_file.stat().st_size or 0
            # Prefetching pipelines reads (needed for speed on big files) but costs a
            # thread per file, which small objects, the common case, do not repay.
            if size > PREFETCH_ABOVE:
                remote_file.prefetch(size)
            shutil.copyfileobj(remote_file, out, SFTP_CHUNK)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with (
            self._errors("delete", path),
            self._pool.channel() as sftp,
            suppress(FileNotFoundError),
        ):
            sftp.remove(path)

    def close(self) -> None:
        self._pool.close()
