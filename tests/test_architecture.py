"""The shape of the code base, checked: no import cycles, no module over 500 lines, the dev
helpers never imported by product code, and no import hidden inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "webhook", "simulator", "mjflow")
MAX_LINES = 500
# the one door from product code into the dev tools: `mjflow demo` runs them
DEV_DOORS = {("worker.cli", "worker.dev.demo")}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported project module, inside a function?) for every import in the module."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name in known:
                        found.append((alias.name, inner))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    if sub in known:
                        found.append((sub, inner))
                    elif base in known:
                        found.append((base, inner))
            visit(child, inner)

    visit(tree, False)
    return [(m, inner) for m, inner in found if m != name]


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    known = _modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    nested: list[tuple[str, str]] = []
    for name, path in known.items():
        for target, inner in _imports(name, path, known):
            graph[name].add(target)
            if inner:
                nested.append((name, target))
    return graph, nested


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_no_imports_inside_functions() -> None:
    _, nested = _graph()
    assert [pair for pair in nested if pair not in DEV_DOORS] == []


def test_dev_helpers_are_not_imported_by_product_code() -> None:
    graph, _ = _graph()
    bad = [(m, t) for m, targets in graph.items() for t in targets
           if t.startswith("worker.dev") and not m.startswith("worker.dev")
           and (m, t) not in DEV_DOORS]
    assert bad == []


def test_no_product_module_over_500_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_dev_tools_find_the_project_files() -> None:
    from worker.dev import demo

    assert (demo.ROOT / "Procfile").is_file() and (demo.ROOT / "Procfile.local").is_file()
