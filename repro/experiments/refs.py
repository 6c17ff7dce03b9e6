"""Where experiments live in git, and the git calls that read and move them.

The layout is DVC 3's, which its users know: an experiment is a commit whose parent is its
baseline, kept at ``refs/exps/<baseline[:2]>/<baseline[2:]>/<name>``; a queued one is a commit
holding the changed parameters, kept at ``refs/exps/queue/<name>`` until it runs. Refs, not
branches: the user's branches, index and work tree never move.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NamedTuple

from repro.errors import ReproError, UsageError

PREFIX = "refs/exps/"
QUEUE = PREFIX + "queue/"

# A hook or a wrapper script may export these for its own repository; the root alone counts.
_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")

# Generated names are two words, as DVC's are: easy to say and to type.
_ADJECTIVES = (  # noqa: SIM905 - a list of words reads better as words
    "amber brave calm dusky eager fuzzy gaudy hasty icy jolly keen lanky "
    "mossy nimble oaken plush quiet rusty sandy tidy umber vivid windy young zesty"
).split()
_NOUNS = (  # noqa: SIM905
    "acorn badger cider dingo ember falcon gecko heron iris jackal kiln lemur "
    "marten newt otter pecan quail raven sloth tapir urchin vole wren yak zebra"
).split()


class Experiment(NamedTuple):
    name: str
    sha: str  # the experiment's commit
    baseline: str  # the commit it was made from (its parent)
    queued: bool

    @property
    def ref(self) -> str:
        return QUEUE + self.name if self.queued else ref_of(self.baseline, self.name)


def ref_of(baseline: str, name: str) -> str:
    return f"{PREFIX}{baseline[:2]}/{baseline[2:]}/{name}"


def git(
    root: Path,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> str:
    """git's output in ``root``, hooks off (a post-checkout hook must not run repro in a copy
    being made); one line from git's own message when it fails."""
    full_env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    full_env.update(env or {})
    try:
        done = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", *args],
            cwd=root,
            env=full_env,
            input=stdin,
            capture_output=True,
        )
    except FileNotFoundError:
        raise ReproError("git is not installed; install it to use experiments") from None
    if check and done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise ReproError(f"git {args[0]} failed: {reason}")
    return done.stdout.decode(errors="surrogateescape")


def head(root: Path) -> str:
    found = git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
    if not found:
        raise ReproError("experiments need a commit to start from; commit your work first")
    return found


def listed(root: Path) -> list[Experiment]:
    """Every experiment and queued experiment, oldest first."""
    lines = git(
        root,
        "for-each-ref",
        "--sort=committerdate",
        "--format=%(refname)%00%(objectname)%00%(parent)",
        PREFIX,
    ).splitlines()
    found: list[Experiment] = []
    for line in lines:
        ref, sha, parents = line.split("\0")
        parent = parents.split(" ")[0]
        if ref.startswith(QUEUE):
            found.append(Experiment(ref[len(QUEUE) :], sha, parent, True))
            continue
        parts = ref[len(PREFIX) :].split("/")
        if len(parts) == 3:  # anything else under refs/exps is not ours to read
            found.append(Experiment(parts[2], sha, parts[0] + parts[1], False))
    return found


def find(root: Path, name: str, experiments: list[Experiment] | None = None) -> Experiment:
    """The experiment called ``name`` (or whose commit starts with it); one of HEAD's first."""
    everything = listed(root) if experiments is None else experiments
    matches = [e for e in everything if e.name == name]
    if not matches and len(name) >= 7:
        matches = [e for e in everything if e.sha.startswith(name.lower())]
    if len(matches) > 1:
        base = git(root, "rev-parse", "--verify", "--quiet", "HEAD", check=False).strip()
        matches = [e for e in matches if e.baseline == base] or matches
    if not matches:
        raise ReproError(f"no experiment named '{name}'; 'repro exp show' lists them")
    if len(matches) > 1:
        raise ReproError(
            f"'{name}' names experiments of {len(matches)} baselines; give its commit "
            f"({', '.join(e.sha[:7] for e in matches)})"
        )
    return matches[0]


def check_name(name: str) -> None:
    """Refuse a name git cannot hold as one ref component."""
    done = subprocess.run(["git", "check-ref-format", QUEUE + name], capture_output=True)
    if done.returncode != 0 or "/" in name or name.startswith("-"):
        raise UsageError(f"'{name}' is not a valid experiment name; use letters, digits, - or _")


def new_name(taken: set[str]) -> str:
    """Two random words that ``taken`` does not hold."""
    import secrets  # here: exp show, which never names one, does not pay for its imports

    for _ in range(100):
        name = f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}"
        if name not in taken:
            return name
    return f"{name}-{secrets.token_hex(3)}"  # hundreds of experiments on one baseline


def taken_names(experiments: list[Experiment], baseline: str) -> set[str]:
    """Names a new experiment of ``baseline`` may not use: its siblings', and the queue's
    (a queued one will run as an experiment of its own baseline, under its name)."""
    return {e.name for e in experiments if e.queued or e.baseline == baseline}
