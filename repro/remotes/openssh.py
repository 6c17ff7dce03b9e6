"""OpenSSH's client, and many objects at once over it as ``tar`` streams.

paramiko decrypts every byte in Python (tens of MB/s) and SFTP costs a round trip or more per
object; OpenSSH's client does its cryptography in C, and one ``tar`` stream carries thousands of
objects. It is used only where it connects exactly as the paramiko path does: the same host,
port, user, identity files and proxy command, host keys checked strictly against the same
known_hosts files, no password and no prompt (BatchMode), nothing of ``~/.ssh/config`` but what
``ssh.resolve_target`` already read from it. Anywhere else, and on a server where the tar way
fails before it ever worked (no commands, no tar, a hostile tar), the ssh remote moves objects
one by one over SFTP.

On the server a fixed POSIX ``sh`` script runs, the remote's root quoted in it: ``xargs tar -c``
for a pull, the keys on its input; for a push, ``tar -x`` into a staging folder whose objects are
then renamed or hard-linked into place, so a push cut anywhere names no partial object (that
script names no key: it can start, and log in, before the push knows what it will send). Before
its stream, that session answers the push's question, which objects the remote has, with a
``find`` of the folders it names (``exists``): a push that streams logs in once and never
loads paramiko's transport.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import queue
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableSequence, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TypeVar

from repro import host
from repro.errors import RemoteError
from repro.fsutil import TEMP_PREFIX, write_all
from repro.objects.store import READ_ONLY  # what get_many writes is a cache object's mode
from repro.remotes import common, tarstream
from repro.remotes.common import silence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from repro.remotes.ssh import Target

# A push goes in sessions of at most this many objects and bytes: each is placed when it
# ends, so a dropped connection costs at most one session's worth of sending.
SESSION_OBJECTS = 50_000
SESSION_BYTES = 512 << 20
# A push unpacks into a folder of this name in the remote's root, then moves the objects into
# place; one a killed push left is removed by a later push after a day.
PUSH_STAGING = TEMP_PREFIX + "push-"
PLACED = b"repro-placed"  # what the placing script says last, once all is in place
LISTED = b"repro-listed"  # what the listing script says last, once find went through
# A listing names at most this many folders on its command line (a push's: 256 at most).
_LISTED_FOLDERS = 1024
# A listed line longer than this is no key of ours (keys are about 50 characters).
_LISTED_LINE = 4096
T = TypeVar("T")
# Host and user names that cannot be taken for an option or split into user@host.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9_.:-]+|\[[0-9A-Fa-f:.]+\]")
_PLAIN_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
# Keys the placing script reads back from the staging tree, split at line ends.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")
# The identities paramiko tries when told none (OpenSSH would read them from the passwd
# entry's home, not from $HOME as paramiko does).
_DEFAULT_KEYS = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")
_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
# What OpenSSH's client exits with when it, not the remote command, failed.
CLIENT_FAILED = 255
# Objects this big are hashed in a thread of their own while they are written.
_HASH_ASIDE = 8 << 20
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
    if host.aes_in_hardware():
        # OpenSSH puts ChaCha20 first, safe without AES instructions; with them AES-GCM moves
        # a gigabyte over loopback in 3.0 s against ChaCha20's 4.6 s. Every OpenSSH since
        # 6.5 has all of these.
        options["Ciphers"] = ",".join(_CIPHERS)
    if target.proxy_command:
        options["ProxyCommand"] = target.proxy_command
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    for key in keys:
        argv += ["-i", key]
    return [*argv, "--", target.hostname, remote_command]


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
        # ssh goes on reading the connection while the caller writes a file, and the caller's
        # tar writer goes on writing while ssh encrypts.
        for pipe in (self._process.stdin, self._process.stdout):
            host.widen_pipe(pipe.fileno())  # type: ignore[union-attr]
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

    def disarm(self) -> None:
        """Silence no longer counts: the session waits for the caller, not the server."""
        self._armed = False

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


class _Dropped(Exception):
    """The stream's connection failed or fell silent: worth a retry."""


class _NotBulk(Exception):
    """The tar way failed short of a dropped connection (the server runs no commands, lacks
    tar, refused a folder): the ssh remote's object-by-object way follows."""


class TarStreams:
    """Many objects at once to and from ``target``: what the ssh remote's ``get_many`` and
    ``put_many`` do. ``works`` says whether the way works here: None until it did, or failed
    before it ever did (False: never tried again). A dropped connection is retried after each
    of ``delays``; then ``given_up(action, path, reason)`` makes the error raised."""

    def __init__(
        self,
        target: Target,
        delays: Sequence[float],
        given_up: Callable[[str, str, str], RemoteError],
        reached: Callable[[], None] = lambda: None,
    ) -> None:
        self._target = target
        self._delays = delays
        self._given_up = given_up
        # Told once a session answered: the server was there, so a connection that fails
        # later in this command (paramiko's first one included) has dropped, and may pass.
        self._reached = reached
        self.works: bool | None = None
        # Sessions started ahead, each taken whole by one call: the remote serves threads.
        self._spare_lock = threading.Lock()
        self._spare: Session | None = None  # a pull started ahead, waiting for its names
        self._spare_push: Session | None = None  # a push started ahead, waiting for its stream
        self._spare_asked = False  # whether exists asked its question of that session

    def get_many(
        self, items: Sequence[tuple[str, str]], more: bool = False
    ) -> Iterator[tuple[str, str]]:
        """Download many objects in one ``tar`` stream through OpenSSH's client, each into its
        destination file; yield (key, md5 of the bytes written) for each. Keys not yielded are
        the caller's to get one by one: absent, not a regular file, or a server where this way
        does not work (then never tried again). With ``more`` (a fetch's files follow its
        manifests), the next call's session starts now: its login and the server's shell start
        while this stream runs."""
        remaining = dict(items)
        for check_key in remaining:
            common.check_key(check_key)
        with self._spare_lock:
            ready = [self._spare] if self._spare is not None else []  # started for this call
            self._spare = None
        if more and self.works is not False:
            argv = self._argv(self._pull_script())
            if argv is not None:
                self._keep_spare(Session(argv, self._target.timeout, armed=False), push=False)
        try:
            yield from self._bulk(remaining, "read", lambda rest: self._get_session(rest, ready))
        finally:
            for unused in ready:
                unused.close()

    def _pull_script(self) -> str:
        # xargs, not tar's -T: BusyBox's tar may lack it.
        return f"cd -- {shlex.quote(self._target.root)} && exec xargs tar -cf -"

    def _get_session(
        self, remaining: dict[str, str], ready: MutableSequence[Session]
    ) -> Iterator[tuple[str, str]]:
        with self._session(self._pull_script(), ready.pop() if ready else None) as session:
            names = "".join(f"{key}\n" for key in remaining).encode()
            # Written from a thread: tar writes the archive while it still reads the names.
            threading.Thread(target=_feed, args=(session, names), daemon=True).start()
            reader = tarstream.Reader(session.stdout, session.touch)
            while (member := reader.next()) is not None:
                dest = remaining.get(member.name)
                if dest is None or not member.regular:
                    continue  # unasked (a hostile server's), or no plain file: left to get()
                # A plain descriptor: a file object costs more than writing a small object.
                # Read-only from the start, as a cache object is (no chmod for each): the
                # descriptor still writes.
                out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, READ_ONLY)
                try:
                    if member.size >= _HASH_ASIDE:
                        md5 = _write_hashing_aside(reader.data(), out)
                    else:
                        digest = hashlib.md5()
                        for data in reader.data():
                            digest.update(data)
                            write_all(out, data)
                        md5 = digest.hexdigest()
                except BaseException:
                    # A retry opens it again, which its mode would forbid to all but root.
                    with suppress(FileNotFoundError):
                        os.unlink(dest)
                    raise
                finally:
                    os.close(out)
                yield member.name, md5

    def exists(self, keys: Iterable[str]) -> set[str] | None:
        """Which of ``keys`` the remote has as regular files, from one ``find`` of their
        folders through OpenSSH's client: asked of the push session ``prepare_put`` started
        (no second login), else in a session of its own. None where this way does not work
        here: the caller asks over SFTP, which also says what is wrong. A folder on the way
        that is a symlink counts as holding nothing."""
        wanted = {common.check_key(key) for key in keys}
        if not wanted:
            return set()  # an empty question would read as none, and never be answered
        folders = sorted({posixpath.dirname(key) for key in wanted})
        if (
            self.works is False
            or len(folders) > _LISTED_FOLDERS
            or not all(_PLAIN_KEY.fullmatch(folder) for folder in folders)
        ):
            return None
        question = f"{' '.join(folders)}\n".encode()
        with self._spare_lock:
            spare = None if self._spare_asked else self._spare_push
            if spare is not None:
                self._spare_push = None  # this call's, until it is asked
        if spare is not None:
            # None: the server did not answer as it should, or in time; SFTP asks then, and
            # says what is wrong (one more OpenSSH login would wait as long again).
            found = self._ask_spare(spare, question, wanted)
            if found is not None:
                self._keep_spare(spare, push=True, asked=True)
            return found
        root = shlex.quote(self._target.root)
        script = "\n".join(
            [
                # No root yet (a first push): nothing there.
                f"[ -e {root} ] || [ -L {root} ] || {{ echo {LISTED.decode()}; exit; }}",
                f"cd -- {root} || exit 1",
                self._listing_script(),
            ]
        )
        delays = iter(self._delays)
        while True:
            try:
                with self._session(script) as session:
                    session.stdin.write(question)
                    session.stdin.close()
                    found = _listing(session, wanted)
            except _Dropped as exc:
                if not self.works:
                    return None  # paramiko's way says what is wrong, in its own words
                delay = next(delays, None)
                if delay is None:
                    raise self._given_up("check", self._target.root, str(exc)) from None
                time.sleep(delay)
                continue
            except _NotBulk:
                return None
            # ``works`` stays as it was: the way that moves objects has yet to prove itself.
            self._reached()
            return found

    def _ask_spare(self, spare: Session, question: bytes, wanted: set[str]) -> set[str] | None:
        """``wanted``'s keys the waiting push session finds before it reads its stream; None
        (the session gone) if it does not answer as it should."""
        spare.arm()
        try:
            spare.stdin.write(question)
            spare.stdin.flush()
            found = _listing(spare, wanted)
        except (_NotBulk, OSError):
            spare.close()
            # The push's stream needs what its question did (a login, sh, find): before the
            # way ever worked, paramiko's takes the rest, as after any first failure (_bulk).
            self.works = self.works or False
            return None
        spare.disarm()  # silent again until its stream comes
        self._reached()
        return found

    def _keep_spare(self, session: Session, push: bool, asked: bool = False) -> None:
        """Keep ``session`` for the next call that takes one (a push's if ``push``); where
        another thread kept one meanwhile, end it."""
        with self._spare_lock:
            if push and self._spare_push is None:
                self._spare_push, self._spare_asked = session, asked
                return
            if not push and self._spare is None:
                self._spare = session
                return
        session.close()

    def _listing_script(self) -> str:
        """The shell script that answers the question on its first line (the folders to
        list, blank-separated; none: no question) with their regular files, then LISTED."""
        return "\n".join(
            [
                "set -f; IFS=' '",  # the folders split at blanks, never globbed
                "read -r ASK || exit 1",  # one byte at a time from a pipe: no more than its line
                'if [ -n "$ASK" ]; then',
                # A folder absent makes find say so and end with 1; find missing, with 127.
                # -P (find's default): a folder that is a symlink is not followed.
                "  find $ASK -maxdepth 1 -type f 2>/dev/null",
                '  [ "$?" -le 1 ] || exit 1',
                f"  echo {LISTED.decode()}",
                "fi",
                "unset IFS; set +f",
            ]
        )

    def put_many(
        self,
        items: Sequence[tuple[str, str]],
        sent: Callable[[int, int], None] | None = None,
        more: bool = False,
    ) -> Iterator[tuple[str, int]]:
        """Upload many (source file, key) pairs as ``tar`` streams through OpenSSH's client,
        unpacked into a staging folder on the server and moved into place a folder at a time
        (a killed push leaves no object under its name half-written); yield each key once it
        is in place, with its size. ``sent(1, size)`` hears of each object as it leaves.
        Keys not yielded are the caller's to put one by one. With ``more`` (a push's manifests
        follow its files), the next call's session logs in while this one streams."""
        remaining = {
            key: source
            for source, key in items
            if _PLAIN_KEY.fullmatch(common.check_key(key))  # others go over SFTP
        }
        yield from self._bulk(remaining, "write", lambda rest: self._put_session(rest, sent, more))

    def prepare_put(self) -> None:
        """A ``put_many`` follows soon: start its first session now, so that its login and the
        server's shell start while the caller still asks what the remote has."""
        with self._spare_lock:
            if self.works is False or self._spare_push is not None:
                return
        argv = self._argv(self._placing_script())
        if argv is not None:
            self._keep_spare(Session(argv, self._target.timeout, armed=False), push=True)

    def _put_session(
        self,
        remaining: dict[str, str],
        sent: Callable[[int, int], None] | None,
        more: bool,
    ) -> Iterator[tuple[str, int]]:
        with self._spare_lock:
            started, self._spare_push = self._spare_push, None
            asked, self._spare_asked = self._spare_asked, False
        with self._session(self._placing_script(), started) as session:
            if more:
                self.prepare_put()  # the next session logs in while this one streams
            if not asked:
                session.stdin.write(b"\n")  # no question
            # The script's heartbeat, read meanwhile, tells the watchdog the server is alive
            # while its tar writes what we sent.
            said: list[bytes] = []
            reader = threading.Thread(target=_listen, args=(session, said), daemon=True)
            reader.start()
            mtime = int(time.time())
            written: list[tuple[str, int]] = []
            vanished: list[str] = []
            total = 0
            whole = False  # whether the archive went out to its end
            try:
                for key, source in remaining.items():
                    try:
                        size = tarstream.write_member(
                            session.stdin, key, source, mtime, session.touch
                        )
                    except FileNotFoundError:
                        # Left the cache meanwhile (its open failed: nothing of it was
                        # written): the caller's to report, one by one, not another session's.
                        vanished.append(key)
                        continue
                    written.append((key, size))
                    total += size
                    if sent is not None:
                        sent(1, size)
                    if len(written) >= SESSION_OBJECTS or total >= SESSION_BYTES:
                        break
                tarstream.end(session.stdin)
                session.stdin.close()
                whole = True
            except BrokenPipeError:
                pass  # the server's side ended early: its exit status says why
            for key in vanished:
                del remaining[key]
            reader.join()
            self._ended(session)
            # A server that ended the stream early cannot have placed what it never got.
            if PLACED not in said or not whole:
                raise _NotBulk("the server did not say the objects were placed")
            yield from written

    def _placing_script(self) -> str:
        """The shell script that unpacks a push into a staging folder and links its objects
        into place, then says PLACED; it beats a heart meanwhile. A folder on the way that is
        no folder (a symlink above all) stops it before anything is placed. It names no key:
        it takes them from what it unpacked, so it can start before the keys are known."""
        staging = shlex.quote(f"{PUSH_STAGING}{os.urandom(8).hex()}")
        root = shlex.quote(self._target.root)
        # A fraction of a second where sleep takes one (GNU, BusyBox), else a second.
        beat = f"{{ sleep {self._target.timeout / 3:.2f} || sleep 1; }}"
        return "\n".join(
            [
                f"mkdir -p -- {root} && cd -- {root} || exit 1",
                # A question first (exists), asked while the push waits for its stream.
                self._listing_script(),
                # Its sleep must not hold the output open, or the session outlives the script.
                # Nor must it outlive a script killed by a signal (no EXIT trap runs then).
                f"( while kill -0 $$ 2>/dev/null; do echo .; {beat} >/dev/null 2>&1; done"
                ") & BEAT=$!",
                "trap 'kill \"$BEAT\" 2>/dev/null' EXIT",
                f"find . -maxdepth 1 -name '{PUSH_STAGING}*' -mtime +0 -exec rm -rf {{}} \\; "
                "2>/dev/null",
                f"S={staging} UNLINKED=",
                # Only its user may write in it (a shared remote's group could, by umask 002,
                # add what would then be placed); umask keeps a setgid root's group on it,
                # which BusyBox's mkdir -m drops.
                '(umask 077 && mkdir -- "$S") && (cd -- "$S" && exec tar -xof -) ||',
                '  { rm -rf -- "$S"; exit 1; }',
                # Names split at line ends only, never globbed (put_many sends plain keys).
                "set -f; IFS='\n'",
                # A find or ls that fails (a server without findutils) stops it: else it
                # would check no folder, place nothing, and say all was placed.
                'DIRS=$(cd -- "$S" && find . -type d ! -name .) && TOPS=$(ls -A -- "$S") ||',
                '  { rm -rf -- "$S"; exit 1; }',
                "for D in $DIRS; do",
                '  if [ -L "$D" ] || { [ -e "$D" ] && [ ! -d "$D" ]; }; then',
                '    echo "$D is no folder" >&2; rm -rf -- "$S"; exit 3',
                "  fi",
                "done",
                # A top folder the remote lacks (a first push) moves in one rename; into one
                # it has, hard links: each object takes its name whole, in one step. Where cp
                # cannot link (macOS), a rename per object.
                "for T in $TOPS; do",
                '  if [ ! -e "$T" ] && [ ! -L "$T" ] && mv -T -- "$S/$T" "$T" 2>/dev/null; then',
                "    continue",
                "  fi",
                '  cp -Rlf -- "$S/$T" . 2>/dev/null || UNLINKED=1',
                "done",
                'if [ -n "$UNLINKED" ]; then',
                '  FILES=$(cd -- "$S" && find . -type f) || { rm -rf -- "$S"; exit 1; }',
                "  for F in $(printf '%s\\n' \"$FILES\" | sed 's|/[^/]*$||' | sort -u); do",
                '    [ "$F" != . ] && [ -d "$S/$F" ] || continue',
                # Across file systems (a mount below the root) mv copies, straight into the
                # name, and a full disk left part of an object there: the objects go first to
                # a folder beside their own, then each takes its name in a rename.
                "    set +f",
                '    mkdir -p -- "$F/$S" && mv -f -- "$S/$F"/* "$F/$S"/ &&',
                '      mv -f -- "$F/$S"/* "$F"/ && rmdir -- "$F/$S" ||',
                '      { rm -rf -- "$S" "$F/$S"; exit 1; }',
                "    set -f",
                "  done",
                # Whatever the tools on the way did (a sort that fails), this way leaves no
                # object behind, or the script has not placed them all.
                '  [ -z "$(cd -- "$S" && find . -type f)" ] ||',
                '    { echo "objects were left unplaced" >&2; rm -rf -- "$S"; exit 1; }',
                "fi",
                'rm -rf -- "$S"',
                f"echo {PLACED.decode()}",
            ]
        )

    def _bulk(
        self,
        remaining: dict[str, str],
        action: str,
        session: Callable[[dict[str, str]], Iterator[tuple[str, T]]],
    ) -> Iterator[tuple[str, T]]:
        """Run ``session`` over what ``remaining`` still holds, yielding what it yields, until
        nothing remains or the way fails for good. A dropped connection is retried like any
        other operation's; before OpenSSH's way has ever worked, any failure leaves the rest to
        paramiko's, which then says what is wrong in its own words (or just works)."""
        if self.works is False:
            return
        delays = iter(self._delays)
        while remaining:
            moved = False
            try:
                for key, value in session(remaining):
                    del remaining[key]
                    if not moved:
                        moved = self.works = True
                        self._reached()
                    yield key, value
            except _Dropped as exc:
                if not self.works:
                    self.works = False
                    return
                if moved:  # it came back and moved objects: a new drop gets all its attempts
                    delays = iter(self._delays)
                delay = next(delays, None)
                if delay is None:
                    raise self._given_up(action, self._target.root, str(exc)) from None
                time.sleep(delay)
                continue
            except _NotBulk:
                self.works = self.works or False
                return
            self.works = True
            if not moved:
                return  # the server had none of them, or would not say: one by one, then

    @contextmanager
    def _session(self, script: str, started: Session | None = None) -> Iterator[Session]:
        """OpenSSH's client running the POSIX shell ``script`` on the server (whatever the
        login shell), or ``started`` (running it already); _NotBulk where the client cannot
        connect as paramiko would, or the root is no path a login shell reads the same."""
        if started is None:
            argv = self._argv(script)
            if argv is None:
                raise _NotBulk("OpenSSH's client cannot connect as configured")
            started = Session(argv, self._target.timeout)
        started.arm()
        with started as session:
            try:
                yield session
            except (tarstream.TarFormatError, BrokenPipeError):
                self._ended(session)
                raise _NotBulk("the server's answer was no tar stream") from None
            self._ended(session)

    def _argv(self, script: str) -> list[str] | None:
        """``ssh`` running the POSIX shell ``script`` on the server, or None where the client
        cannot connect as paramiko would, or the root is no path a login shell reads the same
        (the script names it)."""
        if not common.shell_safe(self._target.root):
            return None
        return command_line(self._target, f"sh -c {shlex.quote(script)}")

    def _ended(self, session: Session) -> None:
        """Wait for the session's end; raise _Dropped if its connection failed or fell silent,
        _NotBulk if the command on the server failed."""
        status = session.wait()
        if session.silent:
            raise _Dropped(silence(self._target.timeout))
        if status == CLIENT_FAILED:
            said = session.stderr_line()
            # ssh's own words for a server that stopped answering (ConnectTimeout, ServerAlive*)
            silent = "timed out" in said or "not responding" in said
            raise _Dropped(silence(self._target.timeout) if silent else said)
        if status != 0:
            raise _NotBulk(session.stderr_line())

    def close(self) -> None:
        with self._spare_lock:
            spares = (self._spare, self._spare_push)
            self._spare = self._spare_push = None
            self._spare_asked = False
        for spare in spares:
            if spare is not None:
                spare.close()


def _listing(session: Session, wanted: set[str]) -> set[str]:
    """The keys of ``wanted`` that the listing script, running in ``session``, names, read up
    to its last line (LISTED) and no further; _NotBulk if it ends before."""
    found: set[str] = set()
    # Lines of a known length at most: a hostile server's endless line is cut.
    while line := session.stdout.readline(_LISTED_LINE):
        session.touch()
        if line == LISTED + b"\n":
            return found
        if line.endswith(b"\n") and (key := line[:-1].decode(errors="replace")) in wanted:
            found.add(key)
    raise _NotBulk("the server's listing ended early")


def _feed(session: Session, data: bytes) -> None:
    """Write ``data`` to the session's command and close its input (a command that died
    meanwhile took only part of it: its exit says why)."""
    with suppress(OSError, ValueError):
        session.stdin.write(data)
        session.stdin.close()


def _write_hashing_aside(chunks: Iterator[bytes], fd: int) -> str:
    """Write ``chunks`` to ``fd`` and hash them in a thread of their own (writes and md5 let
    go of the GIL) while this one reads the next: a big object costs the slower of reading
    and writing, not their sum. Their md5."""
    digest = hashlib.md5()
    waiting: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    failed: list[OSError] = []
    # The writer's own descriptor, which it closes: a Ctrl-C that ends the wait for it lets the
    # caller close ``fd`` while chunks are still queued, and they must go to this file (by then
    # removed), never into the next file opened under that number.
    own = os.dup(fd)

    def write_and_hash() -> None:
        try:
            while (data := waiting.get()) is not None:
                if not failed:
                    digest.update(data)
                    try:
                        write_all(own, data)
                    except OSError as exc:  # a full disk: said once the stream is read
                        failed.append(exc)
        finally:
            os.close(own)

    writer = threading.Thread(target=write_and_hash, daemon=True)
    try:
        writer.start()
    except RuntimeError:  # no thread started: the descriptor is still ours
        os.close(own)
        raise
    try:
        for data in chunks:
            if failed:
                break
            waiting.put(data)
    finally:
        waiting.put(None)
        writer.join()
    if failed:
        raise failed[0]
    return digest.hexdigest()


def _listen(session: Session, said: list[bytes]) -> None:
    """Read what the command says, line by line, each a sign of life."""
    while line := session.stdout.readline(256):  # a line without end cannot fill memory
        session.touch()
        if line.rstrip(b"\n") == PLACED and not said:
            said.append(PLACED)  # once: a server repeating it cannot fill memory either
