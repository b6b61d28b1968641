"""The public contract of vgrad: names, the functions and modules built on the ops, same-seed-same-numbers,
and errors that are exceptions (never assertions, so they hold under `python -O`)."""
import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vgrad as vg
from op_table import graph_grads

OP_NAMES = ["Add", "Sub", "Multiply", "Div", "MatrixMultiply", "BatchMM", "Log", "Exp", "Sigmoid", "ReLU", "Id",
            "Sum", "RowSum", "RowMax", "Normalize", "Expand", "Select", "Squeeze", "Unsqueeze"]
FUNCTION_NAMES = ["celoss", "logceloss", "sigmoid", "relu", "softmax", "logsoftmax", "load_synth", "load_mnist"]


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_logsoftmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["TensorNode", "OpNode", "Op", "Module", "Linear", "MLP"] + OP_NAMES + FUNCTION_NAMES)
def test_name_exported(name):
    assert hasattr(vg, name), f"vgrad.{name} missing"
    assert callable(getattr(vg, name))


@pytest.mark.parametrize("sub", ["core", "ops", "functions", "modules"])
def test_submodules(sub):
    mod = importlib.import_module(f"vgrad.{sub}")
    assert getattr(vg, sub) is mod


def test_names_live_in_their_submodules():
    import vgrad.core, vgrad.functions, vgrad.modules, vgrad.ops  # noqa: E401

    for name in ["TensorNode", "OpNode", "Op", "Module"]:
        assert getattr(vgrad.core, name) is getattr(vg, name)
    for name in OP_NAMES:
        assert getattr(vgrad.ops, name) is getattr(vg, name)
    for name in ["celoss", "logceloss", "sigmoid", "relu", "softmax", "logsoftmax"]:
        assert getattr(vgrad.functions, name) is getattr(vg, name)
    for name in ["Linear", "MLP"]:
        assert getattr(vgrad.modules, name) is getattr(vg, name)
        assert issubclass(getattr(vg, name), vg.Module)


# ------------------------------------------------------------------------------------------------
# TensorNode basics
# ------------------------------------------------------------------------------------------------


def test_tensornode_holds_the_callers_array():
    v = np.arange(6.0).reshape(2, 3)
    n = vg.TensorNode(v, name="v")
    assert n.value is v
    assert n.name == "v" and n.source is None and n.numparents == 0 and n.visits == 0 and n.debug is False
    assert n.grad.shape == (2, 3) and n.grad.dtype == np.float64 and not n.grad.any()
    assert n.size() == (2, 3) and n.size(0) == 2 and n.size(1) == 3


def test_tensornode_from_list():
    n = vg.TensorNode([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(n.value, np.ndarray) and n.value.shape == (2, 2)


def test_float32_value_not_cast():
    v = np.ones((2, 2), dtype=np.float32)
    n = vg.TensorNode(v)
    assert n.value is v and n.grad.dtype == np.float32


def test_opnode_links(rng):
    a, b = vg.TensorNode(rng.standard_normal(3)), vg.TensorNode(rng.standard_normal(3))
    c = a * b
    assert isinstance(c.source, vg.OpNode)
    assert c.source.op is vg.Multiply
    assert list(c.source.inputs) == [a, b]
    assert list(c.source.outputs) == [c]
    assert c.source.context["a"] is a.value or np.array_equal(c.source.context["a"], a.value)


def test_operators(rng):
    av, bv = rng.standard_normal((2, 3)), rng.uniform(0.5, 2, (2, 3))
    a, b = vg.TensorNode(av), vg.TensorNode(bv)
    cases = [(a + b, vg.Add, av + bv), (a - b, vg.Sub, av - bv), (a * b, vg.Multiply, av * bv),
             (a / b, vg.Div, av / bv), (a.matmul(vg.TensorNode(bv.T)), vg.MatrixMultiply, av @ bv.T)]
    for node, op, want in cases:
        assert node.source.op is op
        np.testing.assert_allclose(node.value, want, rtol=1e-14)


@pytest.mark.parametrize("shape", [(), (2, 3)])
@pytest.mark.parametrize("number", [2.5, 3, -1.0])
def test_operators_with_python_numbers(number, shape, rng):
    v = rng.uniform(0.5, 2.0, shape)
    a = vg.TensorNode(v)
    R = rng.standard_normal(shape)
    for fn, want, grad in [(lambda n: n + number, v + number, np.ones(shape)),
                           (lambda n: n - number, v - number, np.ones(shape)),
                           (lambda n: n * number, v * number, np.full(shape, float(number))),
                           (lambda n: n / number, v / number, np.full(shape, 1.0 / number))]:
        out, (g,) = graph_grads(fn, [v], R)
        np.testing.assert_allclose(out, want, rtol=1e-15)
        np.testing.assert_allclose(g, grad * R, rtol=1e-15)
    assert (a * number).source.op is vg.Multiply


def test_backward_twice_on_leaf_sum_accumulates(rng):
    x = vg.TensorNode(rng.standard_normal(3))
    loss = vg.Sum.do_forward(x)
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 2.0))


# ------------------------------------------------------------------------------------------------
# Functions
# ------------------------------------------------------------------------------------------------


def test_softmax_rows_sum_to_one_and_match_numpy(rng):
    x = rng.standard_normal((6, 5)) * 3
    s = vg.softmax(vg.TensorNode(x)).value
    np.testing.assert_allclose(s.sum(axis=1), np.ones(6), rtol=1e-12)
    np.testing.assert_allclose(s, np_softmax(x), rtol=1e-12)


def test_logsoftmax_like_vugrad_tests(rng):
    x = np.asarray([[0.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    s = np.exp(vg.logsoftmax(vg.TensorNode(x)).value).sum(axis=1)
    np.testing.assert_allclose(s, 1.0, rtol=1e-12)
    x = rng.standard_normal((4, 5))
    np.testing.assert_allclose(np.exp(vg.logsoftmax(vg.TensorNode(x)).value), vg.softmax(vg.TensorNode(x)).value,
                               rtol=1e-12)


def test_logsoftmax_is_stable_for_large_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [500.0, 501.0, 499.0]])
    out = vg.logsoftmax(vg.TensorNode(x)).value
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, np_logsoftmax(x), rtol=1e-12, atol=1e-12)


def test_celoss_and_logceloss_match_numpy(rng):
    x = rng.standard_normal((7, 4))
    t = rng.integers(0, 4, size=7)
    want = -np_logsoftmax(x)[np.arange(7), t].sum()
    ce = vg.celoss(vg.softmax(vg.TensorNode(x)), t)
    lce = vg.logceloss(vg.logsoftmax(vg.TensorNode(x)), t)
    assert ce.value.shape == () and lce.value.shape == ()
    assert float(ce.value) == pytest.approx(want, rel=1e-12)
    assert float(lce.value) == pytest.approx(want, rel=1e-12)


def test_sigmoid_and_relu_functions(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(vg.sigmoid(vg.TensorNode(x)).value, 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_array_equal(vg.relu(vg.TensorNode(x)).value, np.maximum(x, 0))
    assert vg.sigmoid(vg.TensorNode(x)).source.op is vg.Sigmoid
    assert vg.relu(vg.TensorNode(x)).source.op is vg.ReLU


# ------------------------------------------------------------------------------------------------
# Modules and same-seed-same-numbers
# ------------------------------------------------------------------------------------------------


def glorot(n_in, n_out):
    return np.random.randn(n_out, n_in) * np.sqrt(2.0 / (n_in + n_out))


@pytest.mark.parametrize("n_in,n_out", [(2, 8), (784, 10), (1, 1)])
def test_linear_init_draws_like_vugrad(n_in, n_out, np_random_state):
    np.random.seed(1234)
    lin = vg.Linear(n_in, n_out)
    after = np.random.randn()
    np.random.seed(1234)
    want = glorot(n_in, n_out)
    assert np.random.randn() == after, "Linear drew a different amount of random numbers"
    w, b = lin.parameters()
    np.testing.assert_array_equal(w.value, want)
    assert w.value.dtype == np.float64
    np.testing.assert_array_equal(b.value, np.zeros((1, n_out)))


def test_linear_forward_matches_numpy(rng):
    lin = vg.Linear(3, 2)
    w, b = lin.parameters()
    b.value[...] = rng.standard_normal(b.value.shape)
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(lin(vg.TensorNode(x)).value, x @ w.value.T + b.value, rtol=1e-12)


def test_mlp_init_draws_layer1_then_layer2(np_random_state):
    np.random.seed(7)
    mlp = vg.MLP(input_size=3, output_size=2, hidden_mult=4)
    np.random.seed(7)
    w1, w2 = glorot(3, 12), glorot(12, 2)
    p = mlp.parameters()
    assert [q.value.shape for q in p] == [(12, 3), (1, 12), (2, 12), (1, 2)]
    np.testing.assert_array_equal(p[0].value, w1)
    np.testing.assert_array_equal(p[2].value, w2)


def test_load_synth_draws_like_vugrad(np_random_state):
    np.random.seed(3)
    (xt, yt), (xv, yv), n_classes = vg.load_synth(num_train=50, num_val=20)
    np.random.seed(3)
    x = np.random.randn(70, 2)
    q = np.einsum("bf, fk, bk -> b", x, np.asarray([[1, 0.5], [1, 0.2]]), x)
    y = (q > 0.6).astype(int)
    assert n_classes == 2
    np.testing.assert_array_equal(xt, x[:50])
    np.testing.assert_array_equal(xv, x[50:])
    np.testing.assert_array_equal(yt, y[:50])
    np.testing.assert_array_equal(yv, y[50:])


# ------------------------------------------------------------------------------------------------
# Errors: exceptions, not assertions
# ------------------------------------------------------------------------------------------------


def test_linear_rejects_wrong_feature_count():
    lin = vg.Linear(3, 2)
    with pytest.raises(ValueError):
        lin(vg.TensorNode(np.ones((4, 5))))


def test_graph_shape_error_is_value_error():
    with pytest.raises(ValueError, match="Add"):
        vg.TensorNode(np.ones((2, 3))) + vg.TensorNode(np.ones((3, 2)))


def test_errors_hold_under_python_O():
    code = textwrap.dedent("""
        import numpy as np, vgrad as vg
        assert False, "asserts are on"  # removed by -O: reaching the next line proves -O
        cases = [
            ("Add", ValueError, lambda: vg.TensorNode(np.ones((2, 3))) + vg.TensorNode(np.ones((3, 2)))),
            ("Add", ValueError, lambda: vg.Add.forward({}, np.ones((2, 3)), np.ones((3, 2)))),
            ("Select", IndexError, lambda: vg.Select.forward({}, np.ones((2, 3)), indices=np.array([0, 3]))),
            ("Linear", ValueError, lambda: vg.Linear(3, 2)(vg.TensorNode(np.ones((4, 5))))),
            ("backward", ValueError, lambda: vg.Id.do_forward(vg.TensorNode(np.ones(3))).backward()),
        ]
        for name, exc, fn in cases:
            try:
                fn()
            except exc as e:
                print("OK", name, type(e).__name__, str(e).replace("\\n", " "))
            else:
                print("NO-ERROR", name)
    """)
    res = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("OK") for line in lines), res.stdout
    assert "Add" in lines[0].split(" ", 3)[3] and "(2, 3)" in lines[0]
    assert "Select" in lines[2].split(" ", 3)[3]


def _subnormal_gradient(rng, shape):
    g = rng.standard_normal(shape).astype(np.float32)
    g[rng.random(shape) < 0.1] = np.float32(-3e-40)  # as saturated sigmoids leave in a float32 MLP's gradient
    return g


def test_float32_products_count_subnormal_operands_as_zeros(rng):
    """float32 matrix products (MatrixMultiply, BatchMM, Affine, the convolution's BLAS path) flush subnormal
    operands to zero, as a CPU's flush-to-zero mode would: OpenBLAS's float32 product runs 10-50x slower on them.
    The result is the product of the flushed operands: within float32's rounding of the exact product."""
    go, x = _subnormal_gradient(rng, (64, 300)), rng.random((64, 50)).astype(np.float32) * 255
    exact = go.T.astype(np.float64) @ x.astype(np.float64)
    bound = 2 * 64 * np.finfo(np.float32).eps * (np.abs(go.T.astype(np.float64)) @ x)
    for got in (vg.MatrixMultiply.forward({}, go.T, x),  # and a Linear layer's weight gradient, go^T x:
                vg.BatchMM.backward({"matrix": np.ones((300, 50), np.float32), "vectors": x}, go)[0]):
        assert got.dtype == np.float32
        assert (np.abs(got - exact) <= bound).all()
    tiny = np.zeros((4, 64), np.float32) + np.float32(1e-40)  # every term subnormal: the product is 0
    assert not vg.MatrixMultiply.forward({}, tiny, x).any()
    np.testing.assert_array_less(0, tiny.astype(np.float64) @ x[:, :1] + 1)  # (exactly: about 1e-36, not 0)


def test_float32_subnormals_meet_inf_as_numpy(rng):
    """Where the other operand holds an inf or NaN, subnormals are kept: subnormal * inf is inf, not 0 * inf = NaN."""
    a = np.array([[3e-40, 1.0]], np.float32)
    b = np.array([[np.inf], [1.0]], np.float32)
    np.testing.assert_array_equal(vg.MatrixMultiply.forward({}, a, b), a @ b)
    assert vg.MatrixMultiply.forward({}, a, b)[0, 0] == np.inf


def test_float64_subnormals_are_kept(rng):
    """float64 products stay NumPy's bit for bit, subnormals and all."""
    a = np.array([[3e-310, 1e-300]]), np.array([[1e-10], [1e-10]])
    np.testing.assert_array_equal(vg.MatrixMultiply.forward({}, *a), a[0] @ a[1])
    assert vg.MatrixMultiply.forward({}, *a)[0, 0] != 0
