"""kmq.cache is a package of small modules behind one interface: every name the tree imports from it resolves.

The tree (src, tests, benchmarks) is read with ``ast``: each ``from kmq.cache import name`` and each
``cache.name`` after ``from kmq import cache`` must name an attribute of :mod:`kmq.cache`, and the
per-process state that tests reset through it (``cache._OPEN.clear()``) must be the very object the
store uses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kmq.cache
from kmq.cache import _arrays, _index

ROOT = Path(__file__).resolve().parents[1]


def _used_names() -> dict[str, str]:
    """name -> where, for every name of kmq.cache used by a file of src, tests or benchmarks."""
    used = {}
    for top in ("src", "tests", "benchmarks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "kmq/cache/" in path.as_posix():
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            aliases = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "kmq.cache":
                    used.update({a.name: f"{path.relative_to(ROOT)}:{node.lineno}" for a in node.names})
                elif isinstance(node, ast.ImportFrom) and node.module == "kmq":
                    aliases |= {a.asname or a.name for a in node.names if a.name == "cache"}
            for node in _outside_rebinding(tree, aliases):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                    used[node.attr] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return used


def _outside_rebinding(node: ast.AST, aliases: set[str]):
    """The nodes under ``node``, skipping functions where an alias is a local name (a ``cache`` folder path)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local = {a.arg for a in ast.walk(child.args) if isinstance(a, ast.arg)}
            local |= {n.id for n in ast.walk(child) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            if local & aliases:
                continue
        yield child
        yield from _outside_rebinding(child, aliases)


def test_every_name_the_tree_uses_resolves():
    used = _used_names()
    assert {"VectorStore", "cached_map", "digest", "_OPEN", "_json_default"} <= set(used)  # the reader sees them
    missing = {name: where for name, where in used.items() if not hasattr(kmq.cache, name)}
    assert not missing, f"kmq.cache lacks: {missing}"
    assert all(hasattr(kmq.cache, name) for name in kmq.cache.__all__)


def test_reexported_state_is_the_stores_own():
    assert kmq.cache._OPEN is _index._OPEN
    assert kmq.cache._VERIFIED is _arrays._VERIFIED and kmq.cache._WARNED is _arrays._WARNED


def test_modules_are_small_and_documented():
    for path in sorted(Path(kmq.cache.__file__).parent.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(text)), f"{path.name} has no module docstring"
        assert text.count("\n") <= 400, f"{path.name} has {text.count(chr(10))} lines"
