"""The errors a student meets most, and what their messages must say.

Each test pins the facts a message has to carry (the op's name, the shapes, the input, a hint at the fix),
not its exact wording, so the wording can improve without breaking them. Backward errors are checked with
the graph traversal, compiled and as Python (tests/test_graph_engine.py runs this file in both).
"""
import re
import subprocess
import sys

import numpy as np
import pytest

import vgrad as vg
import vgrad.core as core


def says(*parts):
    """A regex matching a message that contains every part literally, in any order."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


@pytest.fixture
def traversal():
    """The graph traversal in use: core.py compiled, or as Python (the pure-Python pass runs this file too)."""
    return "compiled" if core.COMPILED else "python"


def node(*shape):
    return vg.TensorNode(np.ones(shape))


# ---------------------------------------------------------------- shape mismatches in element-wise ops

@pytest.mark.parametrize("op", [vg.Add, vg.Sub, vg.Multiply, vg.Div])
@pytest.mark.parametrize("a,b", [((3, 2), (2, 3)), ((3, 2), (3, 1)), ((4,), (1, 4))])
def test_elementwise_shape_mismatch_names_op_and_shapes(op, a, b):
    with pytest.raises(ValueError, match=says(op.__name__, str(a), str(b))):
        op.do_forward(node(*a), node(*b))


@pytest.mark.parametrize("op", [vg.Add, vg.Sub, vg.Multiply, vg.Div])
def test_elementwise_shape_mismatch_fixable_by_expand_suggests_it(op):
    # (3, 1) against (3, 2): repeating the singleton column is the fix, and the message says so.
    with pytest.raises(ValueError, match=says(op.__name__, "(3, 2)", "(3, 1)", "Expand")):
        op.do_forward(node(3, 2), node(3, 1))


@pytest.mark.parametrize("combine,name", [(lambda x, y: x + y, "Add"), (lambda x, y: x - y, "Sub"),
                                          (lambda x, y: x * y, "Multiply"), (lambda x, y: x / y, "Div")])
def test_operators_give_the_same_message(combine, name):
    with pytest.raises(ValueError, match=says(name, "(3, 2)", "(3, 1)", "Expand")):
        combine(node(3, 2), node(3, 1))


def test_failed_op_leaves_the_graph_untouched():
    a, b = node(3, 2), node(2, 3)
    with pytest.raises(ValueError):
        vg.Add.do_forward(a, b)
    assert a.numparents == 0 and b.numparents == 0


def test_errors_are_exceptions_even_under_python_O():
    # `assert` disappears under -O; vgrad's checks must not.
    code = ("import numpy as np, vgrad as vg\n"
            "try:\n    vg.Add.do_forward(vg.TensorNode(np.ones(2)), vg.TensorNode(np.ones(3)))\n"
            "except ValueError as e:\n    print('ValueError', e)\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ValueError Add:")


# ---------------------------------------------------------------- inputs that are not nodes

def test_array_given_to_an_op_names_op_and_input():
    with pytest.raises(TypeError, match=says("Add", "input 1", "ndarray", "vg.TensorNode")):
        vg.Add.do_forward(node(2), np.ones(2))


def test_array_combined_with_an_operator_says_to_wrap_it():
    with pytest.raises(TypeError, match=says("ndarray", "vg.TensorNode")):
        node(2) + np.ones(2)


# ---------------------------------------------------------------- backward() from a non-scalar

@pytest.mark.parametrize("shape", [(3, 2), (4,), (2, 1)])
def test_backward_from_a_non_scalar_says_to_reduce_it(traversal, shape):
    out = vg.Sigmoid.do_forward(node(*shape))
    with pytest.raises(ValueError, match=says("backward()", "scalar", str(shape), "vg.Sum")):
        out.backward()


def test_backward_from_a_one_element_node_works(traversal):
    x = node(1, 1)
    vg.Exp.do_forward(x).backward()
    np.testing.assert_allclose(x.grad, np.exp(np.ones((1, 1))))


# ---------------------------------------------------------------- a Python op's backward returns the wrong thing

class OneGradientForTwoInputs(vg.Op):
    @staticmethod
    def forward(context, x, y):
        return x * y

    @staticmethod
    def backward(context, go):
        return go  # should be a pair


class ThreeGradientsForTwoInputs(vg.Op):
    @staticmethod
    def forward(context, x, y):
        return x + y

    @staticmethod
    def backward(context, go):
        return go, go, go


@pytest.mark.parametrize("op,returned", [(OneGradientForTwoInputs, "1"), (ThreeGradientsForTwoInputs, "3")])
def test_wrong_number_of_gradients_names_op_and_counts(traversal, op, returned):
    x = node(3, 2)
    loss = vg.Sum.do_forward(op.do_forward(x, x))
    with pytest.raises(ValueError, match=says(f"{op.__name__}.backward", f"returned {returned} gradient",
                                              "2 inputs")):
        loss.backward()


class RowSumWithoutBroadcast(vg.Op):
    """Sums rows, but its backward returns the upstream gradient as it is: shape (n,) for an (n, m) input."""

    @staticmethod
    def forward(context, x):
        return x.sum(axis=1)

    @staticmethod
    def backward(context, go):
        return go


class SecondGradientTransposed(vg.Op):
    @staticmethod
    def forward(context, x, y):
        return x * y

    @staticmethod
    def backward(context, go):
        return go, go.T


def test_wrong_gradient_shape_names_op_input_and_shapes(traversal):
    loss = vg.Sum.do_forward(RowSumWithoutBroadcast.do_forward(node(3, 2)))
    with pytest.raises(ValueError, match=says("RowSumWithoutBroadcast.backward", "input 0", "(3,)", "(3, 2)")):
        loss.backward()


def test_wrong_gradient_shape_of_the_second_input(traversal):
    loss = vg.Sum.do_forward(SecondGradientTransposed.do_forward(node(3, 2), node(3, 2)))
    with pytest.raises(ValueError, match=says("SecondGradientTransposed.backward", "input 1", "(2, 3)", "(3, 2)")):
        loss.backward()


def test_op_without_backward_fails_at_backward_time(traversal):
    class ForwardOnly(vg.Op):
        @staticmethod
        def forward(context, x):
            return 2 * x

    loss = vg.Sum.do_forward(ForwardOnly.do_forward(node(2)))  # building the graph works
    with pytest.raises(NotImplementedError, match="backward"):
        loss.backward()


# ---------------------------------------------------------------- mistakes in a student's backward

class _Doubler(vg.Op):
    """A student op whose backward is set per test."""

    @staticmethod
    def forward(context, x):
        return x * 2


def _run_with_backward(backward):
    op = type("Doubler", (_Doubler,), {"backward": staticmethod(backward)})
    x = node(2, 3)
    vg.Sum.do_forward(op.do_forward(x)).backward()


def test_backward_that_forgets_return_is_named(traversal):
    def backward(context, go):
        go * 2  # no return

    with pytest.raises(ValueError, match=says("Doubler.backward returned None", "return")):
        _run_with_backward(backward)


def test_backward_returning_a_string_is_named(traversal):
    with pytest.raises(TypeError, match=says("Doubler.backward", "str", "input 0", "not an array")):
        _run_with_backward(lambda context, go: "oops")


def test_gradient_count_is_singular_for_one(traversal):
    with pytest.raises(ValueError, match=says("returned 2 gradients", "has 1 input:")):
        _run_with_backward(lambda context, go: (go, go))


def test_missing_backward_names_the_op(traversal):
    with pytest.raises(NotImplementedError, match=says("Doubler", "backward")):
        vg.Sum.do_forward(type("Doubler", (_Doubler,), {}).do_forward(node(2))).backward()
