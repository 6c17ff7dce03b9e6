"""What only the ssh backend does: host keys, authentication, ~/.ssh/config, channel pool,
a server that stops answering."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Project, cli
from remotes.remote_helpers import (
    add_directory,
    add_file,
    cached_files,
    many_files,
    objects_in,
    ssh_project,
    start_push,
)
from remotes.remote_servers import (
    SSH_ALIAS,
    SshServer,
    free_port,
    keygen,
    logins,
    resume,
    running_sshd,
    stop_server,
    trust_sshd,
)

from repro.errors import CorruptObjectError, RemoteError, ReproError
from repro.objects.ids import object_key, object_path
from repro.objects.transfer import Transfer
from repro.remotes import open_remote
from repro.remotes.ssh import (
    MAX_CHANNELS,
    MAX_STREAMS,
    RETRY_DELAYS,
    STREAM_ABOVE,
    resolve_target,
)


def known_hosts(home: Path) -> Path:
    return home / ".ssh" / "known_hosts"


def one_line_error(url: str, options: dict[str, str] | None = None) -> str:
    remote = open_remote(url, options or {})
    try:
        with pytest.raises(RemoteError) as caught:
            remote.exists(["files/md5/ab/cd"])
    finally:
        remote.close()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_host_key_is_refused_and_not_recorded(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    known_hosts(home).write_text("")

    message = one_line_error(f"ssh://{SSH_ALIAS}{tmp_path}")

    assert "host key" in message and "unknown" in message and "SHA256:" in message
    assert known_hosts(home).read_text() == ""


def test_changed_host_key_is_refused(sshd: SshServer, home: Path, tmp_path: Path) -> None:
    trust_sshd(home, sshd)
    impostor = keygen(tmp_path / "impostor")
    key = " ".join(Path(f"{impostor}.pub").read_text().split()[:2])
    known_hosts(home).write_text(f"[127.0.0.1]:{sshd.port} {key}\n")

    message = one_line_error(f"ssh://{SSH_ALIAS}{tmp_path}")

    assert "does not match" in message


def test_connection_refused_is_one_clear_line(home: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    message = one_line_error(f"ssh://127.0.0.1:{port}/srv/remote")
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower()
    assert time.monotonic() - started < 5


def test_a_key_the_server_does_not_accept_fails_authentication(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    known_hosts(home).write_text(sshd.known_hosts_line())
    stranger = keygen(tmp_path / "stranger")

    message = one_line_error(
        f"ssh://127.0.0.1:{sshd.port}{tmp_path}", {"user": sshd.user, "keyfile": str(stranger)}
    )

    assert "authentication failed" in message and "keyfile" in message


def test_options_alone_are_enough_without_ssh_config(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    known_hosts(home).write_text(sshd.known_hosts_line())
    remote = open_remote(
        f"ssh://127.0.0.1{tmp_path}/remote",
        {"user": sshd.user, "port": str(sshd.port), "keyfile": str(sshd.user_key)},
    )
    try:
        (tmp_path / "src").write_bytes(b"via options")
        remote.put(tmp_path / "src", "files/md5/ab/cd")
    finally:
        remote.close()
    assert (tmp_path / "remote/files/md5/ab/cd").read_bytes() == b"via options"


def test_match_exec_in_ssh_config_still_counts_though_invoke_loads_only_for_it(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """paramiko runs ``Match exec`` through invoke, which repro lets load only when used (it
    is half of paramiko's import time): both, in a fresh interpreter."""
    trust_sshd(home, sshd)
    plain = (home / ".ssh" / "config").read_text()
    with_port_only_from_match = plain.replace(f"  Port {sshd.port}\n", "")
    assert with_port_only_from_match != plain
    with_port_only_from_match = (
        f'Match host 127.0.0.1 exec "test -d {tmp_path}"\n  Port {sshd.port}\n'
        + with_port_only_from_match
    )
    program = (
        "import sys\n"
        "from repro.remotes import open_remote\n"
        f"remote = open_remote('ssh://{SSH_ALIAS}{tmp_path}/remote', {{}})\n"
        "print(remote.exists(['files/md5/ab/cd']), type(sys.modules['invoke']).__name__)\n"
        "remote.close()\n"
    )
    said = {}
    for name, config in (("plain", plain), ("match", with_port_only_from_match)):
        (home / ".ssh" / "config").write_text(config)
        ran = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        said[name] = ran.stdout.split()
    assert said["plain"] == ["set()", "_Deferred"]  # connected; invoke never loaded
    assert said["match"] == ["set()", "module"]  # the port came from Match exec, through invoke


def test_a_push_and_a_fetch_through_openssh_never_load_paramikos_transport_which_sftp_gets(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    """paramiko's package loads its transport and cryptography (0.14 s of every ssh command);
    a push (its question, its files, then its directory manifest) and a fetch whose objects
    all go through OpenSSH's tar streams read only paramiko.config, and the first SFTP
    request still finds the whole of paramiko: in a fresh interpreter."""
    trust_sshd(home, sshd)
    cache = tmp_path / "cache"
    ids = [add_file(cache, f"object {i}\n".encode()) for i in range(20)]
    ids.append(add_directory(cache, {f"d/{i}": f"in a folder {i}\n".encode() for i in range(5)}))
    store = tmp_path / "remote"
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from repro.objects.transfer import Transfer\n"
        "from repro.remotes import open_remote\n"
        f"remote = open_remote('ssh://{SSH_ALIAS}{store}', {{}})\n"
        f"cache, other = Path({str(cache)!r}), Path({str(tmp_path / 'other')!r})\n"
        f"done = Transfer(remote, cache, progress=False).push({ids!r})\n"
        "print(done.transferred, 'paramiko.transport' in sys.modules)\n"
        f"done = Transfer(remote, other, progress=False).fetch({ids!r})\n"
        "print(done.transferred, 'paramiko.transport' in sys.modules)\n"
        "print(len(list(remote.list('files/'))))\n"  # over SFTP
        "import paramiko\n"
        "same = paramiko.config.SSHConfig is paramiko.SSHConfig\n"
        "print('paramiko.transport' in sys.modules, same)\n"
        # The stand-in the ssh module holds answers from its own namespace once loaded.
        "print('SSHClient' in vars(sys.modules['repro.remotes.ssh'].paramiko))\n"
        "remote.close()\n"
    )
    before = logins(sshd)
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["26", "False", "26", "False", "26", "True", "True", "True"]
    # The push: files (after the question), then the manifest; the fetch: manifest, files.
    # Then SFTP.
    assert logins(sshd) - before == 5
    assert (store / object_key(ids[-1])).read_bytes() == object_path(cache, ids[-1]).read_bytes()


def test_options_beat_the_url_which_beats_ssh_config(home: Path) -> None:
    (home / ".ssh" / "config").write_text(
        "Host box\n  HostName 10.0.0.7\n  User config-user\n  Port 2201\n"
        "  IdentityFile ~/.ssh/box_key\n"
    )

    from_config = resolve_target("ssh://box/srv/data", {})
    from_url = resolve_target("ssh://url-user@box:2202/srv/data", {})
    from_options = resolve_target(
        "ssh://url-user@box:2202/srv/data", {"user": "opt-user", "port": "2203"}
    )

    assert (from_config.hostname, from_config.user, from_config.port) == (
        "10.0.0.7",
        "config-user",
        2201,
    )
    assert from_config.key_files == ()  # ~/.ssh/box_key does not exist: skipped, like ssh does
    (home / ".ssh" / "box_key").write_text("key")
    assert resolve_target("ssh://box/srv", {}).key_files == (str(home / ".ssh" / "box_key"),)
    with pytest.raises(ReproError, match="keyfile .*nope does not exist"):
        resolve_target("ssh://box/srv", {"keyfile": "~/nope"})
    assert from_config.root == "/srv/data"
    assert (from_url.user, from_url.port) == ("url-user", 2202)
    assert (from_options.user, from_options.port) == ("opt-user", 2203)
    with pytest.raises(ReproError, match="not a port number"):
        resolve_target("ssh://box:http/srv", {})


@pytest.mark.usefixtures("no_openssh_client")
def test_more_threads_than_channels_share_one_connection(
    sshd: SshServer, home: Path, tmp_path: Path
) -> None:
    trust_sshd(home, sshd)
    cache, other = tmp_path / "cache", tmp_path / "other"
    files = many_files(cache, 120)
    remote = open_remote(f"ssh://{SSH_ALIAS}{tmp_path}/remote", {})
    try:
        pushed = Transfer(remote, cache, jobs=MAX_CHANNELS * 3, progress=False).push(files)
        fetched = Transfer(remote, other, jobs=MAX_CHANNELS * 3, progress=False).fetch(files)
    finally:
        remote.close()
    assert (pushed.transferred, fetched.transferred) == (120, 120)


@pytest.mark.usefixtures("no_openssh_client")
def test_a_server_allowing_fewer_sessions_than_threads_still_works(
    home: Path, tmp_path: Path
) -> None:
    (tmp_path / "sshd").mkdir()
    with running_sshd(tmp_path / "sshd", "MaxSessions 2\n") as stingy:
        trust_sshd(home, stingy)
        cache, other = tmp_path / "cache", tmp_path / "other"
        files = many_files(cache, 40)
        remote = open_remote(f"ssh://{SSH_ALIAS}{tmp_path}/remote", {})
        try:
            pushed = Transfer(remote, cache, jobs=8, progress=False).push(files)
            fetched = Transfer(remote, other, jobs=8, progress=False).fetch(files)
            # The server refused the third session; the pool learned to live with two.
            assert remote._pool._limit == 2  # type: ignore[attr-defined]
        finally:
            remote.close()
    assert (pushed.transferred, fetched.transferred) == (40, 40)


@pytest.mark.usefixtures("no_openssh_client")
def test_a_server_refusing_a_stream_session_has_big_objects_read_over_sftp(
    home: Path, tmp_path: Path
) -> None:
    """A server allowing a session fewer than the channels and streams together: the first
    stream opens (so streams are used), a later one is refused while SFTP channels hold the
    other sessions. That object is read over SFTP; the refusal is no dropped connection."""
    (tmp_path / "sshd").mkdir()
    sessions = MAX_CHANNELS + MAX_STREAMS - 1
    with running_sshd(tmp_path / "sshd", f"MaxSessions {sessions}\n") as server:
        trust_sshd(home, server)
        cache, other = tmp_path / "cache", tmp_path / "other"
        big = [add_file(cache, os.urandom(STREAM_ABOVE + i)) for i in range(16)]
        remote = open_remote(f"ssh://{SSH_ALIAS}{tmp_path}/remote", {})
        try:
            Transfer(remote, cache, jobs=MAX_CHANNELS, progress=False).push(big)
            fetched = Transfer(remote, other, jobs=MAX_CHANNELS, progress=False).fetch(big)
            assert remote._streams_ok  # type: ignore[attr-defined]
        finally:
            remote.close()
    assert (fetched.transferred, fetched.failed) == (16, ())
    assert all(
        object_path(other, oid).read_bytes() == object_path(cache, oid).read_bytes() for oid in big
    )


def test_a_stopped_sshd_is_given_up_on_in_bounded_time(
    project: Project, home: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    timeout = 1.0
    # Each attempt waits for the server at most the timeout, then pauses before the next.
    bound = (len(RETRY_DELAYS) + 1) * timeout + sum(RETRY_DELAYS)
    with running_sshd(tmp_path / "sshd") as server:
        ssh_project(project, home, server, remote, 2000)
        project.ok("remote", "modify", "store", "timeout", str(timeout))
        proc = start_push(project, lambda: objects_in(remote) > 0)
        stopped = stop_server(server)
        started = time.monotonic()
        try:
            _, err = proc.communicate(timeout=bound + 30)
            waited = time.monotonic() - started
        finally:
            resume(stopped)
        assert proc.returncode == 1, err
        assert len(err.strip().splitlines()) == 1, err
        assert "did not answer" in err and "run the command again" in err, err
        assert waited < bound + 5  # the slack: starting threads, a loaded machine
        # Resumed, the server serves the next command, which finishes the push.
        result = cli(project.root, "push")
        assert result.code == 0, result.err
        assert cli(project.root, "fsck", "-r", "store").code == 0


def test_timeout_must_be_a_number_of_seconds(home: Path) -> None:
    for bad in ("soon", "0", "-1", "nan"):
        with pytest.raises(ReproError, match="timeout .* is not a number of seconds"):
            resolve_target("ssh://box/srv", {"timeout": bad})
    assert resolve_target("ssh://box/srv", {"timeout": "2.5"}).timeout == 2.5


@pytest.mark.parametrize("way", ["tar", "cat", "sftp"])
def test_big_objects_corrupt_or_truncated_are_never_accepted(
    home: Path, tmp_path: Path, way: str, request: pytest.FixtureRequest
) -> None:
    """Big objects come in a tar stream through OpenSSH's client, as a stream from ``cat``
    through paramiko on a host without that client, or over SFTP from a server that runs no
    commands; whichever way, their bytes are hashed on the way in and checked."""
    sftp_only = way == "sftp"
    if way == "cat":
        request.getfixturevalue("no_openssh_client")
    config = "ForceCommand internal-sftp\n" if sftp_only else ""
    with running_sshd(tmp_path / "sshd", config) as server:
        trust_sshd(home, server)
        cache, other = tmp_path / "cache", tmp_path / "other"
        good, flipped, truncated = (
            add_file(cache, bytes([i]) * (STREAM_ABOVE + 1000)) for i in range(3)
        )
        remote = open_remote(f"ssh://{SSH_ALIAS}{tmp_path}/remote", {})
        try:
            Transfer(remote, cache, progress=False).push([good, flipped, truncated])
            stored = tmp_path / "remote"
            data = (stored / object_key(flipped)).read_bytes()
            (stored / object_key(flipped)).write_bytes(data[:-1] + b"X")
            whole = object_path(cache, truncated).read_bytes()
            (stored / object_key(truncated)).write_bytes(whole[: STREAM_ABOVE + 10])  # still big
            summary = Transfer(remote, other, progress=False).fetch([good, flipped, truncated])
            assert remote._tar.works is (way == "tar")  # type: ignore[attr-defined]
            assert remote._streams_ok is {"tar": None, "cat": True, "sftp": False}[way]  # type: ignore[attr-defined]
        finally:
            remote.close()
    assert summary.transferred == 1
    assert sorted(f.object_id for f in summary.failed) == sorted([flipped, truncated])
    assert all(isinstance(f.error, CorruptObjectError) for f in summary.failed)
    assert cached_files(other) == [object_path(other, good)]
    assert object_path(other, good).read_bytes() == object_path(cache, good).read_bytes()
