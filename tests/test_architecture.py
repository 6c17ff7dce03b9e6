"""The layers of ARCHITECTURE.md, enforced: no module imports from a layer above its own.

Every import counts, those inside functions too (a lazy import is still a dependency); only
those under ``if TYPE_CHECKING:`` are left out, since they name types and run nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "repro"

# Lowest first. A unit (a module, or a package with everything below it unless a module of it
# is named on its own) may import its own modules and any unit of a lower layer, never one of its
# own layer or above. The base (layer 0) is one unit: its modules may import each other.
BASE = [
    "repro.errors",
    "repro.fsutil",
    "repro.workers",
    "repro.walk",
    "repro.paths",
    "repro.database",
    "repro.teardown",
    "repro.host",
]
LAYERS: list[list[str]] = [
    ["repro", *BASE],
    ["repro.lock", "repro.config", "repro.paramfiles", "repro.objects", "repro.metrics.formats"]
    + ["repro.metrics.plot_templates"],
    ["repro.remotes"],
    ["repro.objects.transfer", "repro.runners"],
    ["repro.memo"],
    ["repro.stages"],
    ["repro.workspace"],
    ["repro.project"],
    ["repro.remote_select", "repro.fromdvc", "repro.cluster"],
    ["repro.pipeline", "repro.history"],
    ["repro.metrics", "repro.registry"],
    ["repro.experiments"],
    ["repro.cli"],
    ["repro.__main__"],
]
LAYER = {unit: number for number, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The longest unit ``module`` belongs to ("repro.objects.store" -> "repro.objects")."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in LAYER:
            return candidate
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add it")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every repro module ``tree`` imports at run time."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            # "from repro.x import y" may import the module repro.x.y
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(line, name) for line, name in found if name == "repro" or name.startswith("repro.")]


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        own = unit_of(module)
        tree = ast.parse(path.read_text(), str(path))
        for line, target in imported(tree, module, path.name == "__init__.py"):
            if not _exists(target):
                continue  # a name imported from a module, not a module
            other = unit_of(target)
            if other == own or target == "repro" or {own, other} <= set(LAYERS[0]):
                continue
            if LAYER[other] >= LAYER[own]:
                found.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {own} (layer {LAYER[own]}) "
                    f"imports {target} (layer {LAYER[other]})"
                )
    return found


# Upward imports still to be removed by the regrouping (issue 16); this list only shrinks.
KNOWN: set[str] = set()


def _short(violation: str) -> str:
    """A violation without its line number and layer numbers (stable while code moves)."""
    where, _, what = violation.partition(": ")
    path = where.rpartition(":")[0]
    own, _, rest = what.partition(" (layer ")
    target = rest.partition(" imports ")[2].partition(" (layer ")[0]
    return f"{path}: {own} imports {target}"


def test_no_module_imports_from_its_own_layer_or_above() -> None:
    found = {_short(v): v for v in violations()}
    assert sorted(v for short, v in found.items() if short not in KNOWN) == []
    assert sorted(KNOWN - set(found)) == [], "fixed: remove these from KNOWN"


def test_every_module_is_in_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        unit_of(module_name(path))


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule bites: a lazy import of the CLI from the object store is found."""
    source = "def f():\n    from repro.cli import main\n"
    tree = ast.parse(source)
    assert (2, "repro.cli") in imported(tree, "repro.objects.store", False)
    assert LAYER[unit_of("repro.cli")] > LAYER[unit_of("repro.objects.store")]


@pytest.mark.parametrize("units", LAYERS)
def test_layers_name_real_modules(units: list[str]) -> None:
    for unit in units:
        assert _exists(unit), unit


def test_commands_do_not_import_each_other() -> None:
    """Each command module is a leaf: what two of them share lives below the CLI (or in
    cli/commands/__init__.py), and a flag that switches module is the parser's (status -c)."""
    commands = PACKAGE / "cli" / "commands"
    found = []
    for path in sorted(commands.glob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for line, target in imported(tree, module, path.name == "__init__.py"):
            other = target.removeprefix("repro.cli.commands.").partition(".")[0]
            if (
                target.startswith("repro.cli.commands.")
                and other != module.rpartition(".")[2]
                and (commands / f"{other}.py").exists()
            ):
                found.append(f"{path.name}:{line} imports {target}")
    assert found == []
