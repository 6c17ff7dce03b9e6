"""The metrics of the workspace and of revisions: which files each declares, how each is read
(metrics/formats.py), and a memo of what was read of commits.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from repro.errors import ReproError
from repro.memo.store import Memo
from repro.metrics.formats import Value, format_of, parse, select

if TYPE_CHECKING:
    from repro.history.revisions import History, Revision


def flatten(value: Value, prefix: str = "") -> dict[str, Value]:
    """Leaves of nested mappings as dotted keys, for tables and diffs."""
    if isinstance(value, dict):
        flat: dict[str, Value] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


class Reading(NamedTuple):
    """A metric's selected value, with the xpath that selected it (for column names)."""

    value: Value
    xpath: str | None = None

    def leaves(self) -> dict[str, Value]:
        """Scalar leaves by dotted key; the key is "" for a plain scalar without xpath."""
        return flatten(self.value, self.xpath or "")


class Missing:
    """A metric that could not be read at a revision, with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Missing({self.reason!r})"


class _Plan(NamedTuple):
    """How one metric of one revision is read, and where its bytes come from."""

    path: str
    metric_type: str
    xpath: str | None
    cached: bool  # its bytes are in the cache, by md5
    source: bytes | int | None  # the bytes, an index into the files read from git, or None


def read_metrics(
    history: History,
    object_bytes: Callable[[str], bytes | None],
    revisions: Sequence[Revision],
    paths: list[str],
    metric_type: str | None,
    xpath: str | None,
    current: Mapping[str, Any] | None = None,
) -> list[dict[str, Reading | Missing]]:
    """For each revision, metric path → selected value (or Missing).

    Declared metrics come from the revision's stage files. How each is read (type, xpath)
    comes from the command line, else from ``current`` (the workspace's metric settings, so
    that a 'metrics modify' shows alike across all of history), else from the revision itself.
    Explicit ``paths`` that no stage declares are read too. A cached metric is read from the
    cache by its recorded md5 (``object_bytes`` gives the bytes, None when the cache lacks
    them). Every revision's files come from git together, in a few calls.

    A commit never changes, so what was read of it (asked the same way) is kept in the
    project's memo and not read again; only a revision with a metric from the cache is read
    each time, since a pull or a gc changes what the cache holds.
    """
    settings = tuple(sorted((path, m.type, m.xpath) for path, m in (current or {}).items()))
    asked = _Asked(tuple(paths), metric_type, xpath, settings)
    asked_key = tuple(asked)  # marshal keeps plain tuples only
    remembered: dict[Any, Any] = READINGS.load(history.root) or {}
    # By label too: a reading that fails says where ("... at v1.0").
    results: list[dict[str, Reading | Missing] | None] = [
        _decode(remembered[key]) if (key := (r.sha, r.label, asked_key)) in remembered else None
        for r in revisions
    ]
    pending = [r for r, result in zip(revisions, results, strict=True) if result is None]
    fresh = iter(_read(history, object_bytes, pending, asked))
    new = 0
    for at, revision in enumerate(revisions):
        if results[at] is not None:
            continue
        result, from_cache = next(fresh)
        results[at] = result
        if revision.sha is not None and not from_cache and (kept := _encode(result)) is not None:
            remembered[(revision.sha, revision.label, asked_key)] = kept
            new += 1
    if new:
        READINGS.store(history.root, remembered)
    return [result for result in results if result is not None]


# (commit, label, way of asking) -> readings; the oldest entries go first.
READINGS = Memo("metric-readings", 1, limit=4096)
_NOT_CACHED = "not in the cache; run 'repro pull'"


def _encode(result: dict[str, Reading | Missing]) -> tuple[Any, ...] | None:
    """A revision's readings in marshal's types; None when they cannot be kept (a YAML
    timestamp, say)."""
    encoded: list[tuple[str, bool, Any, str | None]] = []
    for path, reading in result.items():
        if isinstance(reading, Missing):
            encoded.append((path, False, reading.reason, None))
        else:
            encoded.append((path, True, reading.value, reading.xpath))
    try:
        marshal.dumps(encoded)
    except ValueError:
        return None
    return tuple(encoded)


def _decode(encoded: tuple[Any, ...]) -> dict[str, Reading | Missing]:
    return {
        path: Reading(value, the_xpath) if ok else Missing(value)
        for path, ok, value, the_xpath in encoded
    }


class _Asked(NamedTuple):
    """How metrics are asked for: read_metrics' arguments, in marshal's types (a memo key)."""

    paths: tuple[str, ...]
    metric_type: str | None
    xpath: str | None
    current: tuple[tuple[str, str | None, str | None], ...]  # (path, type, xpath), sorted


def _read(
    history: History,
    object_bytes: Callable[[str], bytes | None],
    revisions: Sequence[Revision],
    asked: _Asked,
) -> list[tuple[dict[str, Reading | Missing], bool]]:
    """read_metrics without the memo; with each result, whether a metric of it is cached."""
    if not revisions:
        return []
    paths, metric_type, xpath, settings = asked
    current = {path: (m_type, m_xpath) for path, m_type, m_xpath in settings}
    history.prefetch(revisions)
    plans: list[list[_Plan]] = []
    from_git: list[tuple[Revision, str]] = []
    for revision in revisions:
        declared: dict[str, tuple[str | None, str | None, str | None]] = {}  # type, xpath, md5
        for stage in history.stages_at(revision):
            for out in stage.outs:
                if out.metric is not None:
                    md5 = out.md5 if out.cache else None
                    declared[out.path] = (out.metric.type, out.metric.xpath, md5)
        plan: list[_Plan] = []
        for path in paths or sorted(declared):
            d_type, d_xpath, md5 = declared.get(path, (None, None, None))
            now = current.get(path)
            if now is not None:
                d_type, d_xpath = now[0] or d_type, now[1] if now[1] else d_xpath
            the_type = metric_type or d_type or format_of(path)
            the_xpath = xpath if xpath is not None else d_xpath
            # None: cached at an old revision, but not in the cache here
            source: bytes | int | None = None if md5 is None else object_bytes(md5)
            if source is None and (md5 is None or revision.sha is None):
                source = len(from_git)
                from_git.append((revision, path))
            plan.append(_Plan(path, the_type, the_xpath, md5 is not None, source))
        plans.append(plan)
    contents = history.read_many(from_git)
    results: list[tuple[dict[str, Reading | Missing], bool]] = []
    for revision, plan in zip(revisions, plans, strict=True):
        result: dict[str, Reading | Missing] = {}
        for path, the_type, the_xpath, cached, source in plan:
            data = contents[source] if isinstance(source, int) else source
            if data is None:
                if cached:
                    result[path] = Missing(_NOT_CACHED)
                else:
                    result[path] = Missing("no such file at this revision")
                continue
            where = f"{path} at {revision.label}"
            try:
                value = select(parse(data, the_type, where), the_xpath, the_type, where)
                result[path] = Reading(value, the_xpath)
            except ReproError as exc:
                result[path] = Missing(str(exc))
        results.append((result, any(step.cached for step in plan)))
    return results
