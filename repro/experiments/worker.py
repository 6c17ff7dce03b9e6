"""The child repro that runs experiments: one per job slot of ``exp run --run-all``, running
the experiments given to it one after another, so that a sweep pays one interpreter start, one
docker-py import and one container reaper per slot, not per experiment.

Each experiment still runs as commands of its own (checkout, then repro) in its own copy: its
own project, lock, memos and runner. What a command leaves behind in the process is either
keyed by the project (the parsed-stages memo follows the project it is attached to) or by
content (parsed params), or is forgotten here before the next experiment (the stage files
a command wrote, cwd, the experiment's name in the environment).

The parent writes one JSON line per experiment on a pipe of its own (stdin stays /dev/null:
nothing in a command may read a job as its input); the child answers with a line holding its
token and the exit code, on stdout and on stderr both, after all of that experiment's output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable
from typing import IO

from repro.experiments import IN_EXPERIMENT
from repro.runners.docker import reaper
from repro.stages import stage

# Interrupted commands exit with 128 + the signal; the slot then stops taking experiments.
_INTERRUPTED = 128


def serve(main: Callable[[list[str]], int], jobs_fd: int, token: str) -> None:
    """Run each job read from ``jobs_fd`` with the CLI's ``main`` (given, not imported: the
    command line is the layer above), until the parent closes the pipe."""
    reaper.keep()  # one reaper for the slot's containers, not one per experiment
    with os.fdopen(jobs_fd, "r", encoding="utf-8") as jobs:
        try:
            _serve(main, jobs, token)
        finally:
            reaper.close()


def _serve(main: Callable[[list[str]], int], jobs: IO[str], token: str) -> None:
    for line in jobs:
        job = json.loads(line)
        os.chdir(job["copy"])
        os.environ[IN_EXPERIMENT] = job["name"]
        # The baseline's outputs from the cache first, quietly: what the cache lacks, the
        # run makes or restores.
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            code = main(["checkout"])
        if code < _INTERRUPTED:
            code = main(job["argv"])
        stage.WRITTEN.clear()
        end = f"{token} {code}\n"
        for stream in (sys.stdout, sys.stderr):
            stream.write(end)
            stream.flush()
        if code >= _INTERRUPTED:
            return
