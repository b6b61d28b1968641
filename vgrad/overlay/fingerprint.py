"""
Fingerprints of Python definitions: a hash of the syntax tree, so that two definitions that differ only in
comments, docstrings, formatting or NumPy's removed aliases (`np.int` and its kin, which newer course copies
replaced by `int`) get the same fingerprint, and any change to the code gets another one.

The tree is written out by `canonical` rather than `ast.dump`, whose output changes between Python versions
(3.13 leaves out empty fields, 3.12 added `type_params`): fields that are empty or absent are skipped, so a
fingerprint taken on one Python is the same on another.

`free_names` says which global names a definition uses, for the dependency analysis in analysis.py.
"""
import ast
import builtins
import copy
import hashlib

# NumPy's aliases of builtin types, deprecated in 1.20 and removed in 1.24; course code used `np.int`.
_NUMPY_ALIASES = {'int', 'float', 'bool', 'object', 'complex', 'str'}
_NUMPY_NAMES = {'np', 'numpy'}
# Fields that carry no meaning for a fingerprint, or that exist in only some Python versions.
_SKIPPED_FIELDS = {'kind', 'type_comment', 'type_params'}
_BUILTINS = frozenset(dir(builtins))


def _strip_docstring(body):
    first = body[0] if body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return body[1:] or [ast.Pass()]
    return body


class _Normalise(ast.NodeTransformer):
    """Drops docstrings and turns `np.int` (and its kin) into `int`."""

    def _body(self, node):
        node.body = _strip_docstring(node.body)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Module = _body

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if (node.attr in _NUMPY_ALIASES and isinstance(node.value, ast.Name) and node.value.id in _NUMPY_NAMES
                and isinstance(node.ctx, ast.Load)):
            return ast.copy_location(ast.Name(id=node.attr, ctx=ast.Load()), node)
        return node


def canonical(node):
    """A text form of a syntax tree that is the same on every Python version vgrad supports."""
    if isinstance(node, ast.AST):
        parts = [type(node).__name__]
        for name in node._fields:
            if name in _SKIPPED_FIELDS:
                continue
            value = getattr(node, name, None)
            if value is None or value == []:
                continue
            parts.append(f'{name}={canonical(value)}')
        return '(' + ' '.join(parts) + ')'
    if isinstance(node, list):
        return '[' + ','.join(canonical(item) for item in node) + ']'
    return repr(node)


def normalised(node):
    """A normalised copy of a definition's tree (the input is left as it is)."""
    return _Normalise().visit(copy.deepcopy(node))


def fingerprint(node):
    """The fingerprint of one definition (a statement node): 16 hex digits."""
    return hashlib.sha256(canonical(normalised(node)).encode()).hexdigest()[:16]


def binding_names(stmt):
    """The names a top-level statement binds, with the statement as a definition of each: def, class and
    simple assignments. Other statements (if, for, try, with at top level) bind names too; they are returned
    with `None` as their definition: they cannot be fingerprinted."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name: stmt}
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return {stmt.targets[0].id: stmt}
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return {stmt.target.id: stmt}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {}
    bound = {}
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound[node.id] = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not stmt:
            bound[node.name] = None
    return bound


def mutated_names(stmt):
    """Names whose objects a top-level statement changes without rebinding them: `X.attr = ...`,
    `X[k] = ...`, `del X.attr`, `setattr(X, ...)`."""
    found = set()
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                found.add(base.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ('setattr', 'delattr')
              and node.args and isinstance(node.args[0], ast.Name)):
            found.add(node.args[0].id)
    return found


# The operator a Python expression uses -> the TensorNode methods it may call. A definition that computes
# `a + b` on nodes depends on TensorNode.__add__ (and __radd__), and through it on the Add op.
OPERATOR_METHODS = {
    ast.Add: ('__add__', '__radd__'), ast.Sub: ('__sub__', '__rsub__'), ast.Mult: ('__mul__', '__rmul__'),
    ast.Div: ('__truediv__', '__rtruediv__'), ast.MatMult: ('__matmul__', '__rmatmul__'),
    ast.Pow: ('__pow__', '__rpow__'), ast.USub: ('__neg__',),
}


def operator_methods(node):
    """The TensorNode methods that the operators and `.matmul()` calls inside `node` may call."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.BinOp, ast.AugAssign)):
            found.update(OPERATOR_METHODS.get(type(sub.op), ()))
        elif isinstance(sub, ast.UnaryOp):
            found.update(OPERATOR_METHODS.get(type(sub.op), ()))
        elif isinstance(sub, ast.Attribute) and sub.attr in ('matmul', 'size'):
            found.add(sub.attr)
    return found


def free_names(node):
    """The global names a definition reads: every name it loads that it does not bind itself (parameters,
    local assignments, imports inside it). Builtins are left out. Over-approximates: a name bound in one
    nested scope and read in another counts as bound (harmless here: it can only hide a dependency on a
    global of the same name, which course code does not have)."""
    loaded, bound = set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loaded if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub is not node:
            bound.add(sub.name)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            for alias in sub.names:
                bound.add((alias.asname or alias.name).split('.')[0])
    if isinstance(node, ast.ClassDef):  # a class's own name is global inside its methods
        bound.discard(node.name)
    return (loaded - bound) - _BUILTINS
