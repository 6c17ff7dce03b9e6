"""The tutorial, end to end: ./start_environment.sh walkthrough, then ./start_environment.sh clone.

Builds the images when missing (several minutes the first time), runs the walkthrough in a
fresh environment container and the clone in another, and checks what a reader of the
tutorial sees: the messages, the data of every tag pulled from the remote, accuracies that
grow with data and filters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from e2e.e2e_helpers import ROOT, explain, run_script

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Generous: a cold first run builds the base, stage and environment images too.
TIMEOUT = 40 * 60


@pytest.fixture(scope="module")
def walkthrough(engine: None) -> subprocess.CompletedProcess[str]:
    return run_script(ROOT / "start_environment.sh", "walkthrough", timeout=TIMEOUT)


@pytest.fixture(scope="module")
def clone(walkthrough: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if walkthrough.returncode != 0:
        pytest.skip("the walkthrough failed")
    return run_script(ROOT / "start_environment.sh", "clone", timeout=TIMEOUT)


def last_json_object(text: str) -> dict[str, Any]:
    """The last top-level JSON object printed in text (it starts with '{' on its own line)."""
    starts = [match.start() for match in re.finditer(r"^\{", text, flags=re.MULTILINE)]
    assert starts, f"no JSON object in the output:\n{text[-2000:]}"
    value, _ = json.JSONDecoder().raw_decode(text[starts[-1] :])
    assert isinstance(value, dict)
    return value


def accuracy(value: object) -> float:
    """acc from a metric value: the number itself (xpath acc) or the whole {"acc", "loss"}."""
    if isinstance(value, dict):
        value = value["acc"]
    if isinstance(value, list):
        (value,) = value
    assert isinstance(value, (int, float)), value
    return float(value)


def test_walkthrough_tells_the_tutorial(walkthrough: subprocess.CompletedProcess[str]) -> None:
    assert walkthrough.returncode == 0, explain(walkthrough)
    out = walkthrough.stdout
    for expected in (
        "$$ repro init --image repro-mnist:latest",
        "$$ repro run -f load.repro -d code/load.py -d config/load.json -o data python3 code/",
        "ls: cannot access 'data'",  # after git checkout 0.0 && repro checkout
        "Pipeline is up to date. Nothing to reproduce.",
        "Dependency 'config/load.json' of 'load.repro' changed.",
        "Reproducing 'train.repro'",
        "$$ repro plots metrics -T -o /tmp/accuracy",
        "index.html",
        "$$ repro push -T",
        "walkthrough: done",
    ):
        assert expected in out, f"{expected!r} missing from the walkthrough's output"
    # `repro repro train.repro` after num_conv_filters 64 retrains but leaves load alone.
    partial = out.split("$$ repro repro train.repro", 1)[1].split("$$ ", 1)[0]
    assert "Reproducing 'train.repro'" in partial
    assert "Reproducing 'load.repro'" not in partial
    assert "Reproducing 'evaluate.repro'" not in partial


def test_clone_pulls_every_tag_and_accuracy_grows(clone: subprocess.CompletedProcess[str]) -> None:
    assert clone.returncode == 0, explain(clone)
    out = clone.stdout
    assert "ls: cannot access 'data'" in out  # the fresh clone has no data before the pull
    for tag, images in (("0.1", 1000), ("0.2", 2000), ("0.3", 3000)):
        assert f"{tag}: {images} images in data/" in out, (
            f"tag {tag} did not check out {images} images"
        )
    assert "0.0: no data/" in out

    metrics = last_json_object(out)
    acc = {tag: accuracy(metrics[tag]["model/metrics.json"]) for tag in ("0.1", "0.2", "0.3")}
    assert 0.5 < acc["0.1"] < acc["0.2"] < acc["0.3"], acc
    assert acc["0.3"] >= 0.93, acc


def _git(cwd: Path, *args: str) -> str:
    # The remote volume belongs to the walkthrough's user and this test may run as root: git
    # (and the upload-pack a clone starts) reads safe.directory from the global config only.
    config = Path(tempfile.gettempdir()) / "repro-e2e-gitconfig"
    config.write_text("[safe]\n\tdirectory = *\n")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(config))
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _repro(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repro", *args], cwd=cwd, capture_output=True, text=True
    )


def test_a_clone_at_another_path_by_another_user_makes_the_same_model(
    clone: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """The README's claim: the walkthrough's results come out bit for bit from a clone on the
    host, at another path, run by whoever runs the tests (root in CI, not the walkthrough's
    user), with the recorded images: nothing to commit afterwards."""
    assert clone.returncode == 0, explain(clone)
    remote = subprocess.run(
        ["docker", "volume", "inspect", "repro-remote", "--format", "{{.Mountpoint}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    project = tmp_path / "elsewhere" / "walkthrough"
    _git(tmp_path, "clone", "-q", f"{remote}/git-repo", str(project))
    steps = (
        ("remote", "add", "--local", "-f", "-d", "fake_remote", f"{remote}/repro-cache"),
        ("pull",),
        ("repro", "--pinned", "-f"),
    )
    for step in steps:
        done = _repro(project, *step)
        assert done.returncode == 0, f"repro {' '.join(step)}: {done.stdout}{done.stderr}"
    assert _git(project, "status", "--porcelain") == ""
    checked = _repro(project, "repro", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
