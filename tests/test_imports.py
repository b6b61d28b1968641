"""vgrad's library modules import each other without cycles: each builds only on the ones below it.

core.py, which every op builds on, imports no op and no drawing code; the ops of ops.py reach TensorNode's
operators (+ - * / @), and graph_draw.py reaches TensorNode's picture in Jupyter, by handing them to core.py when
they are imported. A cycle would make a module's names depend on which module happens to be imported first.
"""
import ast
import os

import numpy as np

import vgrad

PACKAGE = os.path.dirname(os.path.abspath(vgrad.__file__))


def imported_modules(path):
    """The vgrad modules a file imports, anywhere in it (function-level imports too): dotted names below vgrad."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import a, b
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vgrad."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("vgrad."))
    return found


def graph():
    """module -> the vgrad modules it imports, for the modules of the package's top level (not __init__.py)."""
    modules = {name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__init__.py"}
    return {m: imported_modules(os.path.join(PACKAGE, m + ".py")) & modules for m in modules}


def test_core_imports_neither_ops_nor_graph_draw():
    imports = graph()["core"]
    assert not imports & {"ops", "nn_ops", "graph_draw", "functions", "modules"}, imports


# The command-line programs, on top of the library: `python -m vgrad.train --model cnn` hands over to train_cnn.py,
# which uses train.py's helpers (a function-level import each way).
PROGRAMS = {"train", "train_cnn"}


def test_no_import_cycle_in_the_library():
    g = {m: imports - PROGRAMS for m, imports in graph().items() if m not in PROGRAMS}
    assert "ops" in g["nn_ops"] or "core" in g["ops"]  # the graph was read: ops.py builds on core.py
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for n in sorted(g[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(g):
        visit(m)


def test_core_has_the_ops_vugrad_defined_there():
    """Course code imports Add, Sub, Multiply and MatrixMultiply from vugrad.core: core.py has them once vgrad is
    imported (ops.py hands them over), and TensorNode's operators use them."""
    import vgrad.core as core
    import vgrad.ops as ops

    for name in ("Add", "Sub", "Multiply", "Div", "MatrixMultiply"):
        assert getattr(core, name) is getattr(ops, name), name
    x = vgrad.TensorNode(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert (x @ x).source.op is ops.MatrixMultiply and (x / 2.0).source.op is ops.Div
