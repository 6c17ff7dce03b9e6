"""The ssh set: `push` and `pull` over a real OpenSSH server on loopback, of the many set
(20,000 files of 4 KiB; quick: 2,000) and of the big one (1 GiB; quick: 64 MiB), for repro,
DVC 3 (dvc-ssh) and what people use instead: `rsync` over ssh (the floor column) and `sftp`
in batch mode; the pull also against `rsync` followed by `cp -al` (each file fetched once,
then a second name for it, as a pull with a hardlinked work tree makes). Scratch paths go into
their command lines unquoted: keep them plain. Each round pushes to a new folder on the server
and pulls into a fresh clone.

The server is a private `sshd` with throwaway keys, started for this set and stopped after
it; every command runs with a HOME of the set's own, whose ~/.ssh names the server. A tool
that is missing is said in one line and left out.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dataset import FULL, QUICK, Dataset, generate
from measure import Case, Run, Setup, Sides, Step, alternate, check_tree
from tools import DVC, Tool

if TYPE_CHECKING:
    from harness import Bench

SSHD = Path("/usr/sbin/sshd")
ALIAS = "repro-bench-sshd"
USER = getpass.getuser()
OPS = ("ssh_push", "ssh_pull")


def run(bench: Bench) -> None:
    if not any(bench.wanted(op) for op in OPS):
        return
    missing = [tool for tool in ("sshd", "rsync", "sftp") if not _found(tool)]
    if "sshd" in missing:
        bench.log("ssh set skipped: no /usr/sbin/sshd (apt-get install -y openssh-server)")
        return
    for tool in missing:
        bench.log(f"ssh set: {tool} is missing, left out (apt-get install -y {tool})")
    if bench.dvc and not _pip_install(bench.dvc):
        bench.log("ssh set: dvc-ssh is missing and could not be installed, DVC left out")
        missing.append("dvc")
    catalogue = QUICK if bench.args.quick else FULL
    base = bench.fresh("ssh")
    home = base / "home"
    env_home = bench.runner.env.get("HOME")
    with _sshd(base / "sshd") as port:
        _write_ssh_home(home, base / "sshd", port)
        bench.runner.env["HOME"] = str(home)  # every command of the set sees this ~/.ssh
        try:
            for name in bench.args.server_data.split(","):
                _dataset(bench, catalogue[name], base / name, port, missing)
        finally:
            if env_home is None:
                bench.runner.env.pop("HOME")
            else:
                bench.runner.env["HOME"] = env_home
    bench.trash.discard(base)


def _found(tool: str) -> bool:
    return SSHD.exists() if tool == "sshd" else shutil.which(tool) is not None


def _pip_install(dvc: DVC) -> bool:
    """dvc-ssh in DVC's virtualenv (DVC's ssh:// remotes need it), installed once."""
    python = str(dvc.venv / "bin" / "python")
    if subprocess.run([python, "-c", "import dvc_ssh"], capture_output=True).returncode == 0:
        return True
    return subprocess.run([python, "-m", "pip", "install", "-q", "dvc-ssh"]).returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _sshd(folder: Path) -> Iterator[int]:
    """A private sshd on 127.0.0.1 accepting a throwaway key for the current user."""
    folder.mkdir(parents=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd refuses to start without it
    for key in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True
        )
    shutil.copy(folder / "user_key.pub", folder / "authorized_keys")
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
        f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {folder}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\n"
        "UsePAM no\nSubsystem sftp internal-sftp\nMaxStartups 100\n"
    )
    server = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    for line in server.stderr:
        if "Server listening" in line:
            break
    server.stderr.close()  # it logs nothing more at the default level but errors
    try:
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def _write_ssh_home(home: Path, keys: Path, port: int) -> None:
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    host_key = " ".join((keys / "host_key.pub").read_text().split()[:2])
    (ssh / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (ssh / "config").write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n"
        f"  IdentityFile {keys}/user_key\n  UserKnownHostsFile {ssh}/known_hosts\n"
    )
    (ssh / "id_ed25519").write_bytes((keys / "user_key").read_bytes())
    (ssh / "id_ed25519").chmod(0o600)


def _dataset(bench: Bench, ds: Dataset, base: Path, port: int, missing: list[str]) -> None:
    r = bench.runner
    src = generate(ds, bench.scratch)
    bench.log(f"ssh set, {ds.name}: {ds.describe()}")
    tools: list[Tool] = [t for t in bench.tools if t.name not in missing]
    # OpenSSH reads the home of the passwd entry, not $HOME: it is told the config file.
    config = f"{bench.runner.env['HOME']}/.ssh/config"
    projects: dict[str, Path] = {}
    for tool in tools:
        proj = base / tool.name
        proj.mkdir(parents=True)
        tool.init(proj)
        shutil.copytree(src, proj / "data")
        r.run(tool.cmd("add", "-q", "data"), proj)
        r.run(["git", "add", "-A"], proj)
        r.run(["git", "commit", "-q", "-m", "data"], proj)
        projects[tool.name] = proj
    store = base / "store"  # the server's side: same machine, loopback
    store.mkdir()
    pushed: dict[str, Path] = {}

    def url(tool: Tool, folder: Path) -> str:
        if isinstance(tool, DVC):  # asyncssh: no ~/.ssh/config alias, so spelled out
            return f"ssh://{USER}@127.0.0.1:{port}{folder}"
        return f"ssh://{ALIAS}{folder}"

    def set_remote(tool: Tool, proj: Path, folder: Path) -> None:
        r.run(tool.cmd("remote", "add", "-d", "-f", "--local", "bench", url(tool, folder)), proj)

    def checked(
        command: Callable[[], Sequence[str] | str],
        cwd: Callable[[], Path],
        tree: Callable[[], Path],
    ) -> Step:
        """The timed command, then (untimed) proof that ``tree`` holds every file."""

        def step() -> Run:
            done = r.measure(command(), cwd())
            check_tree(tree(), ds.files, None)
            return done

        return step

    def push_side(tool: Tool) -> tuple[Setup, Step]:
        def setup(i: int) -> None:
            pushed[tool.name] = store / f"{tool.name}-{i}"
            set_remote(tool, projects[tool.name], pushed[tool.name])

        return setup, checked(
            lambda: tool.cmd("push", "-q"), lambda: projects[tool.name], lambda: pushed[tool.name]
        )

    def tool_push(name: str, command: str) -> tuple[Setup, Step]:
        def setup(i: int) -> None:
            pushed[name] = store / f"{name}-{i}"

        return setup, checked(
            lambda: command.format(dest=pushed[name]), lambda: base, lambda: pushed[name]
        )

    sides: Sides = {t.name: push_side(t) for t in tools}
    extra = {
        "floor": f"rsync -a -e 'ssh -F {config}' {src}/ {ALIAS}:{{dest}}/",
        "sftp": f"printf 'mkdir {{dest}}\\nput -r {src}/. {{dest}}\\n' "
        f"| sftp -F {config} -q -b - {ALIAS}",
    }
    for name, command in extra.items():
        if name == "floor" and "rsync" in missing or name == "sftp" and "sftp" in missing:
            continue
        sides[name] = tool_push(name, command)
    measured = bench.wanted("ssh_push")
    case = Case(ds.name, "ssh_push", "rsync -a over ssh")
    alternate(case, bench.args.repeat if measured else 1, sides)
    if measured:
        _record(bench, case)
    if not bench.wanted("ssh_pull"):
        return
    pulled: dict[str, Path] = {}

    def pull_side(tool: Tool, verb: str = "pull") -> tuple[Setup, Step]:
        """``verb`` "fetch": into the cache only, as rsync and sftp do (a pull as root also
        copies every file into the work tree, a second write of each)."""
        side = tool.name if verb == "pull" else f"{tool.name} {verb}"

        def setup(i: int) -> None:
            clone = base / f"clone-{side.replace(' ', '-')}-{i}"
            r.run(["git", "clone", "-q", str(projects[tool.name]), str(clone)], base)
            set_remote(tool, clone, pushed[tool.name])
            pulled[side] = clone

        return setup, checked(
            lambda: tool.cmd(verb, "-q"),
            lambda: pulled[side],
            lambda: pulled[side] / ("data" if verb == "pull" else ".repro/cache"),
        )

    def tool_pull(name: str, command: str, source: str) -> tuple[Setup, Step]:
        """``source``: whose pushed folder it pulls."""

        def setup(i: int) -> None:
            pulled[name] = base / f"pulled-{name}-{i}"

        return setup, checked(
            lambda: command.format(source=pushed[source], dest=pulled[name]),
            lambda: base,
            lambda: pulled[name],
        )

    sides = {t.name: pull_side(t) for t in tools}
    for tool in tools:
        if tool.name == "repro":
            sides["repro fetch"] = pull_side(tool, "fetch")
    rsync = f"rsync -a -e 'ssh -F {config}' {ALIAS}:{{source}}/ {{dest}}/"
    pulls: dict[str, tuple[str, str]] = {  # side: (whose pushed folder it pulls, command)
        "floor": ("floor", rsync),
        "sftp": (
            "sftp",
            f"mkdir {{dest}} && printf 'get -r {{source}}/. {{dest}}\\n' "
            f"| sftp -F {config} -q -b - {ALIAS}",
        ),
        # A pull's whole work done by the fastest tools: each file once (rsync, as into a
        # cache), then a second name for each (cp -al, as a work tree of hard links).
        "rsync+links": ("floor", f"{rsync} && cp -al {{dest}} {{dest}}.tree"),
    }
    for name, (source, command) in pulls.items():
        if source in pushed:
            sides[name] = tool_pull(name, command, source)
    case = Case(ds.name, "ssh_pull", "rsync -a over ssh")
    alternate(case, bench.args.repeat, sides)
    _record(bench, case)


def _record(bench: Bench, case: Case) -> None:
    bench.record(case)
    shown = ("sftp", "rsync+links")
    others = [f"{side} {case.median(side):.3f}s" for side in case.samples if side in shown]
    if others:
        bench.log(f"  {'':6} {'':18} " + "  ".join(others))
    case.note = "; ".join(
        f"{side} {case.median(side):.3f} s" for side in case.samples if side != "floor"
    )
