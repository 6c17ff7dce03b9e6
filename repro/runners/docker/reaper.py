"""A process that outlives repro and removes its containers when repro dies, even by kill -9.

The pattern of testcontainers' resource reaper ("ryuk"): repro starts the reaper, in its own
session, on the first container it creates, and keeps the write end of a pipe to it. The reaper
blocks reading; the kernel closes the pipe when repro exits for any reason, and the reaper then
removes every container labelled with this run's session id, and exits.

The reaper is a fresh interpreter (fork and exec), not a bare fork: repro creates containers from
threads, and a forked child of a threaded process inherits whatever locks other threads held. It
is handed repro's own sys.path, so it finds docker-py inside a shiv zipapp too. Only when the
interpreter cannot be run again (a private install under another uid) is it a forked copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

from repro.teardown import when_done

SESSION_LABEL = "repro.session"

# A container whose create call was in flight when repro died may appear after the first
# sweep; a second one catches it. Not needed after a clean end, which repro announces.
_SECOND_SWEEP_AFTER = 1.0
_CLEAN_END = b"."

_BOOT = "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); " + (
    "from repro.runners.docker.reaper import main; main(int(sys.argv[2]), sys.argv[3])"
)


class Reaper:
    """The repro side: a session id for labels, and the pipe that keeps the reaper waiting."""

    def __init__(self) -> None:
        self.session = secrets.token_hex(8)
        read_fd, self._write_fd = os.pipe()  # both O_CLOEXEC: no git or engine call inherits it
        try:
            try:
                _exec(read_fd, self.session)
            except OSError:
                # The interpreter cannot be run again (a private install, say): a forked copy
                # of this one will do, even though it shares the parent's state.
                _fork(read_fd, self.session)
        except BaseException:
            os.close(self._write_fd)
            raise
        finally:
            os.close(read_fd)

    def close(self) -> None:
        """Tell the reaper repro is done: it sweeps this session's containers and exits."""
        if self._write_fd >= 0:
            with contextlib.suppress(OSError):  # the reaper died: nothing to tell
                os.write(self._write_fd, _CLEAN_END)
            os.close(self._write_fd)
            self._write_fd = -1


def _exec(read_fd: int, session_id: str) -> None:
    # Not waited for: subprocess reaps it later, or init does once repro is gone.
    subprocess.Popen(
        [sys.executable, "-I", "-c", _BOOT, json.dumps(_search_path()), str(read_fd), session_id],
        pass_fds=(read_fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,  # Ctrl-C and a killed process group do not reach it
    )


def _fork(read_fd: int, session_id: str) -> None:
    """The reaper as a grandchild (init adopts it: no zombie left here) that keeps no
    descriptor of repro's but the pipe: not the project lock, not the write end."""
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            if os.fork() == 0:
                os.setsid()
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, read_fd)
                os.closerange(read_fd + 1, os.sysconf("SC_OPEN_MAX"))
                os.chdir("/")
                main(read_fd, session_id)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def _search_path() -> list[str]:
    """Where repro and docker-py were found, then the rest of sys.path but the working folder:
    a project's own docker/ or repro/ folder must not be imported by the reaper."""
    import repro
    from repro.runners.docker.client import import_docker

    docker = import_docker()
    here = os.getcwd()
    found = [os.path.dirname(os.path.dirname(module.__file__ or "")) for module in (repro, docker)]
    found += [os.path.abspath(entry) for entry in sys.path if os.path.abspath(entry) != here]
    return list(dict.fromkeys(found))


_lock = threading.Lock()
_reaper: Reaper | None = None
_kept = False


def keep() -> None:
    """Keep this process's reaper from one command to the next, in a process that runs many
    (an experiments worker): one reaper for them all, ended by :func:`close` or the exit."""
    global _kept
    _kept = True


def session() -> str:
    """This process's session id, starting its reaper on first use."""
    global _reaper
    with _lock:
        if _reaper is None:
            _reaper = Reaper()
            if not _kept:
                when_done(close)
        return _reaper.session


def close() -> None:
    """End this process's reaper, if it has one (the end of a command)."""
    global _reaper
    with _lock:
        if _reaper is not None:
            _reaper.close()
            _reaper = None


# -- the reaper process ----------------------------------------------------------------------
def main(read_fd: int, session_id: str) -> None:
    """Wait for the pipe to close, then remove this session's containers."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    clean = False
    with contextlib.suppress(OSError):
        while chunk := os.read(read_fd, 4096):
            clean = chunk.endswith(_CLEAN_END)
    # Only now: importing docker-py while the stage starts would take a core from it (on a
    # 2-core host that was most of a stage's overhead); the sweep waits the import instead.
    from repro.runners.docker.client import import_docker

    client = import_docker().from_env(timeout=60)
    label = {"label": f"{SESSION_LABEL}={session_id}"}
    _sweep(client, label)
    if not clean:
        time.sleep(_SECOND_SWEEP_AFTER)
        _sweep(client, label)


def _sweep(client: object, label: dict[str, str]) -> int:
    found = 0
    with contextlib.suppress(Exception):
        for container in client.containers.list(all=True, filters=label):  # type: ignore[attr-defined]
            found += 1
            with contextlib.suppress(Exception):
                container.remove(force=True)
    return found
