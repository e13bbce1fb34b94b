"""Imports run one way: no cycle between the package's modules, and no module imports another
module's private (underscore) names (issue 8). Parsed from the source with ``ast``, so a
function-level import counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "perfmodel"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> perfmodel modules it imports, private names imported across modules)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    private = []
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                targets = []
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append((sub, None) if sub in files else (base, a.name))
            else:
                continue
            for target, name in targets:
                if not target.startswith("perfmodel") or target not in files:
                    continue
                if target != mod:
                    graph[mod].add(target)
                if name and name.startswith("_") and not name.startswith("__") \
                        and target != mod:
                    private.append(f"{mod} imports {target}.{name}")
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _ignoring_package_inits(graph):
    """A package's ``__init__`` re-exporting its modules is not a cycle with them."""
    return {m: {t for t in ts if not (m.startswith(t + ".") )} for m, ts in graph.items()}


def test_no_import_cycles():
    graph, _ = import_graph()
    found = cycles(_ignoring_package_inits(graph))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_names_imported_across_modules():
    _, private = import_graph()
    assert not private, "\n".join(private)
