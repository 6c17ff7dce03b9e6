"""A cluster worker's side of a task (repro/cluster/task.py), run in this process against the
test engine: what two workers sharing one REPRO_WORKER_CACHE, and hostile stages, do to it.
No Dask cluster is needed to show these, so none is started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_busybox_image

import docker
from repro import __version__
from repro.cluster import task
from repro.runners.spec import Image, Resources

IMAGE = "repro-test-redcluster:latest"


@pytest.fixture(scope="module")
def image_id(docker_client: docker.DockerClient) -> str:
    return build_busybox_image(docker_client, IMAGE)


def a_task(image_id: str, remote: Path, cmd: str, outputs: tuple[str, ...]) -> task.Task:
    return task.Task(
        session="worker-test",
        version=__version__,
        stage="s",
        cmd=cmd,
        image=Image(IMAGE, image_id),
        workdir=".",
        network="none",
        resources=Resources(),
        env=(),
        source_date_epoch=0,
        inputs=(),
        outputs=outputs,
        writable=(),
        remote_url=str(remote),
        remote_options=(),
    )


def _run_in_child(pickled: str) -> None:
    """The other worker: runs the task pickled in the file ``pickled``, prints its exit code
    and outputs."""
    import pickle

    result = task.run(pickle.loads(Path(pickled).read_bytes()))
    print(result.code, dict(result.outputs))


def test_a_worker_in_another_pid_namespace_keeps_its_scratch_while_another_cleans_up(
    image_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers on other hosts or in other containers share a cache folder: a pid of theirs
    means nothing here, so a running task's scratch must not be taken for a dead one's."""
    import pickle

    cache = tmp_path / "cache"
    monkeypatch.setenv(task.WORKER_CACHE, str(cache))
    (cache / "tasks" / f"{task.SCRATCH}dead").mkdir(parents=True)  # a dead worker's
    slow = a_task(image_id, tmp_path / "remote", "sleep 4; echo slow > out", ("out",))
    churn = "for i in $(seq 2000); do /bin/true; done; "  # a pid that this namespace lacks
    pickled = tmp_path / "slow.pickle"
    pickled.write_bytes(pickle.dumps(slow))
    here = Path(__file__).resolve().parent
    code = f"import test_cluster_worker as t; t._run_in_child('{pickled}')"
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c"]
        + [f'{churn}{sys.executable} -c "{code}"'],
        cwd=here,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), *sys.path])),
    )
    deadline = time.monotonic() + 60
    while len(os.listdir(cache / "tasks")) < 2 and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    quick = task.run(a_task(image_id, tmp_path / "remote", "echo quick > out", ("out",)))
    out, err = child.communicate(timeout=120)
    assert quick.code == 0
    assert child.returncode == 0, err
    assert out.decode().split(" ", 1)[0] == "0", out  # not "1": its folder vanished mid-stage
    assert os.listdir(cache / "tasks") == []  # the dead worker's went, and both of theirs


def test_a_worker_whose_engine_is_down_names_itself_in_one_line(
    image_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repro.errors import ReproError

    monkeypatch.setenv(task.WORKER_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(ReproError, match=r"^on worker local: no Docker engine answers at ") as err:
        task.run(a_task(image_id, tmp_path / "remote", "echo > out", ("out",)))
    assert "\n" not in str(err.value)
    assert os.listdir(tmp_path / "cache" / "tasks") == []
