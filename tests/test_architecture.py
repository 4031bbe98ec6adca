"""The layout's rules, checked on the source: imports at the top, no import cycle (late imports
and the package __init__ an import runs count too), small modules.

Parsed with ``ast``, never imported, so a rule breaks here before it breaks at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"
MAX_LINES = 600

# The documented seams for late imports: the CLI loads a command's module when that command
# runs (newsletter/cli.py, COMMANDS), and the provider registry loads a provider when it is
# chosen (newsletter/delivery/messengers/__init__.py, get_messenger), and alembic loads only
# when a schema is behind or an upgrade is asked for (newsletter/db.py, SCHEMA_HEAD).
LATE_IMPORTS_ALLOWED = ("cli.py", "delivery/messengers/__init__.py", "db.py")
# Over MAX_LINES and allowed to be: none.
LONG_MODULES_ALLOWED: tuple[str, ...] = ()


def modules() -> dict[str, Path]:
    """Dotted module name -> file, migrations' versions aside."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if "migrations" in relative.parts and "versions" in relative.parts:
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def where(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def late_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports inside a function (at any depth)."""
    late: list[ast.Import | ast.ImportFrom] = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            late.extend(node for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom))
    return late


def all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at the top or inside a function: a late import is still an edge."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def resolve(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The newsletter modules an import statement runs: the target, each of its parent
    packages (their __init__ runs first), and ``from pkg import submodule``'s submodule."""
    targets: list[str] = []
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        targets = [base]
        targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
    ran: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for size in range(1, len(parts) + 1):
            name = ".".join(parts[:size])
            if name in known:
                ran.add(name)
    return ran


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in all_imports(tree):
            edges |= resolve(name, is_package, node, known)
        # A module's own package runs first, but that is not an import back up.
        own_parents = {".".join(name.split(".")[:size]) for size in range(1, name.count(".") + 1)}
        graph[name] = edges - {name} - own_parents
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the graph as a path (first == last), or None. Iterative DFS, bounded."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, pending = stack[-1]
            if not pending:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = pending.pop()
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def test_imports_are_at_the_top_outside_the_documented_seams() -> None:
    offenders = []
    for path in modules().values():
        if where(path).startswith(LATE_IMPORTS_ALLOWED):
            continue
        for node in late_imports(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{where(path)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "imports inside functions:\n" + "\n".join(offenders)


def test_no_import_cycle_among_newsletter_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_over_the_line_limit() -> None:
    long = [
        f"{where(path)}: {count} lines"
        for path in modules().values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and not where(path).startswith(LONG_MODULES_ALLOWED)
    ]
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


# --- the checks themselves can fail ---------------------------------------------------------------


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("import os\n\ndef f() -> None:\n    import json  # late — 遅い\n", 1),
        ("async def f() -> None:\n    if True:\n        from os import path\n", 1),
        ("import os\nfrom typing import Any\n", 0),
    ],
)
def test_late_imports_are_seen_at_any_depth(source: str, count: int) -> None:
    assert len(late_imports(ast.parse(source))) == count


def test_a_package_import_runs_its_parents_and_named_submodules() -> None:
    known = {"newsletter", "newsletter.issues", "newsletter.issues.render", "newsletter.tables"}
    node = ast.parse("from newsletter.issues import render, build_issue").body[0]
    assert isinstance(node, ast.ImportFrom)
    ran = resolve("newsletter.delivery.mime", False, node, known)
    assert ran == {"newsletter", "newsletter.issues", "newsletter.issues.render"}
    late = ast.parse("def f() -> None:\n    import newsletter.tables\n")
    assert [ast.unparse(n) for n in all_imports(late)] == ["import newsletter.tables"]
