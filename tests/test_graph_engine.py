"""
The graph engine has one source, vgrad/core.py, which runs compiled by Cython (the default) or as Python
(VGRAD_PURE_PYTHON=1). These tests check that the compiled module is the one in use, that core.pxd declares
exactly core.py's fields, the cases where the two engines of earlier versions disagreed, and they run every
graph-level test file once more with core.py as Python.
"""
import ast
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import vgrad as vg
import vgrad.core as core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(vg.__file__)))
PURE = bool(os.environ.get('VGRAD_PURE_PYTHON'))
# Every test file that exercises the graph machinery: run again with core.py as Python.
GRAPH_TESTS = ['tests/test_graph.py', 'tests/test_graph_scale.py', 'tests/test_error_messages.py',
               'tests/test_graph_engine.py', 'tests/test_api.py', 'tests/test_gradcheck.py']


def test_the_engine_in_use_is_the_one_asked_for():
    assert core.COMPILED == (not PURE)
    if not PURE:
        assert not core.__file__.endswith('.py'), 'vgrad.core is not compiled: build with Cython installed'


def _slots(cls_name):
    tree = ast.parse(open(os.path.join(ROOT, 'vgrad', 'core.py')).read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and stmt.targets[0].id == '__slots__':
                    return set(ast.literal_eval(stmt.value))
    raise AssertionError(cls_name)


def _pxd_fields(cls_name):
    text = open(os.path.join(ROOT, 'vgrad', 'core.pxd')).read()
    body = re.search(rf'cdef class {cls_name}:\n((?:    .*\n)+)', text).group(1)
    fields = set()
    for line in body.splitlines():
        declared = re.match(r'\s+cdef (?:public )?(?:object|dict) (.*)', line)
        if declared:
            fields.update(name.strip() for name in declared.group(1).split(','))
    return fields


@pytest.mark.parametrize('cls', ['TensorNode', 'OpNode'])
def test_core_pxd_declares_exactly_the_slots_of_core_py(cls):
    assert _pxd_fields(cls) == _slots(cls)


def test_a_new_attribute_works_on_nodes_of_both_kinds():
    node = vg.TensorNode(np.ones(2))
    node.label = 'mine'  # a student's own attribute
    out = vg.Sigmoid.do_forward(node)
    out.source.note = 'an op node too'
    assert node.label == 'mine' and out.source.note == 'an op node too'


def test_nodes_pickle_and_copy():
    import copy
    import pickle
    node = vg.TensorNode(np.arange(3.0), name='x')
    node.extra = 5
    for twin in (pickle.loads(pickle.dumps(node)), copy.deepcopy(node)):
        np.testing.assert_array_equal(twin.value, node.value)
        assert twin.name == 'x' and twin.extra == 5


class One(vg.Op):
    """A forward that returns a tuple of one array."""

    @staticmethod
    def forward(context, x):
        return (x * 2.0,)

    @staticmethod
    def backward(context, go):
        return go * 2.0


def test_forward_returning_a_one_tuple_gives_one_node_with_and_without_grad():
    x = vg.TensorNode(np.ones(3))
    with_graph = One.do_forward(x)
    with vg.no_grad():
        without = One.do_forward(x)
    assert isinstance(with_graph, vg.TensorNode) and isinstance(without, vg.TensorNode)
    np.testing.assert_array_equal(with_graph.value, without.value)


class Subclassed(np.ndarray):
    pass


class ReturnsSubclass(vg.Op):
    """A backward that returns an ndarray subclass."""

    @staticmethod
    def forward(context, x):
        return x * 3.0

    @staticmethod
    def backward(context, go):
        return (go * 3.0).view(Subclassed)


def test_backward_may_return_an_ndarray_subclass():
    x = vg.TensorNode(np.ones(4))
    vg.Sum.do_forward(ReturnsSubclass.do_forward(x)).backward()
    assert type(x.grad) is np.ndarray
    np.testing.assert_array_equal(x.grad, np.full(4, 3.0))


def test_every_node_below_is_reached_once_depth_first():
    a = vg.TensorNode(np.ones(2), name='a')
    b = vg.TensorNode(np.ones(2), name='b')
    c = vg.Add.do_forward(a, b)
    c.name = 'c'
    d = vg.Multiply.do_forward(c, a)
    d.name = 'd'
    found = core._nodes_below(d)
    assert [n.name for n in found] == ['d', 'a', 'c', 'b']  # a stack: the last input first, each node once


@pytest.mark.skipif(PURE, reason='this is the pure-Python run itself')
def test_graph_tests_pass_with_core_py_run_as_python(tmp_path):
    """Every graph-level test file again, with core.py as Python: the one source behaves the same both ways."""
    env = dict(os.environ, VGRAD_PURE_PYTHON='1', PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider', *GRAPH_TESTS],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert ' passed' in result.stdout


def _add_into_cases(rng):
    a = rng.standard_normal((5, 7))
    buffer = rng.standard_normal(12)
    yield 'float64', a.copy(), rng.standard_normal((5, 7))
    yield 'float32', a.astype(np.float32), rng.standard_normal((5, 7)).astype(np.float32)
    yield 'mixed dtypes', a.copy(), rng.standard_normal((5, 7)).astype(np.float32)
    yield 'Fortran order', np.asfortranarray(a), rng.standard_normal((5, 7))
    yield 'strided grad', a.copy(), rng.standard_normal((10, 7))[::2]
    yield 'same buffer', a.copy(), None
    yield 'partly overlapping', buffer[1:11], buffer[:10]
    yield 'integers', np.arange(6), np.arange(6)
    yield 'special values', np.array([np.inf, -np.inf, np.nan, -0.0]), np.array([-np.inf, 1.0, 2.0, 0.0])


def test_add_into_is_numpys_plus_equals(rng):
    """The one step of backpropagation in C (core._run_backward's current += grad) gives what += gives."""
    from vgrad import _C
    for label, current, grad in _add_into_cases(rng):
        if grad is None:
            grad = current
        expected = current.copy()
        expected += grad.copy() if grad is current else grad
        if label == 'partly overlapping':  # NumPy's += on overlapping views works as if on copies
            expected = current.copy()
            expected += grad.copy()
        out = _C.add_into(current, grad)
        assert out is current, label
        np.testing.assert_array_equal(current, expected, err_msg=label)
    listed = [1.0]
    summed = _C.add_into(listed, np.array([2.0]))  # as `listed += array` in Python: NumPy's + makes an array
    assert summed is not listed and summed.tolist() == [3.0] and listed == [1.0]
