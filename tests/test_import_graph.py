"""The import graph of src/kmq: no cycle, and no import from a later stage of the data flow into an earlier one.

The graph is read with ``ast`` (nothing is imported): every ``import`` and ``from ... import`` counts, at
module level or inside a function (a deferred import is still a dependency), and so does a lazy import by
name (a module name as the argument of ``importlib.import_module`` or as a value of a dict literal, the
``_LAZY`` tables of the package ``__init__`` files). ``from pkg import name`` depends on the submodule
``pkg.name`` when there is one, else on ``pkg`` (its ``__init__``). Importing a submodule is not counted
as importing its parent packages.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Data-flow order: a module may import from its own stage and from earlier ones only.
STAGES = [
    {"errors", "_deps", "_cpu", "_lazy", "redact", "cache", "config", "endpoints", "publish", "hf"},  # the base layer
    {"data"},
    {"embed"},
    {"cluster"},
    {"scorers"},
    {"engine"},  # where the expensive batches run (local or Ray Data): over embed and scorers, under the stages
    {"shape"},
    {"methods"},
    {"metrics"},  # pure diagnostics over arrays: the pipeline stores them in every manifest
    {"stages"},
    {"pipeline", "selection", "scoring"},
    {"loop"},
    {"evaluate"},  # lm-eval tasks, kmq eval and experiment grids: select -> train (loop's trainers) -> eval
    {"report"},
    {"cli", ""},  # "" is the package kmq itself: the public facade, which lazily re-exports every stage
]

# What a method module may import of kmq.methods: the registry, the checks and the shared helpers (never a
# method module, so the package __init__ can import them all in any order).
METHOD_HELPERS = {
    f"kmq.methods.{name}"
    for name in ("registry", "validation", "allocate", "draw", "partition", "_arrays", "_clustered", "tokens")
}

# Imports found when this test was written, in files of other work in progress: (importer, imported).
# Each is exact, so the test fails on any new one and when one of these goes away (then delete its entry).
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


@cache
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "kmq").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _target(name: str) -> str | None:
    """The kmq module that importing ``name`` loads (its longest prefix that is a module), or None."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules():
            return ".".join(parts)
        parts.pop()
    return None


def _lazy_names(tree: ast.AST) -> list[ast.Constant]:
    """String constants used as module names: import_module("kmq.x") and the values of a ``_LAZY`` table."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            found += [a for a in node.args[:1] if isinstance(a, ast.Constant)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", "").endswith("_LAZY") for t in targets):  # kmq/__init__.py's lazy table
                found += [v for v in node.value.values if isinstance(v, ast.Constant)]
    return [c for c in found if isinstance(c.value, str) and c.value in modules()]


@cache
def imports(module: str) -> tuple[tuple[int, str], ...]:
    """(line, imported kmq module) for every import in ``module``."""
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, _target(alias.name)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found += [(node.lineno, _target(f"{base}.{alias.name}") or _target(base)) for alias in node.names]
    found += [(c.lineno, c.value) for c in _lazy_names(tree)]
    return tuple(sorted({(line, t) for line, t in found if t is not None and t != module}))


def stage(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(STAGES):
        if top in names:
            return i
    raise AssertionError(f"{module} belongs to no stage: add {top!r} to STAGES in {Path(__file__).name}")


def cycles(skip: set[tuple[str, str]] = frozenset()) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm), without ``skip`` edges."""
    graph = {m: sorted({t for _, t in imports(m) if (m, t) not in skip}) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_every_kind_of_import():
    assert "kmq.errors" in {t for _, t in imports("kmq.methods.registry")}
    assert "kmq.loop.api" in {t for _, t in imports("kmq.loop")}  # lazy, by name
    assert "kmq.pipeline" in {t for _, t in imports("kmq")}
    assert "kmq.methods.kmq" in {t for _, t in imports("kmq.methods")}  # from kmq.methods import kmq
    runner = {t for _, t in imports("kmq.loop.runner")}
    assert {"kmq.methods.allocate", "kmq.methods.draw", "kmq.stages"} <= runner  # inside functions
    assert all(stage(m) is not None for m in modules())


def test_the_registry_imports_no_method_module():
    registry = {t for _, t in imports("kmq.methods.registry")}
    assert registry <= {"kmq.errors", "kmq.methods.validation"}
    for module in modules():
        if module.startswith("kmq.methods.") and module != "kmq.methods.registry":
            methods = {t for _, t in imports(module) if t.startswith("kmq.methods")}
            assert methods <= METHOD_HELPERS, f"{module} imports {sorted(methods - METHOD_HELPERS)}: a method module"


def test_no_import_cycle():
    found = cycles(KNOWN_CYCLE_EDGES)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)
    edges = {(m, t) for m in modules() for _, t in imports(m)}
    assert KNOWN_CYCLE_EDGES <= edges, f"fixed: remove {sorted(KNOWN_CYCLE_EDGES - edges)} from KNOWN_CYCLE_EDGES"
    for edge in KNOWN_CYCLE_EDGES:  # each known edge still closes a cycle
        assert cycles(KNOWN_CYCLE_EDGES - {edge}), f"{edge} no longer closes a cycle: remove it from KNOWN_CYCLE_EDGES"


def test_no_import_from_a_later_stage():
    upward = {}
    for module in modules():
        for line, target in imports(module):
            if stage(target) > stage(module):
                upward[(module, target)] = f"{modules()[module].relative_to(SRC.parent)}:{line} imports {target}"
    new = {k: v for k, v in upward.items() if k not in KNOWN_UPWARD}
    assert not new, "imports from a later stage:\n" + "\n".join(sorted(new.values()))
    assert KNOWN_UPWARD <= set(upward), f"fixed: remove {sorted(KNOWN_UPWARD - set(upward))} from KNOWN_UPWARD"
