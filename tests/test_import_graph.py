"""No import cycle inside ``wyner_jax``.

The graph is read from the source, not from a running interpreter: every ``import`` and
``from ... import`` statement of every module file, at any depth (a function-local import
that dodges a cycle at run time is still an edge here, which is the point), resolved to the
``wyner_jax`` module it loads. ``from package import name`` is an edge to the submodule
``package.name`` when there is one, else to the package's ``__init__``. A package's parent
``__init__`` that Python runs first is not an edge: a submodule that imports its siblings by
their module path never reads a half-initialised parent. Importing modules in fresh
interpreters instead would only find the cycles that fail at run time in that one order,
and would take a second per module.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "wyner_jax"


def module_files(root: pathlib.Path, package: str) -> dict[str, pathlib.Path]:
    """{dotted module name: file} for every .py file of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` (in ``path``) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [
                f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                for a in node.names
            ]
        else:
            continue
        for target in targets:
            # `import a.b.c` loads a.b.c; keep the longest prefix that is one of ours.
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                out.add(".".join(parts))
    return out


def import_graph(root: pathlib.Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_wyner_jax_has_no_import_cycle():
    graph = import_graph()
    assert "wyner_jax.models.base" in graph and graph["wyner_jax.models.base"]
    found = cycles(graph)
    assert not found, (
        "Import cycles in wyner_jax (each line: modules that import each other, directly or "
        "through the others); move what they share into a module both import:\n"
        + "\n".join(" <-> ".join(c) for c in found)
    )


def write(root: pathlib.Path, files: dict[str, str]):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    "files, expected",
    [
        # A function-local import still closes the circle.
        (
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg import b\n",
                "pkg/b.py": "def f():\n    from pkg.a import x\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
        # Relative imports, through a subpackage's __init__ re-exporting its parts.
        (
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from .c import C\n",
                "pkg/sub/c.py": "from ..d import D\n",
                "pkg/d.py": "import pkg.sub\n",
            },
            [["pkg.d", "pkg.sub", "pkg.sub.c"]],
        ),
        # A package __init__ that re-exports submodules importing each other by path: fine.
        (
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from pkg.sub.model import M\nfrom pkg.sub import terms\n",
                "pkg/sub/model.py": "from pkg.sub import terms\nimport numpy\n",
                "pkg/sub/terms.py": "import os\n",
            },
            [],
        ),
    ],
)
def test_cycle_finder(tmp_path, files, expected):
    write(tmp_path, files)
    assert cycles(import_graph(tmp_path, "pkg")) == expected
