"""One rule for a metric file's format, for `repro run -M` and `metrics show` alike: what the
file name's last dot says."""

from __future__ import annotations

import pytest

from repro.metrics.formats import format_of


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metrics.json", "json"),
        ("m/scores.YML", "yaml"),
        ("eval/table.tsv", "tsv"),
        ("m/.json", "json"),  # what `metrics show` always read it as
        ("v1.2/metrics", "raw"),  # a dot in a folder says nothing
        ("accuracy", "raw"),
        ("archive.tar.gz", "raw"),
    ],
)
def test_the_format_is_what_the_file_name_says(path: str, expected: str) -> None:
    assert format_of(path) == expected
