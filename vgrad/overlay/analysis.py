"""
Reads a student's vugrad package and decides, for every top-level definition in it, what runs:

- the graph machinery (`TensorNode`, `OpNode`, `Op` in core.py) is always vgrad's, so that every op of theirs
  runs in vgrad's graph. Methods they added to or changed in TensorNode (an operator such as `__truediv__`,
  say) are kept: a subclass of vgrad's TensorNode carries them. Changes to the traversal itself (`backward`,
  `zero_grad`, `clear`, `__init__`, OpNode, `Op.do_forward`) are reported, not run.
- a definition that is the same as in a known upstream revision (same fingerprint, see fingerprint.py), that
  nothing in the package changes afterwards, and whose dependencies inside the package are all unchanged in
  the same sense, is *accelerated*: replaced by vgrad's C-backed equivalent with that revision's semantics
  (equivalents.py), where vgrad has one.
- everything else runs as written: the student's new and changed definitions, and everything that uses one
  of them. An upstream definition without a C equivalent (a data loader, say) runs as written too.

Dependencies are found statically: the global names a definition reads, followed through the package's
imports (`from .ops import *` included), plus, for Python operators on nodes (`a + b`, `-x`, `a.matmul(b)`),
the TensorNode method the operator calls. Only the package's own files are looked at; the script that
imports it runs as written.
"""
import ast
import dataclasses
import os

from . import equivalents, upstream
from .fingerprint import binding_names, fingerprint, free_names, mutated_names, operator_methods

MACHINERY = ('TensorNode', 'OpNode', 'Op')
# Methods of TensorNode that make up the traversal: vgrad's always run. Every other method of a student's
# TensorNode that is not upstream's is grafted onto vgrad's TensorNode.
MACHINERY_METHODS = {'__init__', 'backward', 'zero_grad', 'clear', 'grad', '__slots__', '__dict__', '__weakref__',
                     '__module__', '__qualname__', '__doc__'}

ACCELERATED = 'C kernels'          # replaced by vgrad's equivalent
AS_WRITTEN = 'yours'               # new or changed (or depends on something that is): runs as written
UPSTREAM = 'upstream, as written'  # unchanged, but vgrad has no equivalent (or it depends on one that isn't)
MACHINERY_STATUS = "vgrad's graph"


@dataclasses.dataclass
class Definition:
    module: str                   # module name inside the package: '' for __init__, 'ops', 'sub.mod'
    name: str                     # 'Sigmoid', or 'TensorNode.__add__' for a method of the student's TensorNode
    path: str
    lineno: int
    node: object = None           # the statement; None when a name is bound by a statement that is not a definition
    fingerprint: str = None
    revisions: frozenset = frozenset()  # the upstream revisions that have exactly this definition
    deps: set = dataclasses.field(default_factory=set)  # keys (module, name) of package definitions it uses
    problem: str = ''             # why it is not upstream as it stands: 'new', 'changed', 'changed at line N', ...
    status: str = ''
    detail: str = ''              # for the --explain table
    equivalent: object = None     # vgrad's object that replaces it (accelerated), or None
    swapped: dict = dataclasses.field(default_factory=dict)  # method name -> vgrad function (a class kept as written)
    grafted: bool = False         # a TensorNode method of the student's, put on vgrad's TensorNode

    @property
    def key(self):
        return (self.module, self.name)

    @property
    def where(self):
        return f'{self.path}:{self.lineno}'


@dataclasses.dataclass
class Module:
    name: str
    path: str
    tree: object = None           # None when the file does not parse (it then fails on import, as it would anyway)
    definitions: dict = dataclasses.field(default_factory=dict)
    imports: dict = dataclasses.field(default_factory=dict)   # local name -> (module, attribute or None)
    star_imports: list = dataclasses.field(default_factory=list)
    all_names: list = None        # a literal __all__, if the module has one


class Package:
    """The analysis of one student package (a folder with __init__.py, importable as `vugrad`)."""

    def __init__(self, directory):
        self.directory = os.path.realpath(directory)
        self.modules = {}
        for module_name, path in _python_files(self.directory):
            self.modules[module_name] = _read_module(module_name, path)
        self._resolve_dependencies()
        self._decide()

    # -- reading -----------------------------------------------------------------------------------------

    def definitions(self):
        for module in self.modules.values():
            yield from module.definitions.values()

    def find(self, module, name):
        return self.modules[module].definitions.get(name) if module in self.modules else None

    def relative_path(self, path):
        parent = os.path.dirname(self.directory)
        return os.path.relpath(path, parent)

    # -- name resolution --------------------------------------------------------------------------------

    def resolve(self, module, name, _seen=None):
        """What `name` means at the top level of `module`: a Definition, a module name (str) for a package
        module, or None (external, builtin or unknown)."""
        seen = _seen or set()
        if (module, name) in seen or module not in self.modules:
            return None
        seen.add((module, name))
        mod = self.modules[module]
        if name in mod.definitions:
            return mod.definitions[name]
        if name in mod.imports:
            target, attribute = mod.imports[name]
            if target not in self.modules:
                return None
            if attribute is None:
                return target
            found = self.resolve(target, attribute, seen)
            if found is None and f'{target}.{attribute}'.strip('.') in self.modules:
                return f'{target}.{attribute}'.strip('.')  # `from . import ops`
            return found
        for target in reversed(mod.star_imports):
            if target in self.modules and self._exports(target, name):
                found = self.resolve(target, name, seen)
                if found is not None:
                    return found
        return None

    def _exports(self, module, name):
        mod = self.modules[module]
        if mod.all_names is not None:
            return name in mod.all_names
        return not name.startswith('_')

    def _resolve_dependencies(self):
        tensor_node = self._tensor_node_module()
        for definition in list(self.definitions()):
            if definition.node is None:
                continue
            for name in free_names(definition.node):
                found = self.resolve(definition.module, name)
                if isinstance(found, Definition):
                    definition.deps.add(found.key)
                elif isinstance(found, str):  # a whole package module: depend on all of it
                    definition.deps.update(d.key for d in self.modules[found].definitions.values())
            if tensor_node is not None and not definition.name.startswith('TensorNode.') \
                    and not self.is_op_class(definition):
                # Operators on nodes call TensorNode's methods. (In an op's forward and backward they act on
                # plain arrays, so an op class depends on none.)
                for method in operator_methods(definition.node):
                    if self.find(tensor_node, f'TensorNode.{method}') is not None:
                        definition.deps.add((tensor_node, f'TensorNode.{method}'))

    def is_op_class(self, definition, _seen=None):
        """True if the definition is a class derived from the package's Op."""
        seen = _seen or set()
        if not isinstance(definition.node, ast.ClassDef) or definition.key in seen:
            return False
        seen.add(definition.key)
        for base in definition.node.bases:
            if not isinstance(base, ast.Name):
                continue
            found = self.resolve(definition.module, base.id)
            if isinstance(found, Definition) and (found.key == ('core', 'Op') or self.is_op_class(found, seen)):
                return True
        return False

    def _tensor_node_module(self):
        core = self.modules.get('core')
        return 'core' if core is not None and 'TensorNode' in core.definitions else None

    # -- decisions --------------------------------------------------------------------------------------

    def _decide(self):
        # 1. Unchanged: upstream as it stands, and (transitively) using only unchanged definitions. The
        #    greatest fixed point: start from every upstream definition and drop those that use a dropped one.
        unchanged = {d.key for d in self.definitions() if d.revisions and not d.problem}
        machinery = {('core', name) for name in MACHINERY if self.find('core', name) is not None}
        unchanged |= machinery  # a use of TensorNode means vgrad's, whatever the student wrote
        why = {}
        changed = True
        while changed:
            changed = False
            for definition in self.definitions():
                if definition.key in unchanged and definition.key not in machinery:
                    bad = sorted(dep for dep in definition.deps if dep not in unchanged)
                    if bad:
                        unchanged.discard(definition.key)
                        why[definition.key] = bad[0]
                        changed = True

        # 2. What runs.
        for definition in self.definitions():
            key = definition.key
            if definition.module == 'core' and definition.name in MACHINERY:
                definition.status = MACHINERY_STATUS
                definition.detail = f"vgrad's {definition.name}"
                if definition.name == 'TensorNode':
                    ignored = [d.name.split('.', 1)[1] for d in self.modules['core'].definitions.values()
                               if d.name.startswith('TensorNode.') and d.problem
                               and d.name.split('.', 1)[1] in MACHINERY_METHODS]
                    if ignored:
                        definition.detail += f' (your changes to {", ".join(ignored)} are not used)'
                elif definition.problem:
                    definition.detail += ' (your changes to it are not used)'
                continue
            if definition.name.startswith('TensorNode.'):
                method = definition.name.split('.', 1)[1]
                if method not in MACHINERY_METHODS and key not in unchanged:
                    definition.grafted = True
                    definition.status = AS_WRITTEN
                    definition.detail = _reason(definition, why, self) + "; added to vgrad's TensorNode"
                else:
                    definition.status = MACHINERY_STATUS
                continue
            if key in unchanged:
                definition.equivalent = equivalents.for_definition(definition.name, definition.revisions,
                                                                         definition.node)
                if definition.equivalent is not None:
                    definition.status = ACCELERATED
                    definition.detail = f'as in vugrad {_revision_range(definition.revisions)}; runs ' \
                                        f'{equivalents.describe(definition.equivalent)}'
                    continue
            if definition.revisions and not definition.problem:
                definition.status = UPSTREAM
                definition.detail = (f'as in vugrad {_revision_range(definition.revisions)}'
                                     + (f'; uses {_name(why[key])}, which is yours' if key in why else ''))
            else:
                definition.status = AS_WRITTEN
                definition.detail = _reason(definition, why, self)
            self._swap_methods(definition, unchanged)

    def _swap_methods(self, definition, unchanged):
        """A class kept as written may still have methods vgrad can run (Linear.forward when only __init__
        changed): swap in those whose own code is upstream's and whose dependencies are unchanged."""
        if not isinstance(definition.node, ast.ClassDef):
            return
        for member in definition.node.body:
            for method, node in binding_names(member).items():
                replacement = equivalents.for_method(definition.name, method)
                if node is None or replacement is None:
                    continue
                if not upstream.has_method(definition.name, method, fingerprint(node)):
                    continue
                uses = [self.resolve(definition.module, n) for n in free_names(node)]
                keys = {u.key for u in uses if isinstance(u, Definition)}
                core = self._tensor_node_module()
                if core is not None:
                    keys |= {(core, f'TensorNode.{m}') for m in operator_methods(node)
                             if self.find(core, f'TensorNode.{m}') is not None}
                if all(k in unchanged for k in keys):
                    definition.swapped[method] = replacement
        if definition.swapped:
            definition.detail += '; ' + ', '.join(f'{m} (unchanged) runs {equivalents.describe(f)}'
                                                  for m, f in definition.swapped.items())

    # -- summaries --------------------------------------------------------------------------------------

    def by_status(self, status):
        return [d for d in self.definitions() if d.status == status and '.' not in d.name]

    def summary(self):
        """The one line printed on stderr when the package is loaded."""
        replaced = [d for d in self.definitions() if d.status == ACCELERATED]
        loaders = sum(1 for d in replaced if equivalents.is_loader(d.equivalent))
        count = len(replaced) - loaders + sum(len(d.swapped) for d in self.definitions())
        kernels = f'{count} upstream definition{"s" if count != 1 else ""} on C kernels'
        if loaders:
            kernels += f' and {loaders} data loader{"s" if loaders != 1 else ""} by vgrad'
        yours = {}
        for d in self.definitions():
            shown = d.grafted or isinstance(d.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if d.status == AS_WRITTEN and shown and '.' not in d.name or d.grafted:
                yours.setdefault(self.relative_path(d.path), []).append(d.name)
        if not yours:
            return f'vgrad: your vugrad ({self.directory}) is upstream vugrad; {kernels}'
        parts = '; '.join(f'{path}: {", ".join(names)}' for path, names in yours.items())
        verb = 'runs' if sum(map(len, yours.values())) == 1 else 'run'
        return f'vgrad: your {parts} {verb} as written; {kernels}'

    def table(self):
        """The --explain table: one row per definition."""
        rows = [('file:line', 'definition', 'runs', 'why')]
        for d in sorted(self.definitions(), key=lambda d: (d.path, d.lineno, d.name)):
            if d.node is None and not d.problem:
                continue
            if d.name.startswith('TensorNode.') and not d.grafted and not d.problem:
                continue
            status = d.status + (' + C kernels' if d.swapped else '')
            if d.status == ACCELERATED and equivalents.is_loader(d.equivalent):
                status = "vgrad's loader"
            rows.append((f'{self.relative_path(d.path)}:{d.lineno}', d.name, status, d.detail))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return '\n'.join(f'{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {w}'.rstrip() for a, b, c, w in rows)


def _name(key):
    module, name = key
    return f'{module}.{name}' if module else name


def _reason(definition, why, package):
    if definition.problem:
        return definition.problem
    if definition.key in why:
        dep = package.find(*why[definition.key])
        return f'uses {_name(why[definition.key])} ({dep.problem or "yours"})' if dep else 'uses something of yours'
    return 'yours'


def _revision_range(revisions):
    ordered = upstream.in_order(revisions)
    if len(ordered) == 1:
        return ordered[0]
    return f'{ordered[0]}..{ordered[-1]}'


def _python_files(directory):
    """(module name inside the package, path) of every .py file below the package's folder."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__pycache__'))
                         and os.path.isfile(os.path.join(root, d, '__init__.py')))
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            relative = os.path.relpath(os.path.join(root, name), directory)[:-3].replace(os.sep, '.')
            if relative == '__init__':
                relative = ''
            elif relative.endswith('.__init__'):
                relative = relative[:-len('.__init__')]
            yield relative, os.path.join(root, name)


def _absolute(module, level, target, is_package):
    """The package-relative module name of `from <level dots><target> import ...` inside `module`."""
    parts = module.split('.') if module else []
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[:len(parts) - (level - 1)] if level - 1 <= len(parts) else None
    if parts is None:
        return None
    return '.'.join(parts + ([target] if target else []))


def _read_module(name, path):
    module = Module(name, path)
    try:
        with open(path, 'rb') as f:
            module.tree = ast.parse(f.read(), path)
    except (SyntaxError, ValueError, OSError):
        return module
    is_package = os.path.basename(path) == '__init__.py'
    seen = {}
    for stmt in module.tree.body:
        if isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                target = _absolute(name, stmt.level, stmt.module, is_package)
            elif stmt.module and (stmt.module == 'vugrad' or stmt.module.startswith('vugrad.')):
                target = stmt.module[len('vugrad.'):] if stmt.module != 'vugrad' else ''
            else:
                target = None  # external
            for alias in stmt.names:
                if alias.name == '*':
                    if target is not None:
                        module.star_imports.append(target)
                    continue
                local = alias.asname or alias.name
                module.definitions.pop(local, None)
                if target is not None:
                    module.imports[local] = (target, alias.name)
                else:
                    module.imports.pop(local, None)
            continue
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.name == 'vugrad' or alias.name.startswith('vugrad.'):
                    inner = alias.name[len('vugrad.'):] if alias.name != 'vugrad' else ''
                    module.imports[alias.asname or 'vugrad'] = (inner if alias.asname else '', None)
            continue
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == '__all__'):
            try:
                module.all_names = list(ast.literal_eval(stmt.value))
            except ValueError:
                pass
        for local, node in binding_names(stmt).items():
            module.imports.pop(local, None)
            definition = Definition(name, local, path, stmt.lineno, node)
            if node is None:
                definition.problem = f'set by the statement at line {stmt.lineno}'
            else:
                definition.fingerprint = fingerprint(node)
                definition.revisions = upstream.revisions_of(local, definition.fingerprint)
                if not definition.revisions:
                    definition.problem = 'differs from upstream' if upstream.knows(local) else 'new'
            if local in seen:
                definition.problem = f'defined twice (lines {seen[local]} and {stmt.lineno})'
            seen[local] = stmt.lineno
            module.definitions[local] = definition
            if isinstance(node, ast.ClassDef) and local == 'TensorNode' and name == 'core':
                _add_methods(module, definition)
        for mutated in mutated_names(stmt) - set(binding_names(stmt)):
            target = module.definitions.get(mutated)
            if target is not None and not target.problem:
                target.problem = f'changed at line {stmt.lineno}'
    return module


def _add_methods(module, cls):
    """Each method of the student's TensorNode becomes a definition 'TensorNode.<name>' of its own."""
    for member in cls.node.body:
        for method, node in binding_names(member).items():
            definition = Definition(module.name, f'TensorNode.{method}', cls.path, member.lineno, node)
            if node is not None:
                definition.fingerprint = fingerprint(node)
                definition.revisions = upstream.method_revisions('TensorNode', method, definition.fingerprint)
                if not definition.revisions:
                    definition.problem = 'differs from upstream' if upstream.knows_method('TensorNode', method) else 'new'
            else:
                definition.problem = 'changed'
            module.definitions[definition.name] = definition
