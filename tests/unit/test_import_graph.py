"""The package's import graph has no cycle, and no module imports one from a higher
room (issue 28; ORDER below).

Read from the source with ``ast``, not by importing: every ``import`` counts wherever it
is written, a function-local import (the way the package keeps the DAG's parse cheap)
as much as a top-level one, so a cycle cannot hide behind one. Imports under
``if TYPE_CHECKING:`` are left out: they never run, and annotations may name a module
above (``from __future__ import annotations`` keeps them strings).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = "regional_training"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "plugins" / PACKAGE


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _module(dotted: list[str], modules: frozenset[str]) -> str | None:
    """The package's module ``dotted`` (parts inside the package) names: the longest
    prefix that is one (``launch.job.Job`` -> ``launch.job``), else ``None``."""
    for end in range(len(dotted), 0, -1):
        name = ".".join(dotted[:end])
        if name in modules:
            return name
    return None


def module_imports(source: str, modules: frozenset[str], package: str = "") -> set[str]:
    """The package's modules that ``source`` (one module of it, in sub-package
    ``package``: ``""`` at the top, ``"launch"`` in ``launch/``) imports at run time.
    A module of a sub-package is named with dots (``launch.driver``)."""
    found: set[str] = set()
    here = package.split(".") if package else []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(_module(parts[1:], modules) or parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level > len(here) + 1:
                raise AssertionError(f"relative import beyond the package: level {node.level}")
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 0 and (not parts or parts[0] != PACKAGE):
                continue
            inside = parts[1:] if node.level == 0 else here[: len(here) - node.level + 1] + parts
            for alias in node.names:  # from regional_training.x import y: y if it is a module, else x
                name = _module([*inside, alias.name], modules)
                if name is not None or inside:
                    found.add(name or ".".join(inside))
    return found & modules


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (itself and the package's ``__init__``
    left out); sub-packages' modules are named with dots (``launch.driver``), and a
    sub-package's ``__init__`` by the sub-package's name (``launch``)."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts == ["__init__"]:
            continue
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    modules = frozenset(files)

    def package_of(name: str, path: Path) -> str:
        return name if path.name == "__init__.py" else name.rpartition(".")[0]

    return {name: module_imports(path.read_text(encoding="utf-8"), modules, package_of(name, path)) - {name}
            for name, path in files.items()}


def _reachable(edges: Mapping[str, list[str]], start: str) -> set[str]:
    """Every module reached from ``start`` in one step or more."""
    seen: set[str] = set()
    todo = list(edges[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges[node])
    return seen


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (or a module
    importing itself), each as a path ``a -> b -> ... -> a``; sorted, so the output is
    stable. Mutual reachability: quadratic, which for a package of tens of modules is
    nothing, and plain to check."""
    edges = {node: sorted(set(targets)) for node, targets in graph.items()}
    for targets in list(edges.values()):
        for target in targets:
            edges.setdefault(target, [])
    reach = {node: _reachable(edges, node) for node in edges}
    placed: set[str] = set()
    cycles = []
    for node in sorted(edges):
        if node in placed or node not in reach[node]:
            continue
        component = {node} | {other for other in reach[node] if node in reach[other]}
        placed |= component
        cycles.append(_cycle_in(component, edges))
    return sorted(cycles)


def _cycle_in(component: set[str], edges: Mapping[str, list[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), as a path
    that starts and ends with it."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in edges[node]:
                if child == start:
                    path = [node]  # back from node to start, then reversed
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in component and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")  # a component always has one


# The checker itself, on graphs whose answer is known: a test that cannot fail is no test.
@pytest.mark.parametrize(
    ("graph", "cycles"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"a"}}, [["a", "a"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}},
         [["a", "b", "c", "a"], ["d", "e", "d"]]),
        # A diamond is no cycle.
        ({"top": {"left", "right"}, "left": {"bottom"}, "right": {"bottom"}, "bottom": set()}, []),
    ],
)
def test_find_cycles_on_known_graphs(graph: dict[str, set[str]], cycles: list[list[str]]) -> None:
    assert find_cycles(graph) == cycles


def test_every_form_of_import_counts_function_local_ones_too() -> None:
    source = '''
from __future__ import annotations
import json
from typing import TYPE_CHECKING
import regional_training.alpha
from regional_training import beta, not_a_module
from regional_training.gamma import thing
from . import delta
from .epsilon import other
if TYPE_CHECKING:
    from regional_training import zeta  # annotations only: never runs
def late():
    from regional_training.eta import x
    import regional_training.theta as t
'''
    modules = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "json"})
    assert module_imports(source, modules) == {"alpha", "beta", "gamma", "delta", "epsilon", "eta", "theta"}


def test_the_graph_reads_the_package() -> None:
    graph = import_graph()
    # Known arrows (top-level and function-local), so a reader that found nothing fails.
    assert "operators" in graph and "runtime.aws_hooks" in graph["operators"]
    assert "record.collection" in graph["record.recording"]  # function-local in recording.py
    # Sub-packages are read too, their modules named with dots.
    assert {"launch.driver", "launch.job"} <= graph["launch.batch_launcher"]
    assert "launch.attempts" in graph["launch.driver"] and "launch.job" in graph["launch.sagemaker"]
    assert len(graph) > 30


def test_sub_package_imports_are_named_with_dots() -> None:
    modules = frozenset({"attempts", "launch", "launch.job", "launch.backends"})
    source = '''
from regional_training.launch.job import Job
from regional_training.launch import backends
from . import job
from .backends import Wait
from .. import attempts
import regional_training.launch.job
'''
    assert module_imports(source, modules, "launch") == {"launch.job", "launch.backends", "attempts"}


def test_the_package_has_no_import_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycle(s) in regional_training:\n" + "\n".join(" -> ".join(c) for c in cycles)


# --- Rooms by stage (issue 28, item 4): no module imports one from a room above its own.
#: Rooms, lowest first; the package's top level (tasks, operators, old-path aliases) is
#: above them all. A module may import its own room and the rooms before it.
ORDER = ("runtime", "cli", "run", "plan", "report", "launch", "record")
#: The package's top level: the task and operator face, and the aliases kept at old paths.
TOP_LEVEL = frozenset({
    "aws_sessions",
    "batch_jobs",
    "batch_launcher",
    "campaign_db",
    "celery_config",
    "emit_ready",
    "executors",
    "links",
    "operators",
    "tasks",
    "triggers",
})


def layer(module: str) -> int:
    """The layer of a module named as :func:`import_graph` names it (``launch.driver``)."""
    room = module.split(".")[0] if "." in module else module
    return ORDER.index(room) if room in ORDER else len(ORDER)


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a))


def test_layer_check_on_a_known_graph() -> None:
    graph = {"plan.scan": {"runtime.aws_io"}, "runtime.aws_io": {"plan.scan"}, "tasks": {"record.recording"},
             "record.recording": {"tasks"}}
    assert layer_violations(graph) == ["record.recording -> tasks", "runtime.aws_io -> plan.scan"]


def test_every_module_is_in_a_room_or_at_the_top() -> None:
    top = {name for name in import_graph() if "." not in name and name not in ORDER}
    assert top <= TOP_LEVEL, f"modules at the package's top level outside any room: {sorted(top - TOP_LEVEL)}"


def test_no_module_imports_one_from_a_higher_room() -> None:
    violations = layer_violations(import_graph())
    assert not violations, ("imports from a higher room (order: " + " < ".join(ORDER) + " < top):\n"
                            + "\n".join(violations))
