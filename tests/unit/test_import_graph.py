"""The shape of the house: `tasks/` is a stack of stage packages, each importing only the
packages below it, and no module of `tasks/` or `flows/` takes part in an import cycle (imports
inside functions and under TYPE_CHECKING count: they hide a cycle, they do not remove it).

The checker reads the source with `ast` and runs nothing; the last two tests give it a small
tree with a deliberate cycle and an upward import, and watch it refuse both."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top: a package may import itself and those before it, never those after it.
LAYERS = ["core", "notify", "data", "learn", "registry", "serve", "watch"]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(root: Path, top: tuple[str, ...] = ("tasks", "flows")) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for folder in top
        for path in sorted((root / folder).rglob("*.py"))
    }


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file. `from P import m` names the
    module P.m when there is one, else P itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in known:
                    found.add(candidate)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def graph_of(root: Path) -> dict[str, set[str]]:
    modules = modules_of(root)
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] == "flows":
        return len(LAYERS)
    if len(parts) > 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        parts = module.split(".")
        if parts[0] == "tasks" and len(parts) == 2 and parts[1] not in LAYERS:
            problems.append(f"{module} sits in tasks/ itself, outside every stage package")
        for target in sorted(targets):
            low, high = layer_of(module), layer_of(target)
            if low is not None and high is not None and high > low:
                problems.append(f"{module} imports {target}, a package above it")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_at_all() -> None:
    graph = graph_of(ROOT)
    assert "tasks.core.config" in graph
    assert "tasks.core.config" in graph["flows.training"] | {
        target for targets in graph.values() for target in targets
    }
    assert sum(len(targets) for targets in graph.values()) > 150


def test_each_stage_package_imports_only_the_packages_below_it() -> None:
    assert upward_imports(graph_of(ROOT)) == []


def test_no_module_of_tasks_or_flows_takes_part_in_an_import_cycle() -> None:
    assert cycles(graph_of(ROOT)) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_deliberate_cycle_is_caught_even_inside_a_function(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "tasks/__init__.py": "",
            "tasks/core/__init__.py": "",
            "tasks/core/config.py": "def f():\n    from tasks.core import storage\n",
            "tasks/core/storage.py": "from tasks.core.config import f\n",
            "flows/__init__.py": "",
        },
    )
    assert cycles(graph_of(root)) == [["tasks.core.config", "tasks.core.storage"]]


def test_an_import_from_a_higher_package_is_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "tasks/__init__.py": "",
            "tasks/core/__init__.py": "",
            "tasks/core/config.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from tasks.watch.drift import Report\n",
            "tasks/watch/__init__.py": "",
            "tasks/watch/drift.py": "from tasks.core import config\n",
            "tasks/loose.py": "",
            "flows/__init__.py": "",
        },
    )
    assert upward_imports(graph_of(root)) == [
        "tasks.core.config imports tasks.watch.drift, a package above it",
        "tasks.loose sits in tasks/ itself, outside every stage package",
    ]
