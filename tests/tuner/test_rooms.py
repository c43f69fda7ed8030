"""The tuner's rooms: no module imports one that imports it back, the arrows between rooms point
one way (commands -> study -> tracking / space -> the ground floor), and private engine state is
read in one adapter only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tuner

ROOT = Path(tuner.__file__).parent
# room -> the rooms it may import; "ground" is tuner/'s own modules (errors, layout, summary,
# tracking_uri, engine_internals), which import no room
ALLOWED = {
    "commands": {"study", "tracking", "space", "distributed", "ground"},
    "study": {"tracking", "space", "ground"},
    "tracking": {"ground"},
    "space": {"ground"},
    "distributed": {"ground"},
    "ground": {"ground"},
    "cli": {"ground"},
    "facade": set(),
}
ROOMS = ("commands", "study", "tracking", "space", "distributed")


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in ROOT.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The tuner modules `path` imports anywhere in it (functions and TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in MODULES else node.module for n in names]
        else:
            continue
        found.update(n for n in names if n in MODULES)
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def room(module: str) -> str:
    parts = module.split(".")
    if module == "tuner":
        return "facade"
    if parts[1] in ROOMS:
        return parts[1]
    return "cli" if parts[1] == "cli" else "ground"


def _cycle_from(start: str) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in GRAPH[module]:
            if target == start:
                return path + [start]
            if target not in seen:
                seen.add(target)
                stack.append((target, path + [target]))
    return None


def test_every_tuner_module_is_seen() -> None:
    assert {"tuner.layout", "tuner.study.running", "tuner.tracking.tracker"} <= set(MODULES)
    assert "tuner.space.loading" in GRAPH["tuner.study.searcher"]


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycles = [cycle for module in sorted(GRAPH) if (cycle := _cycle_from(module))]
    assert not cycles, " -> ".join(cycles[0])


def test_arrows_between_rooms_point_one_way() -> None:
    wrong = [
        f"{module} ({room(module)}) imports {target} ({room(target)})"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if room(target) != room(module) and room(target) not in ALLOWED[room(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_private_engine_state_is_read_in_the_adapter_only() -> None:
    # `obj._name` other than our own `self._x` / `cls._x`, and imports of engines' private modules
    private = re.compile(
        r"(?<![\w])(?!self\b|cls\b)\w+\._[a-z]|(?:ray|optuna|mlflow)[\w.]*\._[a-z]"
    )
    found = [
        f"{path.relative_to(ROOT.parent)}:{number}: {line.strip()}"
        for path in MODULES.values()
        if path.name != "engine_internals.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not found, "\n".join(found)
