"""Experiments between machines: their refs through a git remote, the cache objects their
commits need through the project's default data remote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from repro.errors import ReproError
from repro.experiments.refs import PREFIX, QUEUE, Experiment, git
from repro.history.needs import needs
from repro.history.revisions import History, Revision
from repro.remote_select import open_named_remote

if TYPE_CHECKING:
    from repro.objects.transfer import TransferSummary
    from repro.project import Project


def _objects(project: Project, shas: Sequence[str]) -> list[str]:
    revisions = [Revision(sha, sha) for sha in shas]
    return sorted(needs(History(project.root), revisions).objects)


def push(
    project: Project, git_remote: str, experiments: Sequence[Experiment], progress: bool
) -> TransferSummary:
    """The experiments' refs to ``git_remote``, then their data to the default remote."""
    from repro.objects.transfer import Transfer

    remote = open_named_remote(project, None)  # before git: no refs pushed without their data
    try:
        specs = [f"{e.ref}:{e.ref}" for e in experiments]
        git(project.root, "push", "-q", "--", git_remote, *specs)
        objects = _objects(project, [e.sha for e in experiments if not e.queued])
        return Transfer(remote, project.cache_dir, None, progress).push(objects)
    finally:
        remote.close()


def remote_refs(project: Project, git_remote: str, names: Sequence[str]) -> list[str]:
    """The experiment refs on ``git_remote`` called by ``names``; one line per unknown name."""
    listing = git(project.root, "ls-remote", "--refs", "--", git_remote, PREFIX + "*")
    refs = [line.split("\t")[1] for line in listing.splitlines() if "\t" in line]
    found: list[str] = []
    for name in names:
        matches = [ref for ref in refs if ref.rsplit("/", 1)[1] == name]
        if not matches:
            raise ReproError(
                f"'{git_remote}' has no experiment named '{name}'; "
                "'repro exp push' it from where it was made"
            )
        found += matches
    return found


def pull(
    project: Project, git_remote: str, names: Sequence[str], progress: bool
) -> TransferSummary:
    """Fetch the named experiments' refs from ``git_remote``, then their data."""
    from repro.objects.transfer import Transfer

    refs = remote_refs(project, git_remote, names)
    remote = open_named_remote(project, None)
    try:
        git(project.root, "fetch", "-q", "--", git_remote, *(f"+{ref}:{ref}" for ref in refs))
        shas = [
            git(project.root, "rev-parse", ref).strip() for ref in refs if not ref.startswith(QUEUE)
        ]
        return Transfer(remote, project.cache_dir, None, progress).fetch(_objects(project, shas))
    finally:
        remote.close()
