"""Running an experiment: a detached git worktree of its commit under ``.repro/tmp/exps``,
whose cache is the project's (so outputs and the run-cache are shared and nothing is copied),
reproduced by a separate repro process, committed, and recorded under ``refs/exps``.

Each copy has its own ``.repro/lock``, hash memo and links ledger, so copies run side by side
without lock fights; the one thing they share, the cache, is written atomically (temp name,
then rename), and two runs making the same object both end with the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from repro.config import Config
from repro.errors import ReproError
from repro.experiments.prepare import targets_of
from repro.experiments.refs import QUEUE, Experiment, git, ref_of
from repro.fsutil import remove_dead_stagings, staging_name
from repro.project import REPRO_DIR, check_repro_dir, check_untracked

if TYPE_CHECKING:
    from repro.project import Project

Log = Callable[[bytes], None]

# The child is a fresh interpreter given this one's search path (so it works from a zipapp,
# and from a checkout on PYTHONPATH), without the copy's folder: a project's own repro/ folder
# must not be imported. worker.py says what it does.
_BOOT = """\
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from repro.cli import main
from repro.experiments.worker import serve
serve(main, int(sys.argv[2]), sys.argv[3])
"""

_COPY = "copy-"

# git worktree add/prune edit .git/worktrees; one at a time within this process.
_worktrees = threading.Lock()


class Outcome(NamedTuple):
    name: str
    sha: str | None  # the experiment's commit; None when it failed
    error: str | None


def run(
    project: Project,
    worker: Worker,
    commit: str,
    baseline: str,
    name: str,
    targets: Sequence[str],
    log: Log,
) -> str:
    """Run the prepared ``commit`` as experiment ``name`` in ``worker``; its commit, recorded
    under its ref. A failure raises with the child's error; the copy is removed either way."""
    folder = project.tmp_dir / "exps"
    folder.mkdir(exist_ok=True)
    remove_dead_stagings(str(folder), _COPY)  # copies that a killed repro left behind
    copy = folder / staging_name(_COPY)
    with _worktrees:
        git(project.root, "worktree", "add", "--detach", "-q", str(copy), commit)
    try:
        # HEAD at the baseline, the prepared files in the index and work tree: the commit
        # made after the run has the baseline as its parent.
        git(copy, "reset", "-q", "--soft", baseline)
        _check_copy(copy, name)
        _share_cache(project, copy)
        _share_accounts(project, copy)
        # After "--" a target never reads as an option (the targets come from a commit
        # message, and experiments are fetched from other people's remotes).
        code, error = worker.run(copy, ["repro", "--", *targets], name, log)
        if code != 0:
            raise ReproError(f"experiment '{name}' failed: {error or f'exit code {code}'}")
        git(copy, "add", "-A")
        # Plumbing: no post-commit maintenance, no HEAD to move in a copy about to go.
        tree = git(copy, "write-tree").strip()
        sha = git(copy, "commit-tree", tree, "-p", baseline, stdin=f"repro exp: {name}\n".encode())
        sha = sha.strip()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        with _worktrees:
            git(project.root, "worktree", "prune", check=False)
    # The empty old value makes git refuse a name another run took meanwhile.
    git(project.root, "update-ref", ref_of(baseline, name), sha, "")
    return sha


def _check_copy(copy: Path, name: str) -> None:
    """Refuse a copy whose commit would have repro write where it should not: no .repro/ (repro
    there would find the project around it), or one that is a symlink or tracks per-machine
    files (a fetched experiment may plant config.local as a link to where the remotes'
    secrets would then be written)."""
    repro_dir = copy / REPRO_DIR
    if os.path.islink(repro_dir) or not repro_dir.is_dir():
        raise ReproError(
            f"experiment '{name}' has no .repro/ folder (or it is a symlink); commit a real one "
            "and retry"
        )
    check_repro_dir(repro_dir)
    check_untracked(copy)


def _share_cache(project: Project, copy: Path) -> None:
    """The copy's config.local is the project's (remotes' secrets, per-machine settings) with
    cache.dir pointing at the project's cache."""
    local = project.repro_dir / "config.local"
    if local.is_file():
        shutil.copyfile(local, copy / ".repro" / "config.local")
    Config(copy / ".repro").set("cache.dir", str(project.cache_dir.resolve()), local=True)


def _share_accounts(project: Project, copy: Path) -> None:
    """The docker runner's account tables of each image (.repro/tmp/accounts), made from the
    image alone: without them every copy would start and remove a container to read them."""
    accounts = project.tmp_dir / "accounts"
    if accounts.is_dir():
        shutil.copytree(accounts, copy / ".repro" / "tmp" / "accounts", dirs_exist_ok=True)


def _search_path() -> list[str]:
    import repro

    here = os.path.abspath(os.getcwd())
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(repro.__file__)))
    rest = [os.path.abspath(entry) for entry in sys.path if entry]
    return list(dict.fromkeys([package_parent, *(p for p in rest if p != here)]))


class Worker:
    """A child repro (worker.py) that runs experiments in their copies, one at a time; started
    on its first experiment, and again should it have died."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._jobs: IO[str] | None = None
        self._token = secrets.token_hex(8).encode()

    def _start(self) -> tuple[subprocess.Popen[bytes], IO[str]]:
        if self._process is not None and self._jobs is not None and self._process.poll() is None:
            return self._process, self._jobs
        self.close()
        read_fd, write_fd = os.pipe()
        try:
            command = [sys.executable, "-I", "-c", _BOOT, json.dumps(_search_path())]
            self._process = subprocess.Popen(
                [*command, str(read_fd), self._token.decode()],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._jobs = os.fdopen(write_fd, "w", encoding="utf-8")
        return self._process, self._jobs

    def run(self, copy: Path, argv: list[str], name: str, log: Log) -> tuple[int, str]:
        """Run repro ``argv`` in ``copy`` for experiment ``name``; its output goes to ``log``
        line by line as it comes. Its exit code and its first error line."""
        process, jobs = self._start()
        assert process.stdout is not None and process.stderr is not None
        errors: list[str] = []
        codes: list[int] = []

        def drain(stream: IO[bytes], errors: list[str] | None) -> None:
            for line in iter(stream.readline, b""):
                if line.startswith(self._token + b" "):
                    codes.append(int(line.split()[1]))
                    return
                if errors is not None and line.startswith(b"error: "):
                    errors.append(line[len(b"error: ") :].decode(errors="replace").strip())
                else:
                    log(line)

        reader = threading.Thread(target=drain, args=(process.stderr, errors), daemon=True)
        reader.start()
        try:
            try:
                jobs.write(json.dumps({"copy": str(copy), "name": name, "argv": argv}) + "\n")
                jobs.flush()
            except BrokenPipeError:
                pass  # it died: its exit code says so below
            drain(process.stdout, None)
            reader.join()
        except BaseException:
            # Ctrl-C reaches the child too (same process group); SIGTERM to repro alone does not.
            self.close(terminate=True)
            raise
        if len(codes) == 2 and codes[0] == codes[1]:
            return codes[0], errors[0] if errors else ""
        self.close()  # its output ended before its answer: it died
        code = process.returncode or 1
        return code, errors[0] if errors else f"its repro ended unexpectedly (exit code {code})"

    def close(self, terminate: bool = False) -> None:
        """End the child: it stops once told there is no more work, or at once if ``terminate``."""
        if self._jobs is not None:
            with contextlib.suppress(OSError):
                self._jobs.close()
            self._jobs = None
        if self._process is not None:
            if terminate:
                self._process.terminate()
            self._process.wait()
            self._process = None


def run_queued(
    project: Project, queued: Sequence[Experiment], jobs: int, log: Log
) -> list[Outcome]:
    """Run queued experiments, ``jobs`` at a time, each in its own copy; one failing does not
    stop the others. A run leaves the queue; a failed one stays queued."""

    idle: list[Worker] = []  # one per slot at most: a slot takes one, and gives it back
    everyone: list[Worker] = []
    taking = threading.Lock()

    def one(experiment: Experiment) -> Outcome:
        with taking:
            if not idle:
                everyone.append(Worker())
                idle.append(everyone[-1])
            worker = idle.pop()
        prefix = f"[{experiment.name}] ".encode()
        targets = targets_of(project.root, experiment.sha)
        try:
            sha = run(
                project,
                worker,
                experiment.sha,
                experiment.baseline,
                experiment.name,
                targets,
                lambda line: log(prefix + line),
            )
        except ReproError as exc:
            return Outcome(experiment.name, None, str(exc))
        finally:
            with taking:
                idle.append(worker)
        git(project.root, "update-ref", "-d", QUEUE + experiment.name, experiment.sha)
        return Outcome(experiment.name, sha, None)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(one, queued))
    finally:
        for worker in everyone:
            worker.close()
