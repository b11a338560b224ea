"""The package reads like the loop: stages as packages on floors, no loops, small files.

Every import counts, including the ones inside functions (they hide loops, not remove
them). A package may import from its own package and from packages on lower floors;
packages on the same floor never import each other, and nothing imports upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_anatomics

PACKAGE = Path(napari_anatomics.__file__).parent
ROOT = "napari_anatomics"

#: The floors, bottom up: the order of the loop (load, check, train, predict, segment,
#: analyze) with what they share below them and the front ends on top.
FLOORS = [
    {"core"},
    {"io"},
    {"datacheck", "models"},
    {"predict", "segment", "analyze"},
    {"train"},
    {"tasks"},
    {"napari", "cli"},
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = (ROOT, *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package modules that ``name`` imports, wherever the import statement is."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith(ROOT):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in MODULES else base)
    targets.discard(name)
    return {t for t in targets if t in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOOR else None


def test_every_module_lives_in_a_stage_package():
    loose = [m for m in MODULES if m != ROOT and _stage(m) is None]
    assert loose == [], f"modules outside the stage packages {sorted(FLOOR)}: {loose}"


def test_no_import_runs_up_or_sideways():
    wrong = []
    for name, targets in GRAPH.items():
        here = _stage(name)
        for target in targets:
            there = _stage(target)
            if here is None:  # the package root may import anything but the front ends
                if there in {"napari", "cli"}:
                    wrong.append(f"{name} -> {target}")
            elif there is None:
                wrong.append(f"{name} -> {target} (the package root)")
            elif there != here and FLOOR[there] >= FLOOR[here]:
                wrong.append(f"{name} (floor {FLOOR[here]}) -> {target} (floor {FLOOR[there]})")
    assert wrong == []


def test_no_import_loops():
    loops = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                loops.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert loops == []


def test_panels_never_import_each_other():
    panels = {m for m in MODULES if m.startswith(f"{ROOT}.napari.panels.")}
    assert {(m, t) for m in panels for t in GRAPH[m] if t in panels} == set()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"


def test_the_checker_sees_a_planted_loop_and_an_upward_import(tmp_path):
    """The graph reader resolves relative imports, also those inside functions."""
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from ..train.loop import train\n    from . import runtime\n")
    MODULES["napari_anatomics.core.fake"] = fake
    try:
        targets = _imports("napari_anatomics.core.fake", fake)
    finally:
        del MODULES["napari_anatomics.core.fake"]
    assert targets == {"napari_anatomics.train.loop", "napari_anatomics.core.runtime"}
