"""
The import machinery of the overlay: a finder that answers every `import vugrad...`.

When the script asks for `vugrad`, the finder asks the other finders where it would have come from (the
script's folder, a `_context.py` sys.path entry, PYTHONPATH, the working directory, an installed copy). If
there is such a package, each of its files is loaded from its own path, as written, after one rewrite of its
syntax tree (line numbers kept, so tracebacks and the --check report point into the student's files):

- in core.py, the classes TensorNode, OpNode and Op become vgrad's (methods the student added to TensorNode
  are kept, on a subclass of vgrad's TensorNode that vgrad's ops then create);
- every definition that analysis.py found unchanged from upstream, and that vgrad has an equivalent of,
  becomes an assignment of that equivalent;
- after the module has run, methods that vgrad runs in a class kept as written are swapped in;
- a name the module lacks falls back to vgrad's module of the same role (a module-level __getattr__), and a
  file the package lacks (vugrad.mnist, say) to vgrad's module.

Nothing is written to the student's __pycache__: the rewritten code exists only in memory.

Without such a package, `vugrad` is vgrad itself, and so are its submodules; `plain=True` gives that
behaviour even when a package is there.
"""
import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

from .analysis import ACCELERATED, MACHINERY, Package

# vugrad's modules -> vgrad's module of the same role: for plain mode, for files a student's package lacks,
# and for names a student's module lacks.
ALIASES = {
    'vugrad': 'vgrad',
    'vugrad.core': 'vgrad.core',
    'vugrad.ops': 'vgrad.ops',
    'vugrad.functions': 'vgrad.functions',
    'vugrad.modules': 'vgrad.modules',
    'vugrad.mnist': 'vgrad.data',
}
RUNTIME_NAME = '__vgrad_overlay__'  # the name under which rewritten modules find the Runtime
OWN_PREFIX = '__vugrad_own_'         # the student's own TensorNode class is kept under this name


def _is_vugrad(fullname):
    return fullname == 'vugrad' or fullname.startswith('vugrad.')


class AliasLoader(importlib.abc.Loader):
    """Loads `vugrad.X` as an existing vgrad module."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class OverlayLoader(importlib.abc.Loader):
    """Loads one file of the student's package, rewritten as described above."""

    def __init__(self, finder, fullname, path):
        self.finder, self.fullname, self.path = finder, fullname, path

    def get_source(self, fullname):
        with open(self.path, 'rb') as f:
            return importlib.util.decode_source(f.read())

    def get_filename(self, fullname):
        return self.path

    def exec_module(self, module):
        package = self.finder.package
        inner = self.fullname[len('vugrad.'):] if self.fullname != 'vugrad' else ''
        analysed = package.modules.get(inner)
        with open(self.path, 'rb') as f:
            source = f.read()
        if analysed is None or analysed.tree is None:
            code = compile(source, self.path, 'exec', dont_inherit=True)  # fails as it would without vgrad
        else:
            tree = _rewrite(ast.parse(source, self.path), analysed)
            code = compile(tree, self.path, 'exec', dont_inherit=True)
        module.__dict__[RUNTIME_NAME] = self.finder.runtime
        exec(code, module.__dict__)
        if analysed is not None:
            self.finder.runtime.after_module(module, analysed)
        fallback = ALIASES.get(self.fullname)
        if fallback is not None and '__getattr__' not in module.__dict__:
            module.__getattr__ = _fallback_getattr(self.fullname, fallback)


def _fallback_getattr(name, target):
    def __getattr__(attribute):
        if attribute.startswith('__'):
            raise AttributeError(f'module {name!r} has no attribute {attribute!r}')
        try:
            return getattr(importlib.import_module(target), attribute)
        except AttributeError:
            raise AttributeError(f'module {name!r} has no attribute {attribute!r} (neither has vgrad\'s '
                                 f'{target})') from None
    return __getattr__


def _call(function, *args):
    """The expression `__vgrad_overlay__.<function>(<string args>)`."""
    return ast.Call(func=ast.Attribute(value=ast.Name(id=RUNTIME_NAME, ctx=ast.Load()), attr=function,
                                       ctx=ast.Load()),
                    args=[a if isinstance(a, ast.AST) else ast.Constant(value=a) for a in args], keywords=[])


def _assign(name, value, like):
    stmt = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=value)
    return ast.fix_missing_locations(ast.copy_location(stmt, like))


def _rewrite(tree, module):
    """Replace the statements of accelerated definitions and of the graph machinery."""
    body = []
    for stmt in tree.body:
        name = getattr(stmt, 'name', None) if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                ast.ClassDef)) else None
        definition = module.definitions.get(name) if name else None
        if definition is None or definition.lineno != stmt.lineno:
            body.append(stmt)
            continue
        if module.name == 'core' and name in MACHINERY:
            if name == 'TensorNode':
                stmt.name = OWN_PREFIX + name  # kept, under another name, for its methods to graft
                body.append(stmt)
                body.append(_assign(name, _call('machinery', name, ast.Name(id=stmt.name, ctx=ast.Load())), stmt))
            else:
                body.append(_assign(name, _call('machinery', name), stmt))
        elif definition.status == ACCELERATED:
            body.append(_assign(name, _call('equivalent', module.name, name), stmt))
        else:
            body.append(stmt)
    tree.body = body
    return tree


class Runtime:
    """What the rewritten modules call while they run."""

    def __init__(self, package):
        self.package = package

    def equivalent(self, module, name):
        return self.package.find(module, name).equivalent

    def machinery(self, name, own=None):
        """vgrad's class of that name. For TensorNode, if the student added or changed methods that are not
        the traversal's: a subclass of vgrad's TensorNode with those methods, which vgrad's ops then use for
        the nodes they create (vgrad.core._node_class), so that every node has them."""
        from .. import core
        vgrad_class = getattr(core, name)
        if own is None:
            return vgrad_class
        methods = {definition.name.split('.', 1)[1] for definition in self.package.modules['core'].definitions.values()
                   if definition.grafted}
        if not methods:
            return vgrad_class
        grafted = type(name, (vgrad_class,), {method: own.__dict__[method] for method in methods})
        grafted.__module__ = own.__module__
        core._node_class = grafted
        return grafted

    def after_module(self, module, analysed):
        for definition in analysed.definitions.values():
            if definition.swapped:
                cls = module.__dict__.get(definition.name)
                for method, function in definition.swapped.items():
                    setattr(cls, method, function)


class OverlayFinder(importlib.abc.MetaPathFinder):
    """Answers `import vugrad` and `import vugrad.X` (see the module's docstring)."""

    def __init__(self, plain=False, report=None, explain=False):
        self.plain = plain
        self.report = report          # a callable taking the summary line (and the table), or None to be quiet
        self.explain = explain
        self.package = None           # the analysed student package, once `vugrad` was imported
        self.runtime = None
        self.decided = False

    def find_spec(self, fullname, path=None, target=None):
        if not _is_vugrad(fullname):
            return None
        if not self.decided:
            self._decide()
        if self.package is None:
            return self._alias_spec(fullname)
        if fullname == 'vugrad':
            init = os.path.join(self.package.directory, '__init__.py')
            return importlib.util.spec_from_file_location(
                fullname, init, loader=OverlayLoader(self, fullname, init),
                submodule_search_locations=[self.package.directory])
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.origin and spec.origin.endswith('.py'):
            locations = spec.submodule_search_locations
            return importlib.util.spec_from_file_location(
                fullname, spec.origin, loader=OverlayLoader(self, fullname, spec.origin),
                submodule_search_locations=locations)
        if spec is not None:
            return spec  # a compiled module or a data folder of theirs: load it as Python would
        if fullname in ALIASES:
            return importlib.util.spec_from_loader(fullname, AliasLoader(ALIASES[fullname]))
        return None

    def _alias_spec(self, fullname):
        if fullname in ALIASES:
            return importlib.util.spec_from_loader(fullname, AliasLoader(ALIASES[fullname]))
        raise ImportError(f'{fullname} is not provided by vgrad.as_vugrad: with no vugrad package of your own '
                          f'(or with --plain), vugrad is vgrad, which maps only {", ".join(ALIASES)}',
                          name=fullname)

    def _decide(self):
        self.decided = True
        if self.plain:
            return
        directory = student_package()
        if directory is None:
            return
        self.package = Package(directory)
        self.runtime = Runtime(self.package)
        if self.report is not None:
            self.report(self.package.summary(), self.package.table() if self.explain else None)


def student_package():
    """The folder of the `vugrad` package that `import vugrad` would load without vgrad, or None."""
    for finder in sys.meta_path:
        if isinstance(finder, OverlayFinder):
            continue
        find = getattr(finder, 'find_spec', None)
        if find is None:
            continue
        try:
            spec = find('vugrad', None)
        except Exception:  # a finder that cannot answer for a name it does not know
            continue
        if spec is None:
            continue
        if spec.origin and os.path.basename(spec.origin) == '__init__.py':
            return os.path.dirname(spec.origin)
        return None  # a single-file module or a namespace package: not a vugrad package
    return None


def install(plain=False, report=None, explain=False):
    """Put the overlay's finder first on sys.meta_path (once); returns it."""
    for finder in sys.meta_path:
        if isinstance(finder, OverlayFinder):
            return finder
    finder = OverlayFinder(plain=plain, report=report, explain=explain)
    sys.meta_path.insert(0, finder)
    return finder
