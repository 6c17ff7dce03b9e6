"""The forked workers that spread per-file work over the cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from repro import workers


def pids(batch: Sequence[int]) -> list[tuple[int, int]]:
    return [(item, os.getpid()) for item in batch]


IN_ORDER = textwrap.dedent(
    """
    import json, os
    from repro import workers

    def pids(batch):
        return [(item, os.getpid()) for item in batch]

    parts = workers.run_parts(pids, workers.split(list(range(5000)), 3))
    print(json.dumps({"me": os.getpid(), "parts": parts}))
    """
)


def test_results_come_back_in_order_from_several_processes() -> None:
    # In a fresh interpreter: threads other tests leave behind in this one would (rightly)
    # keep the workers from forking.
    done = subprocess.run(
        [sys.executable, "-c", IN_ORDER], capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    flat = [item for part in found["parts"] for item, _pid in part]
    assert flat == list(range(5000))
    seen = {pid for part in found["parts"] for _item, pid in part}
    assert found["me"] in seen
    assert len(seen) == 3, "every part should run in its own process"


def test_small_inputs_stay_in_this_process() -> None:
    parts = workers.run_parts(pids, workers.split(list(range(50)), 4))
    assert {pid for part in parts for _item, pid in part} == {os.getpid()}


def test_no_fork_while_other_threads_run() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        parts = workers.run_parts(pids, workers.split(list(range(5000)), 2))
    finally:
        stop.set()
        other.join()
    assert [item for part in parts for item, _ in part] == list(range(5000))
    assert {pid for part in parts for _item, pid in part} == {os.getpid()}


def test_progress_counts_every_item() -> None:
    counted: list[int] = []
    parts = workers.split(list(range(4000)), 2)
    workers.run_parts(pids, parts, lambda done: counted.append(len(done)))
    assert sum(counted) == 4000


FAILING = textwrap.dedent(
    """
    import os, sys
    from repro import workers

    def sizes(batch):
        return [os.stat(path).st_size for path in batch]

    present, missing = sys.argv[1:]
    try:
        workers.run_parts(sizes, workers.split([present] * 3000 + [missing] + [present] * 10, 2))
    except FileNotFoundError as exc:
        print(exc.filename)
    """
)


def test_an_error_in_a_worker_reaches_the_parent(tmp_path: Path) -> None:
    present, missing = tmp_path / "here", tmp_path / "gone"
    present.write_bytes(b"abc")
    done = subprocess.run(
        [sys.executable, "-c", FAILING, str(present), str(missing)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(missing)  # raised in the second worker, re-raised here


def test_split_is_contiguous_and_complete() -> None:
    items = list(range(10_001))
    slices = workers.split(items, 3)
    assert len(slices) == 3
    assert [x for part in slices for x in part] == items
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


SLOW_JOB = textwrap.dedent(
    """
    import os, sys, time
    from repro import workers
    log = sys.argv[1]

    def slow(batch):
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\\n")
        time.sleep(0.05)
        return list(batch)

    print("started", flush=True)
    workers.run_parts(slow, workers.split(list(range(128 * 200)), 2))
    """
)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _processes_logged(path: Path) -> int:
    return len(set(path.read_text().split())) if path.exists() else 0


def _settle(path: Path, timeout: float = 10.0) -> int:
    """The line count once it stops growing (the workers are gone), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        now = _lines(path)
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"{path} kept growing: a worker outlived its parent")


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_workers_stop_when_the_parent_dies_or_is_interrupted(tmp_path: Path, how: str) -> None:
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_JOB, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    deadline = time.monotonic() + 20
    while _processes_logged(log) < 2:
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)
    if how == "kill":
        proc.kill()
    else:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    proc.wait(timeout=20)
    stopped_at = _settle(log)
    assert stopped_at < 200, "the work ran to its end instead of stopping"
    if how == "interrupt":
        assert proc.returncode != 0


LOCKED_JOB = textwrap.dedent(
    """
    import fcntl, os, sys, time
    from repro import workers
    lock, marks = sys.argv[1], sys.argv[2]
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a command holds .repro/lock
    parent = os.getpid()

    def slow(batch):
        if os.getpid() != parent:
            with open(marks, "w") as out:
                out.write(str(os.getpid()))
        time.sleep(60)  # one long batch: the worker never reaches its next check
        return list(batch)

    workers.run_parts(slow, [[1], [2]], batch=1)
    """
)


def test_a_worker_dies_with_its_killed_parent_and_frees_the_lock(tmp_path: Path) -> None:
    """kill -9 of a command while its worker is inside a batch: the worker, which inherited
    the project lock, dies at once, so the next command is not refused."""
    import fcntl

    lock, marks = tmp_path / "lock", tmp_path / "worker"
    proc = subprocess.Popen([sys.executable, "-c", LOCKED_JOB, str(lock), str(marks)])
    deadline = time.monotonic() + 20
    while not marks.exists() or not marks.read_text():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=20)
    fd = os.open(lock, os.O_RDWR)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the orphaned worker still holds the lock"
                time.sleep(0.05)
    finally:
        os.close(fd)
