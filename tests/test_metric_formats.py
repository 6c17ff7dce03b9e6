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


def test_a_table_reads_as_records_of_numbers_and_a_short_row_is_one_line() -> None:
    from repro.errors import ReproError
    from repro.metrics.formats import parse

    table = b"step,acc,name\n0,0.5,a\n\n1,1e-3,b,extra\n"
    assert parse(table, "csv", "'t.csv'") == [
        {"step": 0, "acc": 0.5, "name": "a"},
        {"step": 1, "acc": 0.001, "name": "b"},
    ]
    with pytest.raises(ReproError) as caught:
        parse(b"step,acc\n0,0.5\n1\n", "csv", "'t.csv'")
    message = "metric 't.csv' is not valid csv (line 3 has 1 fields, the header 2)"
    assert str(caught.value) == message
