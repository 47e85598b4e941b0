"""``dev/`` in the import graph (issue 28): a package whose users name it.

``dev`` (the local PostgreSQL, the AWS emulator, the Airflow services) was once imported
by bare module names through ``PYTHONPATH=dev``, so the arrows from tests and bench into
it could not be read. Read from the source as in test_import_graph.py (every import,
function-local ones included): inside ``dev`` no cycle; the shipped code (``plugins/``,
``dags/``) never imports ``dev``; and nobody imports a dev module by its bare name, which
would only work with ``dev/`` back on the path.
"""

from __future__ import annotations

import ast
from pathlib import Path

from test_import_graph import _runtime_nodes, find_cycles

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "dev"


def dev_modules(root: Path = DEV) -> dict[str, Path]:
    """Dotted name -> file of every module of the ``dev`` package (``__init__`` as the
    package itself)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every dotted name ``source`` (the module ``module``) imports at run time, relative
    imports resolved, ``from a import b`` counted as both ``a`` and ``a.b`` (``b`` may be a
    module or a name in ``a``: the caller keeps the ones that are modules)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                if len(base) < 1 or not package:
                    raise AssertionError(f"{module}: relative import beyond the package")
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def dev_import_graph() -> dict[str, set[str]]:
    """dev module -> the dev modules it imports (itself and its own packages left out:
    importing ``dev.local_aws.wire`` runs ``dev/__init__`` and ``dev/local_aws/__init__``
    first, which is no arrow worth a cycle)."""
    modules = dev_modules()
    graph = {}
    for name, path in modules.items():
        found = imported_names(path.read_text(encoding="utf-8"), name, is_package=path.stem == "__init__")
        graph[name] = {target for target in found if target in modules and not name.startswith(target)}
    return graph


def _bare_dev_imports(path: Path, bare: frozenset[str], root: Path = REPO) -> list[str]:
    """Imports in ``path`` of a dev module by its bare name (``from local_stack import``)."""
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names if name.split(".")[0] in bare]
    return found


def test_the_reader_resolves_every_form_of_import() -> None:
    source = '''
import dev.processes
from dev.local_aws import wire
from . import images
from .batch import BatchEmulator
from .. import local_stack
def late():
    from dev.sim_hosts import Host
'''
    names = imported_names(source, "dev.local_aws.server")
    assert {"dev.processes", "dev.local_aws", "dev.local_aws.wire", "dev.local_aws.images", "dev.local_aws.batch",
            "dev.local_stack", "dev.sim_hosts"} <= names


def test_the_graph_reads_dev() -> None:
    graph = dev_import_graph()
    # Known arrows, top-level and function-local, so a reader that found nothing fails.
    assert "dev.local_stack" in graph["dev.airflow_services"]
    assert "dev.processes" in graph["dev.local_stack"]
    assert "dev.local_aws.images" in graph["dev.local_stack"]  # function-local
    assert "dev.local_aws.wire" in graph["dev.local_aws.server"]
    assert len(graph) > 15


def test_dev_has_no_import_cycle() -> None:
    cycles = find_cycles(dev_import_graph())
    assert not cycles, "import cycle(s) in dev:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_shipped_code_never_imports_dev() -> None:
    """The DAG package and the DAG files run in Airflow's image, which has no ``dev``."""
    offenders = []
    for path in sorted([*(REPO / "plugins").rglob("*.py"), *(REPO / "dags").rglob("*.py")]):
        shipped = path.relative_to(REPO / "plugins") if path.is_relative_to(REPO / "plugins") else Path(path.name)
        module = ".".join(shipped.with_suffix("").parts)
        for name in imported_names(path.read_text(encoding="utf-8"), module, is_package=path.stem == "__init__"):
            if name == "dev" or name.startswith("dev."):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, "the shipped code imports dev:\n" + "\n".join(offenders)


def test_nobody_imports_a_dev_module_by_its_bare_name(tmp_path: Path) -> None:
    bare = frozenset(name.split(".")[1] for name in dev_modules() if name.count(".") == 1)
    assert {"local_stack", "local_aws", "processes"} <= bare
    # The check itself, on a file that does it.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from local_stack import local_aws\nimport dev.processes\n")
    assert [line.split(": ", 1)[1] for line in _bare_dev_imports(sample, bare, tmp_path)] == ["local_stack"]
    offenders = [hit for folder in ("dev", "tests", "bench")
                 for path in sorted((REPO / folder).rglob("*.py")) for hit in _bare_dev_imports(path, bare)]
    assert not offenders, "bare dev-module imports (use dev.<module>):\n" + "\n".join(offenders)

