"""The import graph of vmbuilder_lxc: no cycles, and core modules do not import from exports/.

The graph is read from the source with `ast` (nothing is imported): every module under
vmbuilder_lxc/ and plugins/ (installed as vmbuilder_lxc.plugins), and every import statement in
it, relative or absolute, at the top, inside `if TYPE_CHECKING:` or inside a function. An import
of a.b.c also depends on the packages a.b and a (their __init__ runs first), except the importer's
own enclosing packages, which are already being imported. A cycle is a design smell even where
Python happens to cope with it: the two modules are one module in two files.

The exports rule: a module under vmbuilder_lxc/exports/ is an export. Only these may import from
exports/ at all:
- the exports themselves;
- the export plugin (vmbuilder_lxc.plugins.export), which drives them;
- the publisher's image writer (vmbuilder_lxc.publish.images), which drives them for an image tree;
- FRONT_ENDS, which list every format to the user, and only the package's public names
  (`vmbuilder_lxc.exports`, e.g. FORMATS), never one of its modules.
Every other module, core or plugin, imports nothing from exports/: a helper that a core module
needs lives in a core module (reproducible.py, hostsfile.py, guestedit.py) and the exports import
it from there.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "vmbuilder_lxc"
EXPORTS = f"{PACKAGE}.exports"
EXPORT_PLUGIN = f"{PACKAGE}.plugins.export"
PUBLISH_IMAGES = f"{PACKAGE}.publish.images"
# Modules that show the whole tool to the user: shell completion (--export's values) and the
# generated upgrading.md (the list of formats).
FRONT_ENDS = {f"{PACKAGE}.completion", f"{PACKAGE}.upgrading"}

# Known exceptions, to be deleted with the change that removes them (the tests below fail once one
# is no longer needed, so none outlives its reason).
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_EXPORTS_IMPORTS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Edge:
    """One module importing another; `direct` when an import statement names it (not only a
    package the import runs on the way)."""

    line: int
    direct: bool


def modules() -> dict[str, Module]:
    """Every module by its importable name; plugins/ is installed as vmbuilder_lxc.plugins."""
    found: dict[str, Module] = {}
    for top, prefix in ((ROOT / PACKAGE, (PACKAGE,)), (ROOT / "plugins", (PACKAGE, "plugins"))):
        for path in sorted(top.rglob("*.py")):
            parts = prefix + path.relative_to(top).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found[name] = Module(name, path, is_package)
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(mod: Module, node: ast.Import | ast.ImportFrom, known: dict[str, Module]) -> dict[str, bool]:
    """The modules one import statement names (True) or runs on the way, as parent packages (False)."""
    named: set[str] = set()
    if isinstance(node, ast.Import):
        named = {alias.name for alias in node.names}
    else:
        if node.level:
            package = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
            base = package[: len(package) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        submodules = {f"{source}.{alias.name}" for alias in node.names} & known.keys()
        named |= submodules
        # `from P import x` runs P, which matters unless P encloses the importer (already running)
        # and every x is a module of its own.
        if len(submodules) < len(node.names) or source not in _ancestors(mod.name):
            named.add(source)
    own = set(_ancestors(mod.name)) | {mod.name}
    out: dict[str, bool] = {}
    for name in named:
        for parent in _ancestors(name):
            if parent in known and parent not in own:
                out.setdefault(parent, False)
        if name in known and name != mod.name:
            out[name] = True
    return out


def import_graph() -> tuple[dict[str, Module], dict[str, dict[str, Edge]]]:
    """The modules and, for each, the modules it imports with the line of the first such import."""
    known = modules()
    graph: dict[str, dict[str, Edge]] = {}
    for name, mod in known.items():
        edges: dict[str, Edge] = {}
        for node in ast.walk(ast.parse(mod.path.read_text(), str(mod.path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target, direct in _imported(mod, node, known).items():
                    old = edges.get(target)
                    if old is None or (direct and not old.direct) or (direct == old.direct and node.lineno < old.line):
                        edges[target] = Edge(node.lineno, direct)
        graph[name] = edges
    return known, graph


def strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[set[str]]:
    """Tarjan's components with more than one module: each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def a_cycle(graph: dict[str, dict[str, Edge]], component: set[str]) -> list[str]:
    """The shortest cycle through the component's first module (breadth-first, inside it)."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in component:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle in {sorted(component)}")


def describe(known: dict[str, Module], graph: dict[str, dict[str, Edge]], cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:], strict=False):
        edge = graph[a][b]
        how = "imports" if edge.direct else "imports a module of"
        lines.append(f"  {known[a].path.relative_to(ROOT)}:{edge.line} {how} {b}")
    return "\n".join(lines)


def test_the_graph_sees_every_kind_of_import() -> None:
    """The reader itself: relative, absolute, TYPE_CHECKING-only and function-level imports count."""
    known, graph = import_graph()
    assert f"{PACKAGE}.plugins.lxc" in known and f"{PACKAGE}.exports" in known
    assert f"{PACKAGE}.plugin" in graph[f"{PACKAGE}.plugins.lxc"]  # absolute, from plugins/
    assert f"{PACKAGE}.log" in graph[f"{PACKAGE}.context"]  # relative
    assert f"{PACKAGE}.context" in graph[f"{PACKAGE}.plugin"]  # only under TYPE_CHECKING
    assert f"{EXPORTS}.registry" in graph[EXPORTS]  # a package's __init__
    assert f"{PACKAGE}.exports" in graph[f"{PACKAGE}.completion"]  # `from . import exports`
    assert graph[f"{EXPORTS}.registry"][f"{PACKAGE}.log"].direct  # `from ..log import die`: two levels up
    assert EXPORTS not in graph[f"{EXPORTS}.registry"]  # its own package is already running
    assert f"{PACKAGE}.cli" in graph[f"{PACKAGE}.doctor"]  # inside a function
    cli = known[f"{PACKAGE}.cli"]
    in_function = only_import("def f() -> None:\n    from .log import LOG\n")
    assert _imported(cli, in_function, known) == {f"{PACKAGE}.log": True}
    deep = only_import("import vmbuilder_lxc.exports.stage")
    assert _imported(cli, deep, known) == {EXPORTS: False, f"{EXPORTS}.stage": True}  # its package runs first


def only_import(source: str) -> ast.Import | ast.ImportFrom:
    (node,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)]
    return node


def test_the_cycle_finder_finds_and_prints_a_cycle() -> None:
    edge = Edge(1, True)
    graph = {"a": {"b": edge}, "b": {"c": edge}, "c": {"a": edge, "d": edge}, "d": {}}
    (component,) = strongly_connected(graph)
    assert component == {"a", "b", "c"}
    assert a_cycle(graph, component) == ["a", "b", "c", "a"]
    known = {n: Module(n, ROOT / f"{n}.py", False) for n in graph}
    assert describe(known, graph, ["a", "b", "c", "a"]).splitlines() == [
        "a -> b -> c -> a",
        "  a.py:1 imports b",
        "  b.py:1 imports c",
        "  c.py:1 imports a",
    ]


def test_no_import_cycles() -> None:
    known, graph = import_graph()
    cycles = [c for c in strongly_connected(graph) if frozenset(c) not in KNOWN_CYCLES]
    report = "\n".join(describe(known, graph, a_cycle(graph, c)) for c in cycles)
    assert not cycles, f"import cycles (break them; see docs/design.md):\n{report}"


def test_known_cycles_still_exist() -> None:
    """An exception that is no longer needed is deleted, so that the cycle cannot come back."""
    _, graph = import_graph()
    gone = KNOWN_CYCLES - {frozenset(c) for c in strongly_connected(graph)}
    assert not gone, f"these cycles are gone: delete them from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def exports_imports(graph: dict[str, dict[str, Edge]]) -> dict[tuple[str, str], int]:
    """(importer, export module) for every import statement naming something under exports/."""
    return {
        (importer, target): edge.line
        for importer, edges in graph.items()
        for target, edge in edges.items()
        if edge.direct and (target == EXPORTS or target.startswith(f"{EXPORTS}."))
    }


def allowed(importer: str, target: str) -> bool:
    if importer == EXPORTS or importer.startswith(f"{EXPORTS}.") or importer in (EXPORT_PLUGIN, PUBLISH_IMAGES):
        return True
    return importer in FRONT_ENDS and target == EXPORTS


def test_core_modules_do_not_import_from_exports() -> None:
    known, graph = import_graph()
    bad = {
        f"{known[importer].path.relative_to(ROOT)}:{line} imports {target}"
        for (importer, target), line in exports_imports(graph).items()
        if not allowed(importer, target) and (importer, target) not in KNOWN_EXPORTS_IMPORTS
    }
    assert not bad, "move what they need into a core module and let exports/ import it from there:\n" + "\n".join(
        sorted(bad)
    )


def test_known_exports_imports_still_exist() -> None:
    _, graph = import_graph()
    gone = KNOWN_EXPORTS_IMPORTS - exports_imports(graph).keys()
    assert not gone, f"these imports are gone: delete them from KNOWN_EXPORTS_IMPORTS: {sorted(gone)}"
