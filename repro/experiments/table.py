"""What ``exp show`` and ``exp diff`` read: the parameters and metrics of baselines and their
experiments, straight from git (no checkout), all revisions in a few batched git calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from repro import paramfiles
from repro.errors import ReproError
from repro.experiments.refs import Experiment
from repro.history.params import used_params
from repro.history.revisions import Revision
from repro.metrics.readings import Missing, flatten, read_metrics

if TYPE_CHECKING:
    from repro.history.revisions import History


class Record(NamedTuple):
    """One row: a baseline (``baseline`` None) or an experiment of one."""

    name: str
    rev: str
    baseline: str | None
    queued: bool
    params: dict[str, dict[str, Any]]  # params file -> its mapping
    metrics: dict[str, Any]  # metric path -> the selected value (None: unreadable)

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    def flat(self) -> dict[str, Any]:
        """Scalar leaves as ``file:key`` columns, metrics first."""
        columns: dict[str, Any] = {}
        for group in (self.metrics, self.params):
            for path, value in group.items():
                for key, leaf in flatten(value).items():
                    columns[f"{path}:{key}" if key else path] = leaf
        return columns


def records(
    history: History,
    object_bytes: Callable[[str], bytes | None],
    rows: Sequence[tuple[Revision, Experiment | None]],
) -> list[Record]:
    """A Record for each (revision, its experiment if it is one). A queued experiment has not
    run: its parameters are shown, no metrics."""
    # Every revision's trees and stage files in a few git calls, not a few per revision.
    history.prefetch(revision for revision, _ in rows)
    ran = [revision for revision, experiment in rows if not (experiment and experiment.queued)]
    readings = iter(read_metrics(history, object_bytes, ran, [], None, None))
    # params.yaml, and every file the stages of these revisions take params from.
    used = used_params(history, [revision for revision, _ in rows])
    files = sorted({paramfiles.DEFAULT_FILE, *(path for path, _key in used)})
    contents = iter(history.read_many([(rev, file) for rev, _ in rows for file in files]))
    found: list[Record] = []
    for revision, experiment in rows:
        params: dict[str, dict[str, Any]] = {}
        for file in files:
            data = next(contents)
            if data is not None:
                try:
                    params[file] = paramfiles.parse(data, file)
                except ReproError:
                    params[file] = {}  # broken at that revision: shown empty, not fatal
        metrics: dict[str, Any] = {}
        if not (experiment and experiment.queued):
            metrics = {
                path: None if isinstance(reading, Missing) else reading.value
                for path, reading in next(readings).items()
            }
        assert revision.sha is not None
        found.append(
            Record(
                name=revision.label,
                rev=revision.sha,
                baseline=experiment.baseline if experiment else None,
                queued=bool(experiment and experiment.queued),
                params=params,
                metrics=metrics,
            )
        )
    return found


def shown(
    history: History,
    object_bytes: Callable[[str], bytes | None],
    baselines: Sequence[Revision],
    experiments: Sequence[Experiment],
) -> list[Record]:
    """Each baseline followed by its experiments (queued ones last)."""
    rows: list[tuple[Revision, Experiment | None]] = []
    seen: set[str] = set()
    for baseline in baselines:
        if baseline.sha is None or baseline.sha in seen:
            continue
        seen.add(baseline.sha)
        rows.append((baseline, None))
        mine = [e for e in experiments if e.baseline == baseline.sha]
        rows += [(Revision(e.name, e.sha), e) for e in sorted(mine, key=lambda e: e.queued)]
    return records(history, object_bytes, rows)
