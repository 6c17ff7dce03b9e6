"""The targets the benchmarks check: repro at least 5× faster than DVC and within 3× of the
floor on the sets of many files, hashing within 1.3× of md5sum on one big file, and peak
memory no higher than DVC's anywhere."""

from __future__ import annotations

from typing import Any

# Cases whose only target is the ratio to DVC (issue 19's): the floor of a diff, sort and comm
# of two manifests, takes less than the interpreter's start, which no Python command escapes.
DVC_ONLY = frozenset({"diff"})


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(case, target, measured, met) for every target the issue sets."""
    out = []
    for c in result["cases"]:
        repro, dvc, floor = (c.get(k, {}).get("median_s") for k in ("repro", "dvc", "floor"))
        label = f"{c['set']} / {c['op']}"
        if c["set"] in ("many", "mnist", "pipeline", "exps", "plots") or c["op"] == "version":
            if dvc and repro:
                out.append(
                    (label, "repro ≥5× faster than DVC", f"{dvc / repro:.1f}×", dvc / repro >= 5)
                )
            if floor and repro and c["op"] not in DVC_ONLY:
                out.append((label, "repro ≤3× floor", f"{repro / floor:.1f}×", repro / floor <= 3))
        if c["set"] == "big" and c["op"] in ("add", "status_touched"):
            md5 = c["extra"].get("md5sum_s") or floor
            if md5 and repro:
                out.append(
                    (label, "hashing ≤1.3× md5sum", f"{repro / md5:.2f}×", repro / md5 <= 1.3)
                )
        if c["op"] == "canonical" and floor and repro:
            # Issue 22: "no measurable time"; 5% is below this machine's round-to-round spread.
            out.append(
                (
                    label,
                    "canonical env ≤1.05× without",
                    f"{repro / floor:.2f}×",
                    repro / floor <= 1.05,
                )
            )
        rp, dp = c.get("repro", {}).get("peak_mb"), c.get("dvc", {}).get("peak_mb")
        if rp and dp:
            out.append((label, "peak memory ≤ DVC's", f"{rp:.0f} vs {dp:.0f} MB", rp <= dp))
    return out
