"""The import graph of harness/ has no cycles, and the config schema loads no heavy package.

The graph is read from the source with `ast`: every `import harness...` / `from harness... import`
statement anywhere in a module (function-level ones too, they run eventually; only those under
`if TYPE_CHECKING:` are skipped, they never run). Importing `harness.a.b` also runs the package
`harness.a` first, unless the importer lives inside it (then that package is already loading).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import statements that can run (skips `if TYPE_CHECKING:` bodies)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_of(child)
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """harness modules that importing `name` runs directly."""
    is_package = path.name == "__init__.py"
    own_packages = set(_ancestors(name)) | ({name} if is_package else set())
    targets: set[str] = set()

    def add(target: str) -> None:
        # Importing a.b.c runs a and a.b first: edges to those not already loading.
        for package in _ancestors(target):
            if package in modules and package not in own_packages:
                targets.add(package)
        if target in modules:
            targets.add(target)

    for node in _imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "harness":
                    add(alias.name)
            continue
        base = node.module or ""
        if node.level:  # relative import
            package_parts = name.split(".") if is_package else name.split(".")[:-1]
            anchor = package_parts[:len(package_parts) - node.level + 1]
            base = ".".join(anchor + ([node.module] if node.module else []))
        if base.split(".")[0] != "harness":
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in modules:
                add(submodule)
                if base not in own_packages:
                    add(base)
            else:  # an attribute of `base`: needs `base` itself initialized, even if it is our own package
                add(base)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_function_level_and_package_imports():
    graph = import_graph()
    # config -> schedules (top level), export -> models (function level), optim.optimizers ->
    # models.roles (which runs the package harness.models first).
    assert "harness.schedules" in graph["harness.config"]
    assert "harness.models" in graph["harness.export"]
    assert {"harness.models", "harness.models.roles"} <= graph["harness.optim.routing"]
    assert "harness.config" not in graph["harness.archs"]  # only under TYPE_CHECKING


def test_no_import_cycles_in_harness():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_config_loads_no_optimizer_model_or_fit_module():
    code = ("import json, sys; import harness.config; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('harness') or m == 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    heavy = [m for m in loaded if m == "torch" or any(m == p or m.startswith(p + ".")
                                                   for p in ("harness.optim", "harness.models", "harness.fit"))]
    assert "harness.config" in loaded and heavy == [], heavy
