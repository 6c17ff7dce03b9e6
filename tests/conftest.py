"""Shared fixtures: real git repos in tmp, a real Docker engine, a tiny local test image."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import (
    GIT_ENV,
    PORTABLE_HOST,
    TEST_IMAGE,
    Project,
    _docker_client,
    build_busybox_image,
    git,
    portable_host,
)

if TYPE_CHECKING:
    import docker


# A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored
# across exec: every repro a test starts would then shrug off the Ctrl-C the test sends it.
# A handler set here is reset to the default in each child instead.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--portable-host",
        action="store_true",
        help="simulate a host without Linux-only calls and GNU find (see portable_host/)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--portable-host"):
        return
    tools = Path(tempfile.mkdtemp(prefix="repro-portable-"))
    config.add_cleanup(lambda: shutil.rmtree(tools))
    try:
        portable_host(os.environ, tools)
    except LookupError as exc:
        raise pytest.UsageError(str(exc)) from None
    sys.path.insert(0, str(PORTABLE_HOST))
    import sitecustomize  # noqa: F401 - the same hiding in this process as in the children


# They measure Linux's fast paths against GNU tools (benchmarks/run.py's floors use find -printf).
_LINUX_SPEED = ("test_benchmarks_quick.py", "test_benchmark_pipeline.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--portable-host"):
        return
    skip = pytest.mark.skip(reason="a speed test of Linux's fast paths, not of a portable host")
    # The linters read the source, whatever the host; mypy itself calls sched_getaffinity.
    lint = pytest.mark.skip(reason="linting does not depend on the host; mypy needs Linux's os")
    for item in items:
        if item.path.name in _LINUX_SPEED:
            item.add_marker(skip)
        elif item.path.name == "test_lint.py":
            item.add_marker(lint)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item (tests that count their own outcomes)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep tests out of the real $HOME and git config; make git commits deterministic."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("REPRO_LOG_DIR", str(home))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    proj = Project(root, capsys)
    proj.ok("init", "--image", TEST_IMAGE)
    proj.commit("init repro")
    return proj


@pytest.fixture
def public_project(capsys: pytest.CaptureFixture[str]) -> Iterator[Project]:
    """A project other users can reach (pytest's tmp folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="repro-public-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        git(root, "init", "-q")
        proj = Project(root, capsys)
        proj.ok("init", "--image", TEST_IMAGE)
        proj.commit("init repro")
        yield proj
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- Docker ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    client = _docker_client()
    build_busybox_image(client)
    return client


@pytest.fixture
def docker_project(project: Project, docker_client: docker.DockerClient) -> Iterator[Project]:
    yield project
    leftovers = docker_client.containers.list(
        all=True, filters={"label": f"repro.project={project.root}"}
    )
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, "repro left containers behind"
