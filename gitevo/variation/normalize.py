"""Python source reduced to what it does: the form two no-op rewrites of a file share.

Comments and formatting go with the parse; docstrings are dropped; and inside every
function the names it binds for itself (locals, loop and `with` targets, nested
functions, comprehension variables: never its parameters, which callers may name, nor
names it declares global or nonlocal) are renamed in order of first appearance. Two
files with the same normal form run the same code; a change of any number, operator,
call, attribute or parameter name changes it.
"""

from __future__ import annotations

import ast

from gitevo.variation import genome

# statements and clauses that carry the name they bind as `.name`
_NAMED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)

def normal_form(source: str) -> str | None:
    """The file's normal form, or None when it does not parse (compare it as text)."""
    try:
        tree = genome.parse(source)
    except (SyntaxError, ValueError, genome.GenomeError):
        return None
    _drop_docstrings(tree)
    for function in _outermost(tree.body):
        _rename_locals(function)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _drop_docstrings(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def _outermost(body: list[ast.stmt]) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions of a module or class body, and of the classes in it: top-level
    functions and methods, never a function inside another."""
    found = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node)
        elif isinstance(node, ast.ClassDef):
            found += _outermost(node.body)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):  # functions defined conditionally
            found += _outermost([n for n in ast.iter_child_nodes(node)
                                 if isinstance(n, ast.stmt)])
    return found


def _rename_locals(function: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    """Rename, in place, the names `function` (with everything nested in it) binds for
    itself, to _l0, _l1, ... in the order ast.walk meets them."""
    kept = {a.arg for node in ast.walk(function) if isinstance(node, ast.arguments)
            for a in [*node.posonlyargs, *node.args, *node.kwonlyargs,
                      *filter(None, [node.vararg, node.kwarg])]}
    for node in ast.walk(function):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            kept.update(node.names)
    bound: dict[str, str] = {}
    for node in ast.walk(function):
        name = _bound_name(node)
        if node is not function and name and name not in kept and name not in bound:
            bound[name] = f"_l{len(bound)}"
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and node.id in bound:
            node.id = bound[node.id]
        elif node is not function and isinstance(node, _NAMED) and node.name in bound:
            node.name = bound[node.name]
        elif isinstance(node, ast.alias) and (node.asname or node.name) in bound:
            node.asname = bound[node.asname or node.name]


def _bound_name(node: ast.AST) -> str | None:
    """The name a node binds in its scope, if it binds one."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return node.id
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.ExceptHandler):
        return node.name
    if isinstance(node, ast.alias) and "." not in (node.asname or node.name):
        return node.asname or node.name
    return None
