"""The errors a student meets most, and what their messages must say.

Each test pins the facts a message has to carry (the op's name, the shapes, the input, a hint at the fix),
not its exact wording, so the wording can improve without breaking them. Backward errors are checked with
the graph traversal, compiled and as Python (tests/test_graph_engine.py runs this file in both).
"""
import re
import subprocess
import sys
import warnings

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


# ---------------------------------------------------------------- a NumPy array (or list, or torch tensor) given to a model

def _facts_of_an_array_given_to(owner, what="numpy.ndarray"):
    return says(f"{owner}:", what, "not a TensorNode", "wrap it", "vg.TensorNode(x)")


@pytest.mark.parametrize("make,x,owner", [
    (lambda: vg.MLP(2, 3), np.ones((4, 2)), "MLP"),
    (lambda: vg.Linear(2, 3), np.ones((4, 2)), "Linear"),
    (lambda: vg.Sequential(vg.Linear(2, 3), vg.relu), np.ones((4, 2)), "Sequential"),
    (lambda: vg.Sequential(vg.relu, vg.Linear(2, 3)), np.ones((4, 2)), "Sequential"),
    (lambda: vg.Sequential(vg.ReLU(), vg.Linear(2, 3)), np.ones((4, 2)), "Sequential"),
    (lambda: vg.Conv2d(1, 2, 3), np.ones((1, 1, 5, 5)), "Conv2d"),
    (lambda: vg.MaxPool2d(2), np.ones((1, 1, 4, 4)), "MaxPool2d"),
    (lambda: vg.BatchNorm1d(2), np.ones((4, 2)), "BatchNorm1d"),
    (lambda: vg.Dropout(0.5), np.ones((4, 2)), "Dropout"),
    (lambda: vg.Flatten(), np.ones((4, 2, 2)), "Flatten"),
])
def test_an_array_given_to_a_module_says_to_wrap_it(make, x, owner):
    # Today's failure was `'int' object is not callable` (Linear called input.size(), an ndarray's int)
    with pytest.raises(TypeError, match=_facts_of_an_array_given_to(owner)):
        make()(x)


class TwoLayers(vg.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = vg.Linear(2, 4), vg.Linear(4, 3)

    def forward(self, x):
        return self.second(vg.sigmoid(self.first(x)))


class ArrayInside(vg.Module):
    """Given a node, but hands its inner layer an array: the inner layer is the one to name."""

    def __init__(self):
        super().__init__()
        self.layer = vg.Linear(2, 3)

    def forward(self, x):
        return self.layer(x.value)


def test_the_module_named_is_the_one_the_student_called():
    with pytest.raises(TypeError, match=_facts_of_an_array_given_to("TwoLayers")) as err:
        TwoLayers()(np.ones((4, 2)))
    assert "Linear" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one message, not a chain of them
    with pytest.raises(TypeError, match=_facts_of_an_array_given_to("Linear")):
        ArrayInside()(node(4, 2))


def test_a_list_or_a_second_input_is_named_too():
    with pytest.raises(TypeError, match=_facts_of_an_array_given_to("MLP", "list")):
        vg.MLP(2, 3)([[1.0, 2.0]])

    class Pair(vg.Module):
        def forward(self, a, b):
            return a + vg.Sigmoid.do_forward(b)

    with pytest.raises(TypeError, match=_facts_of_an_array_given_to("Pair") + "(?=.*input 1)"):
        Pair()(node(2), np.ones(2))


def test_a_torch_tensor_given_to_a_model_says_how_to_convert_it():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=says("MLP:", "torch.Tensor", "vg.TensorNode(x.detach().numpy())")):
        vg.MLP(2, 3)(torch.ones(4, 2))


def test_a_module_that_takes_arrays_on_purpose_still_works():
    class Wraps(vg.Module):
        def __init__(self):
            super().__init__()
            self.layer = vg.Linear(2, 3)

        def forward(self, x):
            return self.layer(vg.TensorNode(x))

    assert Wraps()(np.ones((4, 2))).value.shape == (4, 3)


def test_a_modules_own_type_error_passes_unchanged():
    class Broken(vg.Module):
        def forward(self, x):
            return len(5)

    with pytest.raises(TypeError, match="has no len"):
        Broken()(np.ones(2))


# ---------------------------------------------------------------- an op called like a function

@pytest.mark.parametrize("op,function", [(vg.Sigmoid, "vg.sigmoid"), (vg.ReLU, "vg.relu"), (vg.Exp, None)])
def test_calling_an_op_class_says_it_is_an_op(op, function):
    # Today's failure was `Sigmoid() takes no arguments`
    facts = [f"{op.__name__} is an op, not a function", f"vg.{op.__name__}.do_forward(x)"]
    with pytest.raises(TypeError, match=says(*facts, *([function + "(x)"] if function else []))) as err:
        op(node(2, 3))
    if function is None:
        assert " or vg.exp(x)" not in str(err.value)


def test_calling_a_students_op_class_names_it():
    class MyReLU(vg.Op):
        @staticmethod
        def forward(context, x):
            return np.maximum(x, 0)

    with pytest.raises(TypeError, match=says("MyReLU is an op, not a function", "MyReLU.do_forward(x)")):
        MyReLU(node(2))


def test_an_op_with_settings_says_where_they_go():
    with pytest.raises(TypeError, match=says("Expand()", "vg.Expand.do_forward(x, dim=..., repeats=...)")):
        vg.Expand(dim=0, repeats=3)


def test_op_instances_without_arguments_still_work_as_in_vugrad():
    # vugrad's Op has no __new__: `Op()` and a subclass's own __init__ work, and so they do here
    assert isinstance(vg.Sigmoid(), vg.Sigmoid)

    class WithInit(vg.Op):
        def __init__(self, scale):
            self.scale = scale

    assert WithInit(2.0).scale == 2.0


# ---------------------------------------------------------------- an op's forward given TensorNodes

class MyReLU(vg.Op):
    @staticmethod
    def forward(context, x):
        return np.maximum(x, 0)

    @staticmethod
    def backward(context, go):
        return go


@pytest.mark.parametrize("op,name", [(MyReLU, "MyReLU"), (vg.Sigmoid.Reference, "Sigmoid.Reference")])
def test_a_python_ops_forward_given_a_node_says_to_use_do_forward(op, name):
    with pytest.raises(TypeError, match=says(f"{name}.forward takes arrays", "node.value",
                                             f"{name}.do_forward(node)")):
        op.forward({}, node(2, 3))


@pytest.mark.parametrize("op", [vg.Sigmoid, vg.Add, vg.Sum, vg.Affine])
def test_a_builtin_ops_forward_given_a_node_names_the_op_and_the_node(op):
    # Today's message was `Sigmoid: unsupported dtype object`. The C kernels name the op and the type.
    args = {vg.Add: 2, vg.Affine: 3}.get(op, 1)
    with pytest.raises(TypeError, match=says(op.__name__, "TensorNode")):
        op.forward({}, *[node(2, 2) for _ in range(args)])


def test_a_builtin_ops_forward_given_a_node_says_to_use_do_forward():
    with pytest.raises(TypeError, match=says("Sigmoid.forward takes arrays", "node.value",
                                             "Sigmoid.do_forward(node)")):
        vg.Sigmoid.forward({}, node(2, 3))


def test_numpy_given_a_node_says_to_take_its_value():
    with pytest.raises(TypeError, match=says("TensorNode", "node.value", "node.item()")):
        np.exp(node(2))
    with pytest.raises(TypeError, match=says("TensorNode(value)", "TensorNode already", "node.value")):
        vg.TensorNode(node(2))


# ---------------------------------------------------------------- the optimizer given the model

def test_optimizer_given_the_model_says_pass_its_parameters():
    with pytest.raises(TypeError, match=says("SGD", "MLP", "pass model.parameters()")):
        vg.SGD(vg.MLP(2, 2), lr=0.1)


# ---------------------------------------------------------------- a parameter updated with an expression

def _parameter_with_gradient():
    lin = vg.Linear(2, 3)
    vg.Sum.do_forward(lin(node(4, 2))).backward()
    return lin.w


@pytest.mark.parametrize("update", [lambda p, lr: p - lr * p.grad, lambda p, lr: -lr * p.grad + p,
                                    lambda p, lr: p.__isub__(lr * p.grad) if hasattr(p, "__isub__") else p - lr * p.grad])
def test_updating_a_parameter_with_an_array_says_change_its_value(update):
    # Today's advice was to wrap the array, which is wrong here
    p = _parameter_with_gradient()
    with pytest.raises(TypeError, match=says("numpy.ndarray", "update p.value in place", "p.value -= lr * p.grad")):
        update(p, 0.1)


def test_the_in_place_update_form_fails_the_same_way():
    p = _parameter_with_gradient()
    with pytest.raises(TypeError, match=says("numpy.ndarray", "update p.value in place", "p.value -= lr * p.grad")):
        p -= 0.1 * p.grad


def test_an_array_in_the_middle_of_a_graph_says_wrap_it_first():
    hidden = vg.Sigmoid.do_forward(node(2))
    with pytest.raises(TypeError, match=r"cannot combine a TensorNode with a numpy\.ndarray: to use the array in "
                                        r"the graph, wrap it: vg\.TensorNode\(array\)"):
        hidden * np.ones(2)


def test_numpy_scalars_still_combine_with_nodes():
    x = node(2)
    for y in (np.float64(2.0) * x, x * np.float32(2.0), np.int64(2) + x, 2.0 - x):
        assert isinstance(y, vg.TensorNode)


# ---------------------------------------------------------------- warnings: what fails silently otherwise

def test_backward_after_clear_warns_once_per_line(traversal):
    loss = vg.Sum.do_forward(vg.Linear(2, 3)(node(4, 2)))
    loss.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            loss.backward()  # the same line three times: one warning
    assert [w.category for w in caught] == [vg.GraphWarning]
    message = str(caught[0].message)
    for fact in ("backward()", "no graph below it", "clear()", "Only this node's own gradient",
                 "loss.backward() before loss.clear()"):
        assert fact in message
    assert caught[0].filename == __file__  # the student's line, not vgrad's


@pytest.mark.parametrize("value,shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_a_non_finite_loss_warns_with_what_to_check(traversal, value, shown):
    x = vg.TensorNode(np.array([value, 1.0]))
    with pytest.warns(vg.NonFiniteWarning) as caught:
        vg.Sum.do_forward(x).backward()
    message = str(caught[0].message)
    for fact in (f"the loss is {shown}", "learning rate", "255", "log"):
        assert fact in message
    assert caught[0].filename == __file__
    assert issubclass(vg.NonFiniteWarning, RuntimeWarning) and issubclass(vg.NonFiniteWarning, vg.VgradWarning)


def test_a_finite_loss_and_a_graph_give_no_warning(traversal):
    with warnings.catch_warnings():
        warnings.simplefilter("error", vg.VgradWarning)
        vg.logceloss(vg.MLP(2, 3)(node(4, 2)), np.array([0, 1, 2, 0])).backward()


@pytest.fixture
def dtype_warnings(monkeypatch):
    """The dtype warnings are given once per process: forget which were given."""
    monkeypatch.setattr(vg.nn, "_dtype_warned", set())


def test_float32_data_into_a_float64_model_warns_once(dtype_warnings):
    mlp = vg.MLP(2, 3)
    x = vg.TensorNode(np.ones((4, 2), dtype=np.float32))
    with pytest.warns(vg.DTypeWarning) as caught:
        mlp(x)
    message = str(caught[0].message)
    for fact in ("Linear", "float32", "float64", "x.astype(np.float64)", "model.to(np.float32)"):
        assert fact in message
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", vg.DTypeWarning)
        mlp(x)  # once per process


def test_integer_pixels_into_conv2d_warn_with_the_cast(dtype_warnings):
    with pytest.warns(vg.DTypeWarning) as caught:
        vg.Conv2d(1, 2, 3)(vg.TensorNode(np.zeros((1, 1, 5, 5), dtype=np.uint8)))
    message = str(caught[0].message)
    for fact in ("Conv2d", "uint8", "float64", "x.astype(np.float64) / 255"):
        assert fact in message


def test_raw_pixels_into_linear_warn_once_with_the_cast(dtype_warnings):
    # The course script feeds raw uint8 MNIST pixels to its MLP: it runs, and says once how to scale them
    x = vg.TensorNode(np.full((2, 4), 255, dtype=np.uint8))
    with pytest.warns(vg.DTypeWarning) as caught:
        vg.MLP(4, 3)(x)
    assert len(caught) == 1
    message = str(caught[0].message)
    for fact in ("Linear", "uint8", "float64", "x.astype(np.float64) / 255"):
        assert fact in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", vg.DTypeWarning)
        vg.MLP(4, 3)(x)  # once per process
        vg.MLP(4, 3)(node(2, 4))  # float64 into float64: nothing to say


# ---------------------------------------------------------------- nonsensical sizes of Linear

@pytest.mark.parametrize("make,error,message", [
    (lambda: vg.Linear(0, 0), ValueError, "Linear: input_size must be at least 1, got 0"),
    (lambda: vg.Linear(-1, 3), ValueError, "Linear: input_size must be at least 1, got -1"),
    (lambda: vg.Linear(3, 0), ValueError, "Linear: output_size must be at least 1, got 0"),
    (lambda: vg.Linear(2.5, 3), TypeError, "Linear: input_size must be an int, got 2.5"),
])
def test_nonsensical_linear_sizes_name_linear_and_the_value(make, error, message):
    # Today: a bare ZeroDivisionError, and NumPy's "negative dimensions are not allowed"
    with pytest.raises(error) as err:
        make()
    assert str(err.value) == message


# ---------------------------------------------------------------- a module's own code failing on an array

class CourseLinear(vg.Module):
    """vugrad's Linear reads the input's size as input.size(): for an ndarray, an int."""

    def __init__(self):
        super().__init__()
        self.w = vg.TensorNode(np.ones((3, 2)))

    def forward(self, input):
        n, f = input.size()
        return input


class CourseMLP(vg.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = CourseLinear()

    def forward(self, x):
        return self.layer1(x)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes exist from Python 3.11 on")
def test_a_course_module_failing_on_an_array_gets_a_note_saying_wrap_it():
    # The course's own Linear fails with "'int' object is not callable": the error stays, with a note naming
    # the module the student called and the fix
    with pytest.raises(TypeError, match="'int' object is not callable") as err:
        CourseMLP()(np.ones((4, 2)))
    assert err.value.__notes__ == ["CourseMLP was given a numpy.ndarray, not a TensorNode: if it computes with "
                                   "TensorNodes, wrap it: model(vg.TensorNode(x))"]

    class ReadsValue(vg.Module):
        def forward(self, x):
            return x.value

    with pytest.raises(AttributeError, match="'list' object has no attribute 'value'") as err:
        ReadsValue()([1.0])
    assert err.value.__notes__[0].startswith("ReadsValue was given a list, not a TensorNode")
    # given nodes, a module's own error has no note
    with pytest.raises(TypeError, match="has no len") as err:
        TypeErrorOfItsOwn()(node(4, 2))
    assert not hasattr(err.value, "__notes__")


class TypeErrorOfItsOwn(vg.Module):
    def forward(self, x):
        return len(5)
