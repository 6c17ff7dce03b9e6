"""Parameter files: each format read, a dotted key found or not, one value changed and written
back in the same format, and one line for a file that does not parse."""

from __future__ import annotations

import pytest

from repro import paramfiles
from repro.errors import ReproError

TEXTS = {
    "params.yaml": b"train:\n  lr: 0.1\n  epochs: 10\nseed: 7\n",
    "p.json": b'{"train": {"lr": 0.1, "epochs": 10}, "seed": 7}',
    "p.toml": b"seed = 7\n[train]\nlr = 0.1\nepochs = 10\n",
}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_each_format_reads_changes_and_writes_back(name: str) -> None:
    params = paramfiles.parse(TEXTS[name], name)
    assert paramfiles.lookup(params, "train.lr") == 0.1
    assert paramfiles.lookup(params, "seed") == 7
    assert not paramfiles.has(params, "train.momentum")
    paramfiles.assign(params, "train.lr", paramfiles.parse_value("0.2"))
    with pytest.raises(KeyError):
        paramfiles.assign(params, "train.momentum", 1)
    again = paramfiles.parse(paramfiles.dumps(params, name), name)
    assert again == {"train": {"lr": 0.2, "epochs": 10}, "seed": 7}


@pytest.mark.parametrize(
    ("name", "data"),
    [("params.yaml", b"a: [1,\n"), ("p.json", b"{"), ("p.toml", b"a = \n"), ("p.yaml", b"- 1\n")],
)
def test_a_file_that_does_not_parse_is_one_line(name: str, data: bytes) -> None:
    with pytest.raises(ReproError) as caught:
        paramfiles.parse(data, name)
    message = str(caught.value)
    assert "\n" not in message and name in message and "fix" in message


def test_command_line_values_are_yaml_scalars() -> None:
    assert paramfiles.parse_value("3") == 3
    assert paramfiles.parse_value("true") is True
    assert paramfiles.parse_value("[1, 2]") == [1, 2]
    assert paramfiles.parse_value("adam") == "adam"
    assert paramfiles.parse_value("a: [") == "a: ["


def test_a_params_file_whose_aliases_expand_without_end_is_one_line() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    with pytest.raises(ReproError) as caught:
        paramfiles.parse("\n".join(lines).encode(), "params.yaml")
    message = str(caught.value)
    assert "expands to more than" in message and "\n" not in message
