"""scripts/ensure-tools.sh, shared by scripts/test.sh, start_environment.sh and build-base.sh
(issue 17, item 1): a fresh host's missing tools are installed as root, or named in one line
with the apt-get command otherwise. The tools are absent for real: either hidden from the
script's search path, or (slow test) removed with apt-get and reinstalled by the script."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ensure-tools.sh"
TOOLS = ["docker", "dockerd", "busybox", "debootstrap", "git", "sshd", "python3"]


def _search_path(public: Path, without: set[str]) -> str:
    """A folder holding links to the tools this host has, except ``without``."""
    folder = public / "bin"
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool, path=f"{os.environ['PATH']}:/usr/sbin:/sbin")
        if found and tool not in without:
            (folder / tool).symlink_to(found)
    return str(folder)


def _run(*args: str, search: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "REPRO_TOOLS_PATH": search, "HOME": "/"}
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    return subprocess.run(
        [*prefix, "bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def public() -> Iterator[Path]:
    """A folder nobody can read too (pytest's tmp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="repro-tools-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def present() -> None:
    for tool in ("debootstrap", "busybox", "git"):
        if shutil.which(tool, path=f"{os.environ['PATH']}:/usr/sbin") is None:
            pytest.fail(f"{tool} is not installed on this host (scripts/test.sh installs it)")


def test_dry_run_names_exactly_what_is_missing(public: Path, present: None) -> None:
    search = _search_path(public, without={"debootstrap"})
    done = _run("--dry-run", "debootstrap", "busybox", "git", search=search)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "missing: debootstrap\n"
    done = _run("--dry-run", "busybox", "git", search=search)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_a_non_root_user_is_told_the_one_command_to_run(public: Path, present: None) -> None:
    search = _search_path(public, without={"debootstrap", "busybox"})
    done = _run("debootstrap", "busybox", "git", search=search, as_nobody=True)
    assert done.returncode == 1
    assert done.stderr == (
        "ensure-tools: error: debootstrap busybox-static missing; install with: "
        "sudo apt-get install -y debootstrap busybox-static\n"
    )
    assert done.stdout == ""


def test_an_unknown_tool_is_refused(tmp_path: Path) -> None:
    done = _run("--dry-run", "kubectl", search=str(tmp_path))
    assert done.returncode == 1 and "unknown tool 'kubectl'" in done.stderr


def test_the_set_up_commands_share_it() -> None:
    """One list of what to install: the test command, the walkthrough and build-base use it."""
    for user in (
        "scripts/test.sh",
        "start_environment.sh",
        "scripts/ensure-docker.sh",
        "docker/base/build-base.sh",
        "scripts/build-images.sh",
    ):
        text = (ROOT / user).read_text()
        assert "ensure-tools.sh" in text, user
        assert "apt-get install" not in text.replace("ensure-tools.sh", ""), user


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="removes and reinstalls a Debian package")
def test_a_removed_debootstrap_is_installed_again() -> None:
    """The fresh-host case for real: debootstrap removed with apt-get; the script (as the
    walkthrough's build-base.sh calls it) reinstalls it."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("not a Debian host")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        removed = subprocess.run(
            ["apt-get", "remove", "-y", "-q", "debootstrap"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert removed.returncode == 0, removed.stderr
        assert shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None
        done = subprocess.run(
            ["bash", str(SCRIPT), "debootstrap"], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        assert "installing debootstrap" in done.stderr
        assert shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is not None
    finally:  # leave the host as it was, whatever happened
        if shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None:
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "debootstrap"],
                env=env,
                capture_output=True,
                timeout=600,
            )
