"""Graphs at scale and the edge cases of backward(): 100,000-deep chains, 10,000-wide fan-in, linear work.

"Linear time" is shown by counting operations, never by timing: sys.setprofile counts every Python and C
function call that backward(), zero_grad() and clear() make, and doubling the graph must at most double
the count. Op backward calls are counted the same way (calls of a function named `backward` in
vgrad/ops.py). The counts can only see inside core.py when it runs as Python (compiled by Cython, its calls
are invisible to a profiler), so the linearity tests run in the pure-Python pass of the graph tests
(tests/test_graph_engine.py runs this file with VGRAD_PURE_PYTHON=1) and skip in the compiled one.
"""
import sys

import numpy as np
import pytest

import vgrad as vg
import vgrad.core as core
import vgrad.ops as vops

DEEP = 100_000
WIDE = 10_000


class CallCounter:
    """Counts the calls made while active: all of them, and the op backward calls by op class name."""

    def __init__(self):
        self.calls = 0
        self.op_backward = {}

    def __call__(self, frame, event, arg):
        if event in ("call", "c_call"):
            self.calls += 1
            code = frame.f_code
            if event == "call" and code.co_name == "backward" and code.co_filename == vops.__file__:
                owner = frame.f_code.co_qualname.split(".")[0]
                self.op_backward[owner] = self.op_backward.get(owner, 0) + 1

    def run(self, fn):
        sys.setprofile(self)
        try:
            fn()
        finally:
            sys.setprofile(None)
        return self


def chain(n):
    """x -> Id -> Id -> ... (n ops) -> Sum: returns (x, loss)."""
    x = vg.TensorNode(np.arange(3.0))
    y = x
    for _ in range(n):
        y = vg.Id.do_forward(y)
    return x, vg.Sum.do_forward(y)


def fan_in(n, rng):
    """x used by n Multiply ops with constants c_i, their results added up in a chain, then summed."""
    x = vg.TensorNode(rng.standard_normal(3))
    consts = [vg.TensorNode(rng.standard_normal(3)) for _ in range(n)]
    total = vg.Multiply.do_forward(x, consts[0])
    for c in consts[1:]:
        total = vg.Add.do_forward(total, vg.Multiply.do_forward(x, c))
    return x, consts, vg.Sum.do_forward(total)


@pytest.fixture
def engine():
    """The engine running (core.py compiled, or core.py as Python): every graph test runs under both."""
    return "compiled" if core.COMPILED else "python"


@pytest.fixture
def python_engine():
    if core.COMPILED:
        pytest.skip("counts calls inside core.py: runs in the pure-Python pass (VGRAD_PURE_PYTHON=1)")


def test_100000_deep_chain_backward_zero_grad_clear(engine):
    x, loss = chain(DEEP)
    counted = CallCounter().run(loss.backward)
    assert counted.op_backward == {"Id": DEEP, "Sum": 1}, "each op's backward runs exactly once"
    np.testing.assert_array_equal(x.grad, np.ones(3))
    mid = loss.source.inputs[0]
    loss.zero_grad()
    assert not x.grad.any() and not mid.grad.any()
    loss.clear()
    assert loss.source is None and mid.source is None and x.numparents == 0


def test_10000_wide_fan_in_backward_zero_grad_clear(engine, rng):
    x, consts, loss = fan_in(WIDE, rng)
    assert x.numparents == WIDE
    counted = CallCounter().run(loss.backward)
    assert counted.op_backward == {"Multiply": WIDE, "Add": WIDE - 1, "Sum": 1}
    want = np.sum([c.value for c in consts], axis=0)  # d/dx sum_i sum(x * c_i) = sum_i c_i
    np.testing.assert_allclose(x.grad, want, rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(consts[7].grad, x.value)
    loss.zero_grad()
    assert not x.grad.any() and not any(c.grad.any() for c in consts)
    loss.clear()
    assert x.numparents == 0 and all(c.numparents == 0 for c in consts) and loss.source is None


def _work(make, n, step):
    """The number of calls `step` makes on a fresh graph of size n (after the steps before it)."""
    _, loss = make(n)
    counts = {}
    for name in ("backward", "zero_grad", "clear"):
        counts[name] = CallCounter().run(getattr(loss, name)).calls
        if name == step:
            return counts[name]


@pytest.mark.parametrize("step", ["backward", "zero_grad", "clear"])
@pytest.mark.parametrize("shape", ["chain", "fan-in"])
def test_work_is_linear_in_graph_size(shape, step, python_engine):
    rng = np.random.default_rng(0)
    make = chain if shape == "chain" else (lambda n: fan_in(n, rng)[::2])
    n = 5_000
    small, large = _work(make, n, step), _work(make, 2 * n, step)
    # linear: calls = a n + b, so doubling n at most doubles the count (quadratic work would quadruple it)
    assert large <= 2 * small + 50, f"{step} on a {shape}: {small} calls for {n} ops, {large} for {2 * n}"
    assert large >= 1.5 * small, "the count does grow with the graph (the counter works)"


# ------------------------------------------------------------------------------------------------
# backward() edge cases, as documented in vgrad/core.py
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (2, 3), (0,), (1, 2)])
def test_backward_from_non_scalar_node_raises_value_error(shape):
    node = vg.Id.do_forward(vg.TensorNode(np.ones(shape)))
    with pytest.raises(ValueError, match=r"single number"):
        node.backward()


def small_graph(rng):
    x = vg.TensorNode(rng.standard_normal(4))
    y = vg.Sigmoid.do_forward(x)
    return x, y, vg.Sum.do_forward(vg.Exp.do_forward(y))


def test_backward_twice_accumulates_at_a_leaf_directly_below(rng):
    """loss = Sum(x): the second backward adds the gradient once more."""
    x = vg.TensorNode(rng.standard_normal(4))
    loss = vg.Sum.do_forward(x)
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(x.grad, 2 * np.ones(4))


def test_backward_twice_adds_the_gradients_twice(engine, rng):
    """Leaves accumulate across backward() calls; intermediate gradients are recomputed each time."""
    x, y, loss = small_graph(rng)
    loss.backward()
    once = x.grad.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * once, rtol=1e-12)


def test_backward_zero_grad_backward_gives_the_same_gradients(engine, rng):
    x, y, loss = small_graph(rng)
    loss.backward()
    once = x.grad.copy()
    loss.zero_grad()
    loss.backward()
    np.testing.assert_array_equal(x.grad, once)
    s = 1 / (1 + np.exp(-x.value))
    np.testing.assert_allclose(once, np.exp(s) * s * (1 - s), rtol=1e-12)


def test_backward_after_clear_leaves_the_gradients_alone(engine, rng):
    """After clear() the loss has no graph below it: backward() sets its own gradient and nothing else
    (vugrad does the same; core.py does not say it in words)."""
    x, y, loss = small_graph(rng)
    loss.backward()
    grads = x.grad.copy(), y.grad.copy()
    loss.clear()
    loss.backward()
    assert loss.source is None and float(loss.grad) == 1.0
    np.testing.assert_array_equal(x.grad, grads[0])
    np.testing.assert_array_equal(y.grad, grads[1])
    loss.zero_grad()  # only the loss itself is left below it
    assert float(loss.grad) == 0.0 and x.grad.any()


def test_clear_twice_and_zero_grad_on_a_leaf_are_harmless(rng):
    x, y, loss = small_graph(rng)
    loss.clear()
    loss.clear()
    x.zero_grad()
    x.clear()
    assert x.source is None and not x.grad.any()
