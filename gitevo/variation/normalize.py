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
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)  # each renames its own names

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


def _rename_locals(function: ast.AST, outer: dict[str, str] | None = None,
                   depth: int = 0) -> None:
    """Rename, in place, the names `function` binds in its own scope to _<depth>_<i>, in
    the order of their first appearance; names it only reads keep the enclosing
    function's renaming (`outer`); nested functions and lambdas get their own, in turn."""
    kept = _parameters(function)
    for node in _own(function):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            kept.update(node.names)
    mapping = {k: v for k, v in (outer or {}).items() if k not in kept}
    fresh: set[str] = set()  # bound here: a local of this scope, whatever encloses it
    for node in _own(function):
        name = _bound_name(node)
        if name and name not in kept and name not in fresh:
            mapping[name] = f"_{depth}_{len(fresh)}"
            fresh.add(name)
    nested = []
    for node in _own(function):
        if isinstance(node, ast.Name) and node.id in mapping:
            node.id = mapping[node.id]
        elif isinstance(node, _NAMED) and node.name in mapping:
            node.name = mapping[node.name]
        elif isinstance(node, ast.alias) and (node.asname or node.name) in mapping:
            node.asname = mapping[node.asname or node.name]
        if isinstance(node, _SCOPES):
            nested.append(node)
    for inner in nested:
        _rename_locals(inner, mapping, depth + 1)


def _parameters(function: ast.AST) -> set[str]:
    args = function.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                            *filter(None, [args.vararg, args.kwarg])]}


def _own(function: ast.AST):
    """The nodes of `function`'s own scope: its body, down to (and including) the nested
    functions, lambdas and classes it defines, but not into their bodies."""
    roots = function.body if isinstance(function.body, list) else [function.body]
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES):
            # decorators and defaults are evaluated here; the body is the inner scope's
            inner = [*getattr(node, "decorator_list", []), *node.args.defaults,
                     *filter(None, node.args.kw_defaults)]
        elif isinstance(node, ast.ClassDef):
            inner = [*node.decorator_list, *node.bases]  # its body: attributes, kept
        else:
            inner = list(ast.iter_child_nodes(node))
        stack.extend(reversed(inner))


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
