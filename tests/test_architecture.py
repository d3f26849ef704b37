"""The package's architecture, checked: no import cycles between gitevo's modules (lazy
imports and TYPE_CHECKING blocks included), and imports only point down the layers that
the README's architecture section lists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gitevo"
README = PACKAGE.parent / "README.md"

# lowest first; a module may import its own layer and the layers before it
LAYERS = ("core", "llm", "config", "store", "execution", "variation", "pipeline", "results",
          "project", "cli")
TOP = {"gitevo": "core", "gitevo.__main__": "cli"}  # the package itself holds __version__


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package but the templates (seed repositories, not gitevo)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if "templates" in rel.parts:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gitevo modules that `name` imports anywhere in its text (an import inside a
    function or under TYPE_CHECKING is a dependency all the same)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # importing a module's own package (its __init__) is how Python loads it anyway
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(name: str) -> str:
    if name in TOP:
        return TOP[name]
    first = name.split(".")[1]
    if first not in LAYERS:
        raise AssertionError(f"{name}: in no layer (add its subpackage to LAYERS and to the "
                             "README's architecture section)")
    return first


def violations(edges: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(f"{name} ({layer(name)}) imports {target} ({layer(target)})"
                  for name, targets in edges.items() for target in targets
                  if rank[layer(target)] > rank[layer(name)])


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(graph()) == []


def test_imports_point_down_the_layers():
    assert violations(graph()) == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    # a miniature package with one cycle through a lazy import and one upward import
    root = tmp_path / "gitevo"
    for folder in ("store", "pipeline"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text('"""x"""\n')
    (root / "__init__.py").write_text("")
    (root / "store" / "a.py").write_text("def f():\n    from gitevo.pipeline import b\n")
    (root / "pipeline" / "b.py").write_text("from ..store import a\n")
    (root / "pipeline" / "c.py").write_text("import gitevo.pipeline.b\n")
    edges = graph(root)
    assert cycles(edges) == [["gitevo.pipeline.b", "gitevo.store.a"]]
    assert violations(edges) == ["gitevo.store.a (store) imports gitevo.pipeline (pipeline)",
                                 "gitevo.store.a (store) imports gitevo.pipeline.b (pipeline)"]
    assert edges["gitevo.pipeline.c"] == {"gitevo.pipeline.b"}


@pytest.mark.parametrize("folder", sorted(p.name for p in PACKAGE.iterdir()
                                          if (p / "__init__.py").is_file()))
def test_each_subpackage_says_what_it_holds_and_may_import(folder):
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 20, f"gitevo/{folder}/__init__.py: no docstring"
    assert re.search(r"\bimport", doc), f"gitevo/{folder}: its docstring omits its imports"


def test_the_readme_maps_every_subpackage_in_layer_order():
    section = README.read_text().split("## Architecture", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^ {4}gitevo/(\w+)(?:/|\.py)", section, re.M)
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages - {"templates"} <= set(listed)
    ordered = [name for name in listed if name in LAYERS]
    assert ordered == [name for name in LAYERS if name in ordered]
