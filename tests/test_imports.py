"""The package's imports point one way: no module reaches, directly or through others, back to itself.

Function-local imports count too: an import deferred into a function still ties the two modules
together, it only hides the circle from Python until the function runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lit_gen

PACKAGE = "lit_gen"
ROOT = Path(lit_gen.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute dotted name of the module a `from ... import` names."""
    if node.level == 0:
        return node.module or ""
    # A relative import counts from the current package: the module itself when it is a package.
    base = current.split(".") if is_package else current.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owning_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` is or lies inside (`lit_gen.x.Class` -> `lit_gen.x`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST):
    """Every node that can run, function bodies included; `if TYPE_CHECKING:` blocks never run, so they are skipped."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def import_graph() -> dict[str, set[str]]:
    """Module -> the lit_gen modules it imports anywhere in its file (top level or in a function).

    `from lit_gen.pkg import name` is an edge to `lit_gen.pkg.name` when that is a module, else to
    the package `lit_gen.pkg` (whose __init__ runs either way, so it is an edge as well).
    """
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                owner = _owning_module(target, modules)
                # A package's own __init__ importing its submodules is the package, not a circle.
                if owner is None or owner == name or owner == PACKAGE:
                    continue
                if is_package and owner.startswith(name + "."):
                    continue
                graph[name].add(owner)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module, each as one circle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle_through(graph, set(c)) for c in components]


def _circle_through(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """One concrete circle a -> b -> ... -> a inside a component, for a readable failure."""
    start = min(members)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(members)


def test_graph_sees_function_local_and_relative_imports(tmp_path):
    """The walker finds an import hidden in a function and resolves a relative one."""
    graph = import_graph()
    assert "lit_gen.errors" in graph
    assert all(dep in graph for deps in graph.values() for dep in deps)
    tree = ast.parse("from ..errors import ConfigError\n")
    node = tree.body[0]
    assert _resolve("lit_gen.models.diffusion", False, node) == "lit_gen.errors"
    assert _resolve("lit_gen.models", True, ast.parse("from .base import X\n").body[0]) == (
        "lit_gen.models.base"
    )


def test_find_cycles_reports_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


#: Layers that must not reach up to the modules that read files or parse command lines.
LOWER = ("lit_gen.models", "lit_gen.training", "lit_gen.nn", "lit_gen.diffusion", "lit_gen.metrics.features", "lit_gen.metrics.fid")
UPPER = ("lit_gen.checkpoints", "lit_gen.build", "lit_gen.fit", "lit_gen.sample", "lit_gen.evaluate", "lit_gen.cli",
         "lit_gen.commands.fit", "lit_gen.commands.sample", "lit_gen.commands.evaluate")
#: The command-line programs and their entry points: only each other import them.
COMMANDS = ("lit_gen.commands", "lit_gen.fit", "lit_gen.sample", "lit_gen.evaluate", "lit_gen.compare", "lit_gen.sweep", "lit_gen.ema",
            "lit_gen.slurm", "lit_gen.report")


def test_models_and_building_blocks_never_import_checkpoints_or_clis():
    """A first stage's file is read by lit_gen.build; models, nn and diffusion only get specs and modules."""
    graph = import_graph()
    upward = sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if module.startswith(LOWER)
        for dep in deps
        if dep in UPPER
    )
    assert not upward, "imports that point up the layers:\n  " + "\n  ".join(upward)


def test_the_library_never_imports_a_command():
    """Commands sit on top: a module outside lit_gen.commands (and the entry points) never imports one."""
    def is_command(name: str) -> bool:
        return any(name == c or name.startswith(c + ".") for c in COMMANDS)

    graph = import_graph()
    upward = sorted(f"{module} -> {dep}" for module, deps in graph.items()
                    if not is_command(module) for dep in deps if is_command(dep))
    assert not upward, "library modules that import a command:\n  " + "\n  ".join(upward)


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in lit_gen (function-local imports included):\n" + "\n".join(
        "  " + " -> ".join(c) for c in cycles
    )
