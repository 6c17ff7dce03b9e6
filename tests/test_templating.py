"""repro.yaml templating: vars, ${…}, foreach/do and matrix resolved into plain stage
definitions, and one line for each mistake. The two ``*_as_dvc_*`` tests expect exactly what
DVC 3.67's own resolver gives for the same text read as a dvc.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from repro.errors import ReproError
from repro.stages.fields import Malformed
from repro.stages.templating import expand, load_yaml

Files = dict[str, dict[str, Any]]
PARAMS: dict[str, Any] = {"train": {"lr": 0.1, "epochs": 10, "layers": [8, 16]}, "seed": 7}


class Reader:
    """A read_vars callback over files held in memory, recording which paths were asked for."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.asked: list[str] = []

    def __call__(self, path: str) -> dict[str, Any]:
        self.asked.append(path)
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]


def stages(text: str, files: Files | None = None) -> dict[str, Any]:
    return expand(load_yaml(text), Reader({"params.yaml": PARAMS} if files is None else files))


def refused(text: str, files: Files | None = None) -> str:
    with pytest.raises(Malformed) as caught:
        stages(text, files)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_plain_stage_gets_the_default_image_unless_it_has_its_own() -> None:
    found = stages(
        "vars: [{tag: '1.36'}]\nimage: busybox:${tag}\nstages:\n"
        "  a: {cmd: echo a}\n  b: {cmd: echo b, image: alpine}\n"
    )
    assert found == {
        "a": {"cmd": "echo a", "image": "busybox:1.36"},
        "b": {"cmd": "echo b", "image": "alpine"},
    }


def test_a_whole_reference_keeps_its_type_and_a_part_becomes_text() -> None:
    found = stages(
        "vars: [{t: true, f: false, none: null, small: 1.0e-5}]\nstages:\n  s:\n"
        "    cmd: run ${train.lr} ${t} ${f} ${none} ${small}\n"
        "    deps: ${train.layers}\n    epochs: ${train.epochs}\n    flag: ${t}\n"
        "    whole: ${train}\n"
    )["s"]
    assert found["cmd"] == "run 0.1 true false None 1e-05"
    assert found["deps"] == [8, 16]
    assert found["epochs"] == 10 and found["flag"] is True
    assert found["whole"] == PARAMS["train"]
    found["whole"]["layers"].append(32)  # each stage gets its own copy
    assert PARAMS["train"]["layers"] == [8, 16]


def test_nested_keys_and_indexes() -> None:
    found = stages(
        "stages:\n  s:\n    cmd: ${train.layers[1]} ${train.layers.0} ${train.layers[-1]}"
        " ${ train.lr }\n"
    )
    assert found["s"]["cmd"] == "16 8 16 0.1"


def test_a_mapping_in_cmd_becomes_options_as_in_dvc() -> None:
    opts = {"epochs": 3, "name": "a b", "quiet": False, "sizes": [1, "x"], "verbose": True}
    files = {"params.yaml": {"opts": opts, "net": {"depth": {"max": 4}}}}
    found = stages("stages:\n  s: {cmd: 'fit ${opts} ${net}'}\n  t: {cmd: '${net}'}\n", files)
    assert found["s"]["cmd"] == "fit --epochs 3 --name 'a b' --sizes 1 x --verbose --depth.max 4"
    assert found["t"]["cmd"] == "--depth.max 4"


def test_a_backslash_escapes_a_reference_and_keys_are_templates_too() -> None:
    found = stages(
        "stages:\n  s:\n    cmd: echo \\${HOME} ${seed}\n"
        "    outs:\n      - out-${seed}.bin: {cache: false}\n"
    )["s"]
    assert found == {"cmd": "echo ${HOME} 7", "outs": [{"out-7.bin": {"cache": False}}]}


def test_params_yaml_is_read_by_default_and_may_be_listed_again() -> None:
    read_vars = Reader({"params.yaml": PARAMS})
    text = "vars: [params.yaml]\nstages:\n  s: {cmd: 'echo ${seed}'}\n"
    assert expand(load_yaml(text), read_vars)["s"]["cmd"] == "echo 7"
    assert read_vars.asked == ["params.yaml"]
    assert stages("stages:\n  s: {cmd: echo}\n", files={}) == {"s": {"cmd": "echo"}}


def test_a_vars_file_can_give_some_of_its_keys() -> None:
    files = {"conf.json": {"a": 1, "b": {"c": 2}, "z": 3}}
    text = "vars: ['conf.json:a,b']\nstages:\n  s: {cmd: 'echo ${a} ${b.c}'}\n"
    assert stages(text, files)["s"]["cmd"] == "echo 1 2"
    message = refused("vars: ['conf.json:a']\nstages:\n  s: {cmd: 'echo ${z}'}\n", files)
    assert message.startswith("stage 's': ${z} is not defined (vars: conf.json)")
    message = refused("vars: ['conf.json:a,nokey']\nstages: {}\n", files)
    assert message.startswith("vars file 'conf.json' has no key 'nokey'; add it there")


def test_vars_items_merge_mappings_key_by_key() -> None:
    text = (
        "vars: [{train: {momentum: 0.9}}]\nstages:\n  s: {cmd: 'm ${train.momentum} ${train.lr}'}\n"
    )
    assert stages(text)["s"]["cmd"] == "m 0.9 0.1"


def test_a_stages_own_vars_are_its_alone_and_found_from_its_wdir() -> None:
    files: Files = {"params.yaml": PARAMS, "sub/local.yaml": {"here": "x"}}
    text = (
        "stages:\n  a:\n    wdir: sub\n    vars: [local.yaml, {extra: 7}]\n"
        "    cmd: echo ${here} ${extra} ${seed}\n  b: {cmd: 'echo ${extra}'}\n"
    )
    assert refused(text, files).startswith("stage 'b': ${extra} is not defined")
    found = stages(text.split("  b:")[0], files)
    assert found == {"a": {"wdir": "sub", "cmd": "echo x 7 7"}}


def test_foreach_over_a_list_a_mapping_and_a_list_of_mappings() -> None:
    found = stages(
        "vars:\n  - langs: [en, fr]\n    recs: [{n: one}, {n: two}]\nstages:\n"
        "  lang:\n    foreach: ${langs}\n    do: {cmd: 'echo ${item}', outs: ['${item}.txt']}\n"
        "  zone:\n    foreach: {us: {tz: 1}, eu: {tz: 2}}\n"
        "    do: {cmd: 'echo ${key} ${item.tz}'}\n"
        "  rec:\n    foreach: ${recs}\n    do: {cmd: 'echo ${item.n}'}\n"
    )
    assert list(found) == ["lang@en", "lang@fr", "zone@us", "zone@eu", "rec@0", "rec@1"]
    assert found["lang@fr"] == {"cmd": "echo fr", "outs": ["fr.txt"]}
    assert [stage["cmd"] for stage in found.values()][2:] == [
        "echo us 1",
        "echo eu 2",
        "echo one",
        "echo two",
    ]


def test_matrix_names_each_point_by_its_values() -> None:
    found = stages(
        "vars: [{lrs: [0.1, 0.01]}]\nstages:\n  grid:\n    matrix:\n      lr: ${lrs}\n"
        "      arch: [cnn, {depth: 3}]\n      fast: [true]\n"
        "    cmd: g ${item.lr} ${key}\n    outs: ['m-${item.lr}.bin']\n"
        "  pair:\n    matrix: {a: [x, y], b: [1]}\n    cmd: p ${item.a}${item.b}\n"
    )
    assert list(found) == [
        "grid@0.1-cnn-true",
        "grid@0.1-arch1-true",
        "grid@0.01-cnn-true",
        "grid@0.01-arch1-true",
        "pair@x-1",
        "pair@y-1",
    ]
    assert found["grid@0.01-arch1-true"] == {
        "cmd": "g 0.01 0.01-arch1-true",
        "outs": ["m-0.01.bin"],
    }
    assert found["pair@y-1"] == {"cmd": "p y1"}


def test_resolves_as_dvc_does() -> None:
    """A dvc.yaml resolved by DVC 3.67's DataResolver gave exactly this (the image aside)."""
    files: Files = {
        "params.yaml": {
            "train": {"lr": 1e-05, "opt": {"name": "adam"}, "flags": {"fast": True}},
            "nothing": None,
        },
        "conf.json": {"a": 1, "b": {"c": [10, 20]}, "z": 3},
        "sub/local.yaml": {"here": "sub-value"},
    }
    text = r"""
vars:
  - conf.json:a,b
  - train: {epochs: 4}
    langs: [en, fr]
    grid: {lr: [1, 2], drop: [0.5]}
    recs: [{n: one, k: 1}, {n: two, k: 2}]
stages:
  s1:
    cmd: run ${train.lr} ${train.epochs} ${b.c[1]} ${a} ${train.flags.fast} ${nothing} '\${literal}'
    outs:
      - out/${train.opt.name}.bin:
          cache: ${train.flags.fast}
    params:
      - train.lr
  s2:
    wdir: sub
    vars: [local.yaml, {extra: 7}]
    cmd: echo ${here} ${extra}
  per:
    foreach: ${recs}
    do:
      cmd: echo ${item.n} ${item.k}
      outs: ["${item.n}.txt"]
  lang:
    foreach: ${langs}
    do:
      vars: [{suffix: x}]
      cmd: echo ${item}${suffix}
  m:
    matrix:
      lr: ${grid.lr}
      drop: ${grid.drop}
      lang: ${langs}
    cmd: t ${item.lr} ${item.drop} ${item.lang}
  inline:
    foreach: [a, 1, true, 2.5]
    do:
      cmd: echo ${item}
  bykey:
    foreach:
      us: {tz: 1}
      eu: {tz: 2}
    do:
      cmd: echo ${key} ${item.tz}
"""
    found = stages(text, files)
    commands = "\n".join(f"{name}: {stage.pop('cmd')}" for name, stage in found.items())
    assert commands == (
        "s1: run 1e-05 4 20 1 true None '${literal}'\n"
        "s2: echo sub-value 7\n"
        "per@0: echo one 1\nper@1: echo two 2\n"
        "lang@en: echo enx\nlang@fr: echo frx\n"
        "m@1-0.5-en: t 1 0.5 en\nm@1-0.5-fr: t 1 0.5 fr\n"
        "m@2-0.5-en: t 2 0.5 en\nm@2-0.5-fr: t 2 0.5 fr\n"
        "inline@a: echo a\ninline@1: echo 1\ninline@true: echo true\ninline@2.5: echo 2.5\n"
        "bykey@us: echo us 1\nbykey@eu: echo eu 2"
    )
    assert {name: stage for name, stage in found.items() if stage} == {
        "s1": {"outs": [{"out/adam.bin": {"cache": True}}], "params": ["train.lr"]},
        "s2": {"wdir": "sub"},
        "per@0": {"outs": ["one.txt"]},
        "per@1": {"outs": ["two.txt"]},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stage: {}\nstages: {}\n", "unknown key 'stage' at the top of repro.yaml"),
        ("vars: []\n", "repro.yaml has no 'stages'"),
        ("stages: [a]\n", "'stages' must be a mapping"),
        ("stages:\n  train:\n", "stage 'train' must be a mapping"),
        (
            "stages:\n  train: {cmd: 'fit ${model.lr}'}\n",
            "stage 'train': ${model.lr} is not defined (vars: params.yaml); define it in vars",
        ),
        (
            "vars: [{n: 1}]\nstages:\n  a: {foreach: [x], do: {cmd: '${item.n}'}}\n",
            "stage 'a@x': ${item.n} is not defined (vars: params.yaml, vars[0], foreach)",
        ),
        ("stages:\n  a: {cmd: '${train.layers[2]}'}\n", "stage 'a': ${train.layers[2]} is not"),
        ("stages:\n  a: {cmd: '${seed.x}'}\n", "stage 'a': ${seed.x} is not defined"),
        ("stages:\n  a: {cmd: '${train..lr}'}\n", "stage 'a': '${train..lr}' is not a valid"),
        ("stages:\n  a: {cmd: 'x${}'}\n", "stage 'a': '${}' is not a valid reference"),
        ("stages:\n  a: {foreach: 3, do: {cmd: x}}\n", "stage 'a': foreach must be a list or"),
        ("stages:\n  a: {foreach: '${seed}', do: {cmd: x}}\n", "not number '7'"),
        ("stages:\n  a: {foreach: 'abc', do: {cmd: x}}\n", "not text 'abc'"),
        ("stages:\n  a: {foreach: [x]}\n", "stage 'a' has no 'do'"),
        ("stages:\n  a: {do: {cmd: x}}\n", "stage 'a' has no 'foreach'"),
        ("stages:\n  a: {foreach: [x], do: {}, cmd: x}\n", "stage 'a': move cmd under do:"),
        ("stages:\n  a: {foreach: [x], do: x}\n", "stage 'a': do must be a mapping"),
        ("stages:\n  a: {foreach: [x], do: {}, matrix: {}}\n", "either foreach/do or matrix"),
        ("stages:\n  a: {matrix: {w: abc}, cmd: x}\n", "matrix axis 'w' must be a list"),
        ("stages:\n  a: {matrix: {w: '${seed}'}, cmd: x}\n", "axis 'w' must be a list"),
        ("stages:\n  a: {matrix: {}, cmd: x}\n", "stage 'a': matrix has no axis"),
        ("stages:\n  a: {matrix: [1], cmd: x}\n", "stage 'a': matrix must be a mapping"),
        ("stages:\n  a: {foreach: [x, x], do: {cmd: x}}\n", "stage 'a@x' is defined twice"),
        ("stages:\n  a: {foreach: [1, '1'], do: {cmd: x}}\n", "stage 'a@1' is defined twice"),
        (
            "stages:\n  a: {matrix: {p: [x-y, x], q: [z, y-z]}, cmd: x}\n",
            "stage 'a@x-y-z' is defined twice",
        ),
        ("stages:\n  a: {cmd: 'fit ${train.layers}'}\n", "stage 'a': ${train.layers} is a list"),
        ("stages:\n  a: {outs: ['${train}.txt']}\n", "is a mapping, which cannot be part of a"),
        ("stages:\n  a: {cmd: 'x ${b}'}\nvars: [{b: {c: [[1]]}}]\n", "holds a nested list"),
        ("stages:\n  'a:b': {cmd: x}\n", "stage name 'a:b' holds ':'"),
        ("stages:\n  a/b: {cmd: x}\n", "stage name 'a/b' holds '/'"),
        ("stages:\n  a@b: {cmd: x}\n", "stage name 'a@b' holds '@'"),
        ("stages:\n  a b: {cmd: x}\n", "stage name 'a b' holds ' '"),
        ("stages:\n  1: {cmd: x}\n", "stage name 1 must be text"),
        ("vars: a.yaml\nstages: {}\n", "vars must be a list of file names and mappings"),
        ("vars: [1]\nstages: {}\n", "vars[0] must be a file name or a mapping"),
        ("vars: ['${x}.yaml']\nstages: {}\n", "vars cannot use ${…}"),
        ("vars: [a.yaml]\nstages: {}\n", "vars: file 'a.yaml' does not exist; create it"),
        ("vars: [{seed: 8}]\nstages: {}\n", "vars: 'seed' from 'vars[0]' is already defined in"),
        (
            "stages:\n  a: {vars: [{train: {lr: 1}}], cmd: x}\n",
            "stage 'a': 'train.lr' from 'a.vars[0]' is already defined in 'params.yaml'",
        ),
        (
            "stages:\n  a: {foreach: [x], do: {vars: [{item: 1}], cmd: x}}\n",
            "stage 'a@x': vars cannot define 'item', which foreach sets",
        ),
        ("stages:\n  a: {vars: [b.yaml], wdir: sub, cmd: x}\n", "file 'sub/b.yaml' does not"),
        ("vars: ['params.yaml:seed']\nstages: {}\n", "which is already read whole (it is read"),
        ("image: ${nope}\nstages: {}\n", "image: ${nope} is not defined"),
    ],
)
def test_each_mistake_is_one_line(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_a_file_read_in_parts_may_not_be_read_again() -> None:
    files = {"c.yaml": {"a": 1, "b": 2}}
    assert "c.yaml:a,b" not in refused("vars: ['c.yaml:a', c.yaml]\nstages: {}\n", files)
    message = refused("vars: ['c.yaml:a', 'c.yaml:a']\nstages: {}\n", files)
    assert "reads keys of 'c.yaml' that are already read" in message
    assert stages("vars: ['c.yaml:a', 'c.yaml:b']\nstages: {}\n", files) == {}


def test_an_error_reading_a_vars_file_is_the_readers_own() -> None:
    def read_vars(path: str) -> dict[str, Any]:
        raise ReproError(f"params file '{path}' is not valid yaml; fix it")

    with pytest.raises(ReproError, match="params file 'params.yaml' is not valid yaml"):
        expand(load_yaml("stages: {}\n"), read_vars)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stages:\n  a: {cmd: x}\n  a: {cmd: y}\n", "stage 'a' is defined twice (line 3)"),
        ("stages:\n  a: {cmd: x, cmd: y}\n", "key 'cmd' given twice (line 2)"),
        ("stages: {}\nstages: {}\n", "key 'stages' given twice (line 2)"),
        ("a: [1,\n", "not valid YAML (line 2: "),
        ("a: !!python/object:os.system x\n", "not valid YAML"),
    ],
)
def test_load_yaml_refuses_repeated_keys_and_bad_yaml(text: str, expected: str) -> None:
    with pytest.raises(Malformed) as caught:
        load_yaml(text)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_load_yaml_reads_anchors_and_an_empty_text() -> None:
    assert load_yaml("") is None
    data = load_yaml("base: &b {cmd: x}\nstages:\n  a: *b\n  b: {<<: *b, image: i}\n")
    assert data["stages"] == {"a": {"cmd": "x"}, "b": {"cmd": "x", "image": "i"}}


def test_cmd_lists_and_list_valued_axes_resolve_as_dvc_does() -> None:
    """Also DVC 3.67's result on the same text as a dvc.yaml."""
    files = {
        "params.yaml": {
            "train": {"lr": 0.1, "epochs": 10},
            "opts": {"depth": {"max": 4}, "tags": ["a", "b c"], "dry": False},
            "list": ["x", "y"],
        }
    }
    text = """
stages:
  each:
    foreach: ${train}
    do:
      cmd:
        - echo ${key}=${item}
        - fit ${opts}
  mx:
    matrix:
      v: ${list}
      w: [[1, 2], [3]]
    vars: [{extra: e}]
    cmd: run ${item.v} ${item.w[0]} ${extra} ${key}
  lit:
    foreach:
      - ${train.lr}
      - ${train.epochs}
    do:
      cmd: echo ${item}
"""
    fit = "fit --depth.max 4 --tags a 'b c'"
    commands = {name: stage.pop("cmd") for name, stage in stages(text, files).items()}
    assert commands == {
        "each@lr": ["echo lr=0.1", fit],
        "each@epochs": ["echo epochs=10", fit],
        "mx@x-w0": "run x 1 e x-w0",
        "mx@x-w1": "run x 3 e x-w1",
        "mx@y-w0": "run y 1 e y-w0",
        "mx@y-w1": "run y 3 e y-w1",
        "lit@0.1": "echo 0.1",
        "lit@10": "echo 10",
    }


def test_a_matrix_beyond_the_stage_limit_is_one_line() -> None:
    axes = {f"a{n}": list(range(30)) for n in range(3)}  # 27,000 points
    with pytest.raises(Malformed) as caught:
        expand({"stages": {"grid": {"matrix": axes, "cmd": "true"}}}, Reader({}))
    assert "more than 10,000 stages" in str(caught.value)


def test_yaml_aliases_that_expand_without_end_are_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    bomb = "\n".join(lines) + "\nstages: {}\n"  # 10^9 values once expanded
    with pytest.raises(Malformed) as caught:
        load_yaml(bomb)
    assert "expands to more than" in str(caught.value)
    with pytest.raises(Malformed) as caught:
        load_yaml("a: &a [*a]\nstages: {}\n")
    assert "refers to itself" in str(caught.value)
