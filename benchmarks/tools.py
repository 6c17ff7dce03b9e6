"""The two tools compared, repro and DVC: how each is installed, makes a project and spells
each verb. Both are pip-installed into a virtualenv of their own, so both start from a clean
interpreter, without whatever .pth files the running Python has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from machine import BENCH_IMAGE, ROOT
from measure import Runner
from trash import rmtree


class Tool:
    """repro or DVC: how to make a project and spell each verb."""

    name = ""
    exe = ""

    def __init__(self, runner: Runner) -> None:
        self.r = runner

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, *args]

    def init(self, proj: Path) -> None:
        raise NotImplementedError

    def set_link(self, proj: Path, kind: str | None) -> None:
        if kind is None:
            self.r.run(self.cmd("config", "--local", "--unset", "cache.type"), proj)
        else:
            self.r.run(self.cmd("config", "--local", "cache.type", kind), proj)

    def set_remote(self, proj: Path, url: Path) -> None:
        raise NotImplementedError

    def declare_metric(self, proj: Path) -> None:
        raise NotImplementedError


class Repro(Tool):
    name = "repro"

    def __init__(self, runner: Runner, venv: Path | None = None) -> None:
        super().__init__(runner)
        # The console script of the virtualenv, or the one next to this interpreter (not the
        # pyenv shim, not python -m).
        bin_dir = venv / "bin" if venv else Path(sys.executable).parent
        self.exe = str(bin_dir / "repro")
        if not os.access(self.exe, os.X_OK):
            self.exe = shutil.which("repro") or "repro"
        # The interpreter that imports this repro, for scripts that call its modules.
        self.python = str(bin_dir / "python3") if venv else sys.executable

    def init(self, proj: Path) -> None:
        self.r.run(["git", "init", "-q"], proj)
        self.r.run(self.cmd("init", "-q"), proj)
        # Hardlinks, as DVC is configured: the harness runs as root, whose default is
        # reflink-else-copy (0444 does not stop root from editing a linked file in place).
        self.r.run(self.cmd("config", "-q", "cache.type", "hardlink"), proj)

    def set_remote(self, proj: Path, url: Path) -> None:
        self.r.run(self.cmd("remote", "add", "-q", "-d", "-f", "--local", "bench", str(url)), proj)

    def declare_metric(self, proj: Path) -> None:
        self.r.run(
            self.cmd(
                "run",
                "-q",
                "--no-exec",
                "-f",
                "metrics.repro",
                "-M",
                "metrics.json",
                "--image",
                BENCH_IMAGE,
                "true",
            ),
            proj,
        )

    def version(self) -> str:
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True).stdout
        return out.strip().split()[-1] if out.strip() else "?"


class DVC(Tool):
    name = "dvc"

    def __init__(self, runner: Runner, venv: Path) -> None:
        super().__init__(runner)
        self.venv = venv
        self.exe = str(venv / "bin" / "dvc")

    def ensure(self) -> None:
        if os.access(self.exe, os.X_OK):
            return
        make_venv(self.venv, "dvc==3.*", what="DVC 3")

    def init(self, proj: Path) -> None:
        self.r.run(["git", "init", "-q"], proj)
        self.r.run(self.cmd("init", "-q"), proj)
        self.r.run(self.cmd("config", "core.analytics", "false"), proj)
        self.r.run(self.cmd("config", "cache.type", "hardlink"), proj)

    def set_remote(self, proj: Path, url: Path) -> None:
        self.r.run(self.cmd("remote", "add", "-d", "-f", "--local", "bench", str(url)), proj)

    def declare_metric(self, proj: Path) -> None:
        (proj / "dvc.yaml").write_text("metrics:\n- metrics.json\n")

    def version(self) -> str:
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True).stdout
        return out.strip() or "?"


def make_venv(venv: Path, requirement: str, what: str) -> None:
    """A new virtualenv at ``venv`` with ``requirement`` pip-installed (``what`` names it)."""
    print(f"installing {what} into {venv} …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", requirement], check=True)


def install_repro(rev: str, scratch: Path) -> tuple[Path, str]:
    """A virtualenv under the scratch dir with repro of commit ``rev`` pip-installed in it,
    and how the results name that commit."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    venv = scratch / f"repro-venv-{sha}"
    if not (venv / "bin" / "repro").exists():
        _install_commit(sha, venv, scratch)
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import repro; print(repro.__file__)"],
        cwd=scratch,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not found.startswith(str(venv)):
        raise SystemExit(f"{venv} imports repro from {found}, not from its own site-packages")
    last = subprocess.run(
        ["git", "log", "-1", "--format=%h", sha, "--", "repro"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return venv, f"{sha} (repro/ as of {last})" if last and last != sha else sha


def _install_commit(sha: str, venv: Path, scratch: Path) -> None:
    """pip-install the repro of commit ``sha`` into a new ``venv``, as a user would."""
    rmtree(venv)
    source = scratch / f"code-{sha}"
    rmtree(source)
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", sha, "repro", "pyproject.toml", "README.md"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    # Every extra: the remote sets need paramiko and boto3, the cluster set distributed.
    make_venv(venv, f"{source}[all]", what=f"repro {sha}")
    rmtree(source)
