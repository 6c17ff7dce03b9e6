"""RESULTS.md: the table of one run, written from its JSON results (so --render can redo it)."""

from __future__ import annotations

from typing import Any

from targets import verdicts

OP_TITLES = {
    "version": "`--version` (startup)",
    "add": "cold `add`",
    "status": "`status`, nothing changed",
    "status_touched": "`status`, one file touched",
    "checkout_hardlink": "`checkout` after `rm -rf` (hardlink)",
    "checkout_copy": "`checkout` after `rm -rf` (copy)",
    "push": "`push` to a fresh folder remote",
    "pull": "`pull` into a fresh clone",
    "metrics_tags": "`metrics show -T`",
    "diff": "`diff --json` between two tags",
    "container": "stage running `true` (`repro repro -f`)",
    "canonical": "the same stage's container with the canonical environment (floor: without)",
    "sweep": "4-point sweep: `exp run --queue` ×4 + `--run-all -j 2`",
    "exp_show": "`exp show --json`, 20 experiments",
    "status_yaml": "`status`, 10-stage repro.yaml / dvc.yaml",
    "plots_show": "`plots diff` of 10 plots × 5 tags (HTML page)",
    "import": "`import` from a registry repository",
    "cluster_stage": "stage running `true` on a Dask worker (`repro repro -f --scheduler`)",
    "cluster_fan_out": "fan-out of 4 sleeping stages on 3 Dask workers",
    "ssh_push": "`push` to a fresh folder over ssh (sshd on loopback)",
    "ssh_pull": "`pull` into a fresh clone over ssh (sshd on loopback)",
    "s3_push": "`push` to a fresh S3 bucket (moto)",
    "s3_pull": "`pull` from S3 (moto) into a fresh clone",
}

# What every run's notes say: how the numbers were taken.
METHOD_NOTES = [
    "- The page cache is not dropped between runs (that needs privileges this shared machine "
    "does not give a benchmark, and would slow every other job): every tool and every floor "
    "reads data that is warm in memory. 'Cold' `add` means the files are new to the tool "
    "(fresh project, data just copied in), not that they are on disk only. Alternating the "
    "order each round gives all sides the same conditions, and a `sync` before every "
    "timed command keeps one side's dirty pages from slowing the next.",
    "- Trees removed between rounds of the many and mnist sets (the `rm -rf` before "
    "`checkout`, old remotes, clones and floor copies) are moved aside and deleted when "
    "the run ends. The disk is ext4 without a journal, which skips inodes freed in the "
    "last 60 s (up to 360 s) when it creates a file, one lookup each: creating 20,000 "
    "files just after deleting 20,000 costs seconds of "
    "kernel time in whichever command comes next (tool or floor), and made `cp -r` of the "
    "same files vary from 0.3 to 15 s. The tools see the same thing either way: the "
    "folder is gone.",
    "- Floors are single commands doing the same physical work: `md5sum` (via `find | xargs`, "
    "one core), `cp -al` (a hardlink per file), `cp -r` (a copy), a stat walk (`find -printf` "
    "of inode, mtime, size), `git cat-file --batch` for the metric blobs of every tag. The "
    "floor of `--version` is the bare interpreter start (`python3 -c pass`), which every "
    "Python command pays on top of the floors of the other rows.",
    "- Each tool is pip-installed into a virtualenv of its own (repro from the commit named "
    "above, with its extras; DVC 3 from PyPI), so both start from a clean interpreter; the "
    "start-up floor is that interpreter.",
    "- DVC is configured with `cache.type hardlink` (and `copy` for the copy case), like "
    "repro; its site cache lives in the scratch folder. Push goes to a new folder each round "
    "so that no remote index can short-cut it; pull clones the project anew each round.",
    "- `status, one file touched` bumps the mtime of one file (same bytes): the tool must "
    "notice it and re-hash that file only.",
]


def render(result: dict[str, Any]) -> str:
    lines = [
        *_header(result),
        *_results(result),
        "",
        "## Targets",
        "",
        "| case | target | measured | met |",
        "| --- | --- | ---: | :---: |",
    ]
    for label, target, measured, met in verdicts(result):
        lines.append(f"| {label} | {target} | {measured} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        "## Notes",
        "",
        *METHOD_NOTES,
        *_case_notes(result),
        *_noisy(result),
        "",
        "Regenerate: `python3 benchmarks/run.py` (full, about 20 minutes on this machine; the "
        "servers' sets only when named: `--sets s3` about 35 minutes, `--sets ssh` about 20) or "
        "`python3 benchmarks/run.py --quick --no-dvc` (90 seconds; what "
        "`tests/test_benchmarks_quick.py` runs).",
        "",
    ]
    return "\n".join(lines)


def _header(result: dict[str, Any]) -> list[str]:
    """The title, how the run was made, the machine, the versions and the datasets."""
    m = result["machine"]
    v = result["versions"]
    lines = [
        "# Benchmarks: repro vs DVC vs the physical floor",
        "",
        f"Produced by `{result['command']}` on {m['started']} "
        f"({m['duration_s']} s). Medians of {result['repeat']} alternating rounds; "
        "each round runs repro, DVC and the floor once, in an order that rotates.",
        "",
        "## Machine and versions",
        "",
        f"- {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}"
        + (", inside a container" if m["in_container"] else ""),
        f"- scratch `{m['scratch']}` on {m['scratch_fs']}",
        f"- load average before / after: {m['load_before']} / {m['load_after']} "
        "(the machine is shared with other builds: expect noise)",
        f"- Python {v['python']}, repro {v['repro']} at commit {v['repro_commit']}, "
        f"DVC {v['dvc'] or 'not run'}, git {v['git']}, Docker engine {v['docker'] or 'none'}",
        "",
        "## Datasets (fixed seed)",
        "",
    ]
    for name, desc in result["datasets"].items():
        lines.append(f"- **{name}**: {desc}")
    return lines


def _results(result: dict[str, Any]) -> list[str]:
    """The table of medians: a row per case, each side and its ratios."""
    return [
        "",
        "## Results",
        "",
        "Seconds (median). `repro/DVC` below 0.20 means repro is at least 5× faster. "
        "Peak = maximum resident set of the command's process tree (`/usr/bin/time %M`).",
        "",
        "| operation | set | repro s | DVC s | repro/DVC | floor | floor s | repro/floor "
        "| repro peak MB | DVC peak MB |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
        *(_row(c) for c in result["cases"]),
    ]


def _row(c: dict[str, Any]) -> str:
    repro, dvc, floor = (c.get(k, {}).get("median_s") for k in ("repro", "dvc", "floor"))
    rp, dp = c.get("repro", {}).get("peak_mb"), c.get("dvc", {}).get("peak_mb")
    return (
        f"| {OP_TITLES.get(c['op'], c['op'])} | {c['set']} | {_s(repro)} | {_s(dvc)} "
        f"| {_ratio(repro, dvc)} | {c['floor_cmd']} | {_s(floor)} | {_ratio(repro, floor)} "
        f"| {_mb(rp)} | {_mb(dp)} |"
    )


def _case_notes(result: dict[str, Any]) -> list[str]:
    """What some cases need said beside their row, in the order of the cases."""
    notes = []
    for c in result["cases"]:
        if c["op"] == "container":
            direct = c["extra"].get("true_directly_s", 0.0)
            repro, floor = c["repro"]["median_s"], c["floor"]["median_s"]
            notes.append(
                f"- Container: `true` run directly takes {direct * 1000:.1f} ms, so repro's "
                f"per-stage overhead is {repro - direct:.3f} s, of which {repro - floor:.3f} s "
                f"is beyond a bare `docker run --rm`. {c['note']}."
            )
        if c["op"] == "version" and c.get("dvc"):
            bar = c["dvc"]["median_s"] / 5
            verdict = "met" if c["repro"]["median_s"] <= bar else "not met"
            notes.append(
                f"- Start-up: being 5× faster than DVC's `--version` "
                f"({c['dvc']['median_s'] * 1000:.0f} ms) means answering in "
                f"{bar * 1000:.0f} ms ({verdict}), while the bare "
                f"interpreter alone takes {c['floor']['median_s'] * 1000:.0f} ms."
            )
        if c["op"] == "pull" and c["set"] == "big" and c.get("dvc"):
            notes.append(
                "- Pull verifies the md5 of every downloaded object before it enters the cache, "
                "and its floor includes that `md5sum`; DVC does not verify objects from a "
                "folder remote (its `remote.verify` is off by default), so on one big file "
                "repro pays one more md5 pass than DVC."
            )
        if c["op"] == "add" and c["extra"].get("md5sum_s"):
            notes.append(
                f"- {c['set']}: `md5sum` alone over the dataset takes "
                f"{c['extra']['md5sum_s']:.3f} s."
            )
    return notes


def _noisy(result: dict[str, Any]) -> list[str]:
    """A note naming the sides whose rounds varied more than 2×, if any did."""
    noisy = []
    for c in result["cases"]:
        for side in ("repro", "dvc", "floor"):
            runs = c.get(side, {}).get("runs_s") or []
            if len(runs) > 1 and min(runs) > 0 and max(runs) / min(runs) > 2:
                noisy.append(f"{c['set']}/{c['op']} ({side} {min(runs):.2f}–{max(runs):.2f} s)")
    if not noisy:
        return []
    return [
        "- Rounds that varied more than 2× (min–max), mostly writes of many new files on a "
        "shared disk: " + "; ".join(noisy) + ". Read those rows with care."
    ]


def _s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _mb(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"
