"""The package's shape: imports run with the flow (recipe -> builder -> artifacts -> plan ->
serve -> integrations/report), no import cycle anywhere, and the size limits of the house style.

Read from the source with `ast` (nothing is imported), so an import inside a function counts as
much as one at the top: a lazy import still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mixer"

# Modules every stage may import: they import no other mixer module but each other.
LEAVES = {"errors", "identity", "typed", "syntax", "version"}

# What each stage may import besides the leaves and itself (DESIGN.md, "Packages"). `mixer` is
# the package's root (its lazy StreamingMixture and MixerLoader); cli may import everything.
ALLOWED = {
    "recipe": set(),
    "plan": set(),
    "artifacts": {"plan"},
    "builder": {"recipe", "artifacts", "plan"},
    "serve": {"artifacts", "plan"},
    "integrations": {"serve", "artifacts", "plan"},
    # report re-reads a document's record with the build's own readers (mixer inspect)
    "report": {"serve", "artifacts", "plan", "builder"},
    "steer": {"recipe", "builder", "artifacts", "plan"},  # amend / skip a build's plan
    "mixer": {"serve", "steer"},
    "cli": {
        "recipe",
        "builder",
        "artifacts",
        "plan",
        "serve",
        "integrations",
        "report",
        "steer",
        "cli_base",
        "cli_steer",
    },
    "cli_steer": {"artifacts", "plan", "steer", "cli_base"},
    "cli_base": set(),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The mixer modules `name` imports (a name imported from a package that is a module counts
    as that module; otherwise the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" for a in node.names]
            targets = [t if t in modules else base for t in targets]
        else:
            continue
        for t in targets:
            while t not in modules and "." in t:
                t = t.rpartition(".")[0]
            if t in modules and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mixer"


def test_imports_run_with_the_flow():
    against = []
    for module, targets in _graph().items():
        here = _stage(module)
        for t in sorted(targets):
            there = _stage(t)
            if there == here or there in LEAVES:
                continue
            if here in LEAVES or there not in ALLOWED.get(here, set()):
                against.append(f"{module} -> {t}")
    assert not against, "imports against the flow:\n" + "\n".join(against)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as its modules in order, or None (an iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_modules_and_functions_are_small():
    """House style: a module at most 300 lines, a function at most 60 (DESIGN.md)."""
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > 300:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if function and node.end_lineno - node.lineno + 1 > 60:
                long_functions.append(f"{name}.{node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)


def test_a_build_worker_imports_what_a_unit_needs_not_the_whole_build():
    """A spawned worker unpickles `mixer.builder.task`'s functions: that import must not pull in
    the orchestration (rich, the decisions, the records), which doubled every worker's start."""
    import subprocess
    import sys

    code = (
        "import sys, mixer.builder.task, mixer.builder.gigatoken_fast, mixer.builder.tiktoken_fast;"
        "print(sorted(m for m in ('mixer.builder.orchestrate', 'rich', 'click', 'tokenizers')"
        " if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    got = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "[]"
