"""The package's layers, read from its source: no import cycles, a front end without targets.

Every import counts, at module level or inside a function: an import moved into a function to
break a cycle still makes one (``if TYPE_CHECKING:`` blocks do not run, so they do not count).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "kernpack"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The kernpack modules that ``path`` imports anywhere (resolved, relative ones included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("kernpack"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.startswith("kernpack"):
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    found.add(submodule if submodule in modules else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) & modules for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
            connect(v)
    return components


def test_no_module_imports_itself_through_others():
    assert _cycles(_graph()) == []


def test_the_runtime_wheel_holds_every_module_its_modules_import():
    # scripts/wheels packs kernpack/__init__.py, errors.py and runtime/ as kernpack-runtime.
    graph = _graph()
    runtime = {m for m in graph if m in ("kernpack", "kernpack.errors") or m.startswith("kernpack.runtime")}
    assert {f"{m} imports {d}" for m in runtime for d in graph[m] - runtime} == set()


def test_defining_a_kernel_loads_no_llvm(tmp_path):
    # Decorating checks the function (the front end); LLVM loads when something is built.
    source = tmp_path / "k.py"
    source.write_text(
        "import sys\n"
        "import kernpack as kp\n"
        "@kp.kernel\n"
        "def twice(x: kp.f32[:]):\n"
        "    for i in kp.grid(x.shape[0]):\n"
        "        x[i] = 2.0 * x[i]\n"
        "assert 'llvmlite' not in sys.modules, 'decorating a kernel imported llvmlite'\n"
        "twice.interpret(__import__('numpy').ones(3, 'float32'))\n"
        "assert 'llvmlite' not in sys.modules, 'the interpreter imported llvmlite'\n"
    )
    subprocess.run([sys.executable, str(source)], check=True)


def test_the_front_end_knows_no_target():
    lang = {m: deps for m, deps in _graph().items() if m.startswith("kernpack.driver.lang")}
    for module, deps in lang.items():
        outside = {d for d in deps if d.startswith("kernpack.driver") and not d.startswith("kernpack.driver.lang")}
        assert not outside, (module, outside)
