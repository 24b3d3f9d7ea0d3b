"""The package reads as the data flows: no module imports from a stage family above its own."""

import ast
from pathlib import Path

import pnn

PACKAGE = Path(pnn.__file__).parent
# Lowest first. A module may import from its own family and the families before it.
LAYERS = ["core", "show", "io", "learn", "stats", "validate", "deploy", "batch"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pnn"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pnn"))
    return found


def test_every_module_lives_in_a_stage_family() -> None:
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {"__init__.py", "__main__.py", "cli.py"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for layer in LAYERS:
        for path in (PACKAGE / layer).glob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if len(parts) > 1 and parts[1] in LAYERS and LAYERS.index(parts[1]) > LAYERS.index(layer):
                    upward.append(f"{layer}/{path.name} imports {name}")
    assert upward == []
