"""The computation graph: TensorNode/OpNode bookkeeping, backward order, zero_grad/clear, deep graphs,
Python ops written by students next to the built-in C ops, and gradients of whole small networks."""
import gc
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

import vgrad as vg
from op_table import central_differences, graph_grads, weighted_loss

DEEP = 100_000


def node(*values):
    return vg.TensorNode(np.asarray(values, dtype=np.float64))


def all_nodes(root):
    """Every TensorNode reachable from root through .source/.inputs (iterative)."""
    seen, stack, out = set(), [root], []
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        if n.source is not None:
            stack.extend(n.source.inputs)
    return out


# ------------------------------------------------------------------------------------------------
# Python ops, as a student would write them
# ------------------------------------------------------------------------------------------------


class StudentReLU(vg.Op):
    """ReLU in plain NumPy with static forward/backward, as in the course exercises."""

    @staticmethod
    def forward(context, x):
        context["x"] = x
        return np.maximum(x, 0.0)

    @staticmethod
    def backward(context, go):
        return go * (context["x"] > 0)


class Recorder(vg.Op):
    """Identity op that records each backward call: its label and the goutput array it was handed."""

    calls = []

    @staticmethod
    def forward(context, x, *, label=None):
        context["label"] = label
        return x.copy()

    @staticmethod
    def backward(context, go):
        Recorder.calls.append((context["label"], go))
        return go


@pytest.fixture
def recorder():
    Recorder.calls = []
    yield Recorder
    Recorder.calls = []


# ------------------------------------------------------------------------------------------------
# vugrad's graph tests
# ------------------------------------------------------------------------------------------------


def test_diamond():
    a = node(1.0)
    b = vg.Id.do_forward(a)
    c1, c2 = vg.Id.do_forward(b), vg.Id.do_forward(b)
    d = c1 + c2
    d.backward()
    assert float(a.grad[0]) == 2.0


def test_double_diamond():
    a0 = node(1.0)
    a = vg.Id.do_forward(a0)
    b1, b2 = vg.Id.do_forward(a), vg.Id.do_forward(a)
    c1, c2, c3, c4 = (vg.Id.do_forward(b) for b in (b1, b1, b2, b2))
    e = (c1 + c2) + (c3 + c4)
    e.backward()
    assert float(a.grad[0]) == 4.0
    assert float(a0.grad[0]) == 4.0


def test_sequential_diamond():
    a = node(1.0)
    b = vg.Id.do_forward(a)
    c1, c2 = vg.Id.do_forward(b), vg.Id.do_forward(b)
    d = c1 + c2
    e = vg.Id.do_forward(d)
    f = e + a
    g1, g2 = vg.Id.do_forward(f), vg.Id.do_forward(f)
    h = g1 + g2
    h.backward()
    assert [float(n.grad[0]) for n in (f, e, c1, b, a)] == [2.0, 2.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize("op", [vg.Multiply, vg.Add, vg.Sub, vg.MatrixMultiply])
def test_input_used_twice_by_one_op(op, rng):
    x = rng.standard_normal((3, 3))
    R = rng.standard_normal((3, 3))
    _, (g,) = graph_grads(lambda n: op.do_forward(n, n), [x], R)
    expected = {
        vg.Multiply: 2 * x * R,
        vg.Add: 2 * R,
        vg.Sub: np.zeros_like(x),
        vg.MatrixMultiply: R @ x.T + x.T @ R,
    }[op]
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-14)


def test_numparents_counts_uses():
    a = node(1.0, 2.0)
    b = vg.Id.do_forward(a)
    vg.Multiply.do_forward(a, b)
    vg.Add.do_forward(a, a)
    assert a.numparents == 4 and b.numparents == 1 and a.visits == 0


def test_backward_runs_ops_in_vugrads_order(recorder):
    """vugrad goes depth first, descending into a node as soon as all its parents have been visited."""
    a = node(1.0)
    b1 = recorder.do_forward(a, label="b1")
    b2 = recorder.do_forward(a, label="b2")
    c = recorder.do_forward(b1, label="c")
    d = recorder.do_forward(c + b2, label="d")
    d.backward()
    assert [label for label, _ in recorder.calls] == ["d", "c", "b1", "b2"]
    assert float(a.grad[0]) == 2.0


# ------------------------------------------------------------------------------------------------
# Python ops inside graphs of built-in ops
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_student_relu_matches_builtin_relu(dtype, rng):
    x = rng.standard_normal((5, 3)).astype(dtype)
    w = rng.standard_normal((3, 4)).astype(dtype)
    R = rng.standard_normal((5, 4)).astype(dtype)

    def net(relu):
        return lambda xn, wn: vg.Sigmoid.do_forward(relu.do_forward(vg.MatrixMultiply.do_forward(xn, wn)))

    out_s, grads_s = graph_grads(net(StudentReLU), [x, w], R)
    out_b, grads_b = graph_grads(net(vg.ReLU), [x, w], R)
    np.testing.assert_allclose(out_s, out_b, rtol=1e-6)
    for gs, gb in zip(grads_s, grads_b):
        assert gs.dtype == gb.dtype == dtype
        np.testing.assert_allclose(gs, gb, rtol=1e-5, atol=1e-7)
    # and against an independent NumPy formula
    h = x.astype(np.float64) @ w
    s = 1 / (1 + np.exp(-np.maximum(h, 0)))
    dh = R * s * (1 - s) * (h > 0)
    np.testing.assert_allclose(grads_b[0], dh @ w.T, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads_b[1], x.T @ dh, rtol=1e-4, atol=1e-6)


def test_goutput_handed_to_python_op_is_the_output_nodes_grad(recorder, rng):
    x = vg.TensorNode(rng.standard_normal((2, 3)))
    out = recorder.do_forward(x, label="probe")
    loss = weighted_loss(out, rng.standard_normal((2, 3)))
    loss.backward()
    (label, go), = recorder.calls
    assert go is out.grad


class Split(vg.Op):
    """A Python op with two outputs: (2x, 3x)."""

    @staticmethod
    def forward(context, x):
        return 2 * x, 3 * x

    @staticmethod
    def backward(context, g2, g3):
        return 2 * g2 + 3 * g3


def test_python_op_with_two_outputs(rng):
    x = vg.TensorNode(rng.standard_normal(4))
    a, b = Split.do_forward(x)
    (vg.Sum.do_forward(a) + vg.Sum.do_forward(b)).backward()
    np.testing.assert_allclose(x.grad, np.full(4, 5.0))


def test_python_op_with_two_outputs_only_one_used(rng):
    x = vg.TensorNode(rng.standard_normal(4))
    a, b = Split.do_forward(x)
    vg.Sum.do_forward(b).backward()
    np.testing.assert_allclose(x.grad, np.full(4, 3.0))


class WrongShape(vg.Op):
    @staticmethod
    def forward(context, x):
        return x.copy()

    @staticmethod
    def backward(context, go):
        return go[:-1]


class TooMany(vg.Op):
    @staticmethod
    def forward(context, x):
        return x.copy()

    @staticmethod
    def backward(context, go):
        return go, go


@pytest.mark.parametrize("op", [WrongShape, TooMany])
def test_python_op_returning_bad_gradients_raises_value_error(op):
    loss = vg.Sum.do_forward(op.do_forward(vg.TensorNode(np.ones(3))))
    with pytest.raises(ValueError, match=op.__name__):
        loss.backward()


# ------------------------------------------------------------------------------------------------
# zero_grad, clear, memory
# ------------------------------------------------------------------------------------------------


def build_loss(x, w):
    h = vg.Sigmoid.do_forward(vg.MatrixMultiply.do_forward(x, w))
    return vg.Sum.do_forward(h * h)


def small_graph(rng):
    x = vg.TensorNode(rng.standard_normal((4, 3)), name="x")
    w = vg.TensorNode(rng.standard_normal((3, 2)), name="w")
    return x, w, build_loss(x, w)


def test_zero_grad_zeroes_every_grad(rng):
    x, w, loss = small_graph(rng)
    loss.backward()
    nodes = all_nodes(loss)
    assert len(nodes) == 6
    assert np.abs(w.grad).sum() > 0
    loss.zero_grad()
    for n in nodes:
        assert n.grad.shape == n.value.shape
        assert not n.grad.any(), n.name


def test_zero_grad_clear_then_new_graph_gives_same_grads(rng):
    x, w, loss = small_graph(rng)
    loss.backward()
    first = w.grad.copy()
    s = 1 / (1 + np.exp(-(x.value @ w.value)))
    np.testing.assert_allclose(first, x.value.T @ (2 * s * s * (1 - s)), rtol=1e-12)
    loss.zero_grad()
    loss.clear()
    build_loss(x, w).backward()
    np.testing.assert_allclose(w.grad, first, rtol=1e-12)


def test_backward_zero_grad_backward_on_same_graph(rng):
    """Without clear(), zero_grad() then backward() again gives the first gradients again."""
    x, w, loss = small_graph(rng)
    loss.backward()
    first = [x.grad.copy(), w.grad.copy()]
    loss.zero_grad()
    loss.backward()
    np.testing.assert_allclose(x.grad, first[0], rtol=1e-12)
    np.testing.assert_allclose(w.grad, first[1], rtol=1e-12)


def test_clear_disconnects_and_keeps_grads(rng):
    x, w, loss = small_graph(rng)
    loss.backward()
    nodes = all_nodes(loss)
    grads = {id(n): n.grad.copy() for n in nodes}
    loss.clear()
    for n in nodes:
        assert n.source is None
        assert n.numparents == 0 and n.visits == 0
        np.testing.assert_array_equal(n.grad, grads[id(n)])


def test_graph_is_freed_after_clear_and_del(rng):
    """clear() breaks the node <-> opnode cycles, so reference counting alone frees the graph."""
    x, w, loss = small_graph(rng)
    loss.backward()
    mid = loss.source.inputs[0]
    refs = [weakref.ref(mid), weakref.ref(mid.source), weakref.ref(loss), weakref.ref(loss.source)]
    del mid
    gc.disable()
    try:
        loss.clear()
        del loss
        assert [r() is None for r in refs] == [True] * len(refs)
    finally:
        gc.enable()
    assert x.source is None and w.grad.any()


# ------------------------------------------------------------------------------------------------
# Deep graphs: iterative backward/zero_grad/clear
# ------------------------------------------------------------------------------------------------


def test_deep_chain_of_python_ops_visits_each_node_once(recorder):
    x = node(0.5)
    y = x
    for _ in range(DEEP):
        y = recorder.do_forward(y)
    y.backward()
    assert len(recorder.calls) == DEEP
    assert float(x.grad[0]) == 1.0
    y.zero_grad()
    assert float(x.grad[0]) == 0.0 and float(y.grad[0]) == 0.0
    y.clear()
    assert y.source is None and x.numparents == 0


def test_deep_chain_of_builtin_sigmoid():
    x = vg.TensorNode(np.array(0.3))
    y = x
    for _ in range(DEEP):
        y = vg.Sigmoid.do_forward(y)
    mid = y.source.inputs[0]
    y.backward()
    # NumPy: s_{k+1} = sigmoid(s_k); dy/dx is the product of s_k (1 - s_k) over the chain
    s, d = 0.3, 1.0
    for _ in range(DEEP):
        s = 1 / (1 + np.exp(-s))
        d *= s * (1 - s)
    assert float(y.value) == pytest.approx(s, rel=1e-12)
    assert float(x.grad) == pytest.approx(d, abs=1e-300)
    assert float(mid.grad) == pytest.approx(s * (1 - s), rel=1e-12)
    y.zero_grad()
    assert float(mid.grad) == 0.0
    y.clear()
    assert mid.source is None and y.source is None


def test_deep_chain_without_clear_is_freed_without_crash():
    code = textwrap.dedent(f"""
        import numpy as np, vgrad as vg
        x = vg.TensorNode(np.ones(2))
        y = x
        for _ in range({DEEP}):
            y = vg.Id.do_forward(y)
        del y
        print("freed")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "freed" in res.stdout


# ------------------------------------------------------------------------------------------------
# Node facts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3,), (2, 2), (1, 2)])
def test_backward_from_non_scalar_raises_value_error(shape):
    x = vg.TensorNode(np.ones(shape))
    with pytest.raises(ValueError):
        vg.Id.do_forward(x).backward()


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_backward_from_single_element_node(shape, rng):
    v = rng.standard_normal(shape)
    x = vg.TensorNode(v)
    vg.Sigmoid.do_forward(x).backward()
    s = 1 / (1 + np.exp(-v))
    np.testing.assert_allclose(x.grad, s * (1 - s), rtol=1e-12)


@pytest.mark.parametrize(
    "dtype,grad_dtype",
    [(np.float32, np.float32), (np.float64, np.float64), (np.uint8, np.float64), (np.int64, np.float64),
     (np.bool_, np.float64)],
)
def test_grad_dtype_follows_value(dtype, grad_dtype, rng):
    x = vg.TensorNode((rng.random((3, 4)) * 3).astype(dtype))
    w = vg.TensorNode(rng.standard_normal((4, 2)).astype(dtype if dtype == np.float32 else np.float64))
    assert x.grad.dtype == grad_dtype and x.grad.shape == (3, 4) and not x.grad.any()
    loss = vg.Sum.do_forward(vg.Sigmoid.do_forward(vg.MatrixMultiply.do_forward(x, w)))
    loss.backward()
    assert x.grad.dtype == grad_dtype
    if dtype == np.float32:
        for n in all_nodes(loss):
            assert n.value.dtype == np.float32 and n.grad.dtype == np.float32
    s = 1 / (1 + np.exp(-(x.value.astype(np.float64) @ w.value.astype(np.float64))))
    np.testing.assert_allclose(x.grad, (s * (1 - s)) @ w.value.T.astype(np.float64), rtol=1e-5)


def test_float32_leaf_in_float64_graph_keeps_float32_grad(rng):
    x = vg.TensorNode(rng.standard_normal((3, 4)).astype(np.float32))
    w = vg.TensorNode(rng.standard_normal((4, 2)))
    out = vg.MatrixMultiply.do_forward(x, w)
    assert out.value.dtype == np.float64
    vg.Sum.do_forward(out).backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, np.tile(w.value.sum(axis=1), (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(w.grad, np.tile(x.value.astype(np.float64).sum(axis=0)[:, None], (1, 2)), rtol=1e-6)


class _FortranGradient(vg.Op):
    """A Python op (it does not promise new arrays) whose backward returns a Fortran-ordered gradient."""

    @staticmethod
    def forward(context, x):
        return x * 1.0

    @staticmethod
    def backward(context, go):
        return np.asfortranarray(go * 2.0)


def test_copied_gradients_are_c_ordered_as_vugrads(rng):
    """A gradient the graph cannot keep is copied in C order, whatever its own layout: in vugrad a gradient is
    np.zeros plus the contributions, so the ops below receive C-ordered gradients (and NumPy's sums in their
    backward follow C order). Both engines."""
    seen = []

    class Record(vg.Op):
        @staticmethod
        def forward(context, x):
            return x * 1.0

        @staticmethod
        def backward(context, go):
            seen.append(go.flags.c_contiguous)
            return go

    x = vg.TensorNode(rng.standard_normal((3, 4)))
    h = _FortranGradient.do_forward(Record.do_forward(x))
    vg.Sum.do_forward(vg.Multiply.do_forward(h, vg.TensorNode(rng.standard_normal((3, 4))))).backward()
    assert seen == [True]
    assert x.grad.flags.c_contiguous


def test_loss_value_formats_as_float(rng):
    logits = rng.standard_normal((4, 3))
    targets = np.array([0, 2, 1, 1])
    loss = vg.logceloss(vg.logsoftmax(vg.TensorNode(logits)), targets)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -logp[np.arange(4), targets].sum()
    assert float(loss.value) == pytest.approx(expected, rel=1e-12)
    assert f"{loss.value:.4}" == f"{expected:.4}"
    running = 0.0
    running += loss.value
    assert float(running) == pytest.approx(expected, rel=1e-12)


def test_nodes_hash_by_identity():
    a, b = vg.TensorNode(np.zeros(3)), vg.TensorNode(np.zeros(3))
    assert len({a, b}) == 2
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    assert a in {a} and b not in {a}
    a.value[0] = 5.0
    assert d[a] == "a"


@pytest.mark.parametrize("module", ["linear", "mlp"])
def test_parameters_are_the_same_nodes_each_call(module):
    m = vg.Linear(3, 2) if module == "linear" else vg.MLP(3, 2)
    p1, p2 = m.parameters(), m.parameters()
    assert len(p1) == (2 if module == "linear" else 4)
    assert all(isinstance(p, vg.TensorNode) for p in p1)
    assert all(a is b for a, b in zip(p1, p2))


def test_inplace_value_update_is_seen_by_next_forward(rng):
    lin = vg.Linear(3, 2)
    x = rng.standard_normal((4, 3))
    w = lin.parameters()[0]
    w.value -= 0.5 * np.ones_like(w.value)
    lin.parameters()[1].value += 1.0
    out = lin(vg.TensorNode(x))
    np.testing.assert_allclose(out.value, x @ w.value.T + 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# Whole networks
# ------------------------------------------------------------------------------------------------


def numpy_mlp(x, t, w1, b1, w2, b2):
    """Loss and gradients of Linear-sigmoid-Linear-logsoftmax-logceloss, by hand in NumPy."""
    s = 1 / (1 + np.exp(-(x @ w1.T + b1)))
    z = s @ w2.T + b2
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -logp[np.arange(n), t].sum()
    dz = np.exp(logp)
    dz[np.arange(n), t] -= 1
    dh = (dz @ w2) * s * (1 - s)
    return loss, [dh.T @ x, dh.sum(axis=0, keepdims=True), dz.T @ s, dz.sum(axis=0, keepdims=True)]


class TwoLayer(vg.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.l1, self.l2 = vg.Linear(i, h), vg.Linear(h, o)

    def forward(self, x):
        return vg.logsoftmax(self.l2(vg.sigmoid(self.l1(x))))

    def parameters(self):
        return self.l1.parameters() + self.l2.parameters()


def test_mlp_gradients_central_differences(rng):
    net = TwoLayer(3, 4, 3)
    x = rng.standard_normal((5, 3))
    t = np.array([0, 1, 2, 1, 0])
    params = net.parameters()
    for p in params:
        p.value[...] = rng.standard_normal(p.value.shape)

    loss = vg.logceloss(net(vg.TensorNode(x)), t)
    loss.backward()
    grads = [p.grad.copy() for p in params]
    loss.zero_grad()
    loss.clear()

    def f(*values):
        saved = [p.value for p in params]
        for p, v in zip(params, values):
            p.value = v
        try:
            out = vg.logceloss(net(vg.TensorNode(x)), t)
            value = float(out.value)
            out.clear()
            return value
        finally:
            for p, v in zip(params, saved):
                p.value = v

    fd = central_differences(f, [p.value for p in params])
    for g, want in zip(grads, fd):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7)
    assert float(loss.value) == pytest.approx(numpy_mlp(x, t, *[p.value for p in params])[0], rel=1e-12)


def every_op(x, w, t):
    """A graph that uses every built-in op at least once (x: (4, 3), w: (3, 3), t: 4 class indices)."""
    h = vg.Sigmoid.do_forward(vg.MatrixMultiply.do_forward(x, w))
    a = vg.Squeeze.do_forward(vg.Unsqueeze.do_forward(h, dim=0), dim=0)
    rows = vg.Expand.do_forward(vg.Unsqueeze.do_forward(vg.RowSum.do_forward(vg.Exp.do_forward(a)), dim=1),
                                dim=1, repeats=3)
    b = vg.Id.do_forward(a) - h + vg.ReLU.do_forward(vg.BatchMM.do_forward(w, a)) * vg.Exp.do_forward(h) / rows
    b = vg.Log.do_forward(vg.Exp.do_forward(b))
    top = vg.RowMax.do_forward(vg.Normalize.do_forward(vg.Exp.do_forward(b)))
    c = vg.Affine.do_forward(w, vg.TensorNode(np.linspace(-1.0, 1.0, 3)), a)
    with vg.unfused():  # vugrad's op-by-op logsoftmax and logceloss (Select, Sum, Multiply, ...)
        unfused_loss = vg.logceloss(vg.logsoftmax(c), t)
    return vg.logceloss(vg.logsoftmax(b), t) + unfused_loss + vg.Sum.do_forward(top)


def test_graph_of_every_op(rng):
    """Gradients through every op at once agree with central differences, and no two nodes' grads share
    memory (an aliased grad would be corrupted by the next `+=`)."""
    xv, wv, t = rng.standard_normal((4, 3)), rng.standard_normal((3, 3)), np.array([0, 1, 2, 1])
    x, w = vg.TensorNode(xv), vg.TensorNode(wv)
    loss = every_op(x, w, t)
    loss.backward()
    nodes = all_nodes(loss)
    core_ops = {op for op in vg.ALL_OPS if op.__module__ == "vgrad.ops"}  # the CNN ops have their own tests
    assert {n.source.op for n in nodes if n.source is not None} == core_ops
    for i, n1 in enumerate(nodes):
        for n2 in nodes[i + 1:]:
            assert not np.shares_memory(n1.grad, n2.grad)

    def f(xa, wa):
        out = every_op(vg.TensorNode(xa), vg.TensorNode(wa), t)
        return float(out.value)

    want_x, want_w = central_differences(f, [xv, wv])
    np.testing.assert_allclose(x.grad, want_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w.grad, want_w, rtol=1e-6, atol=1e-7)


def test_training_with_forwards_never_cleared(rng):
    """Evaluation forwards that are never cleared, and training graphs only zero_grad()-ed, not cleared:
    every step's gradients still equal the NumPy formulas."""
    net = TwoLayer(2, 6, 3)
    params = net.parameters()
    for step in range(4):
        x = rng.standard_normal((8, 2))
        t = rng.integers(0, 3, size=8)
        net(vg.TensorNode(rng.standard_normal((5, 2))))  # an evaluation forward, never cleared
        loss = vg.logceloss(net(vg.TensorNode(x)), t)
        loss.backward()
        want_loss, want_grads = numpy_mlp(x, t, *[p.value for p in params])
        assert float(loss.value) == pytest.approx(want_loss, rel=1e-12)
        for p, want in zip(params, want_grads):
            np.testing.assert_allclose(p.grad, want, rtol=1e-10, atol=1e-12, err_msg=f"step {step}")
            p.value -= 0.1 * p.grad
        loss.zero_grad()


def _traced_graph(trace):
    """A graph with diamonds, an input used twice by one op and a two-output op, whose Python ops record
    the order in which their backward runs."""

    class Trace(vg.Op):
        @staticmethod
        def forward(context, x, *, label):
            context["label"] = label
            return x

        @staticmethod
        def backward(context, go):
            trace.append(context["label"])
            return go

    class Split(vg.Op):
        @staticmethod
        def forward(context, x):
            return x * 1.0, x * 2.0

        @staticmethod
        def backward(context, ga, gb):
            trace.append("split")
            return ga + 2.0 * gb

    a = vg.TensorNode(np.array([1.0, 2.0]))
    b = Trace.do_forward(a, label="b")
    c1, c2 = Trace.do_forward(b, label="c1"), Trace.do_forward(b, label="c2")
    d = Trace.do_forward(c1 * c2, label="d")
    s1, s2 = Split.do_forward(d)
    e = Trace.do_forward(s1 + s2 + a, label="e")
    return a, [b, c1, c2, d, s1, s2, e], vg.Sum.do_forward(e * e)


def test_order_of_backward_calls_visits_and_grads_are_vugrads():
    """vugrad's recursion, worked out by hand for this graph: an op runs backward once all its outputs have
    their gradients, then visits its inputs in order, depth first; the two-output Split runs once."""
    trace = []
    a, nodes, loss = _traced_graph(trace)
    loss.backward()
    assert trace == ["e", "split", "d", "c1", "c2", "b"]
    b, c1, c2, d, s1, s2, e = nodes
    assert [n.visits for n in nodes] == [2, 1, 1, 1, 1, 1, 2]
    assert loss.visits == 1 and a.visits == 2
    assert [n.numparents for n in nodes] == [2, 1, 1, 1, 1, 1, 2]
    # e = s1 + s2 + a = 3 a^2 + a (d = a^2, s1 = d, s2 = 2 d) and loss = sum(e^2)
    x = a.value
    np.testing.assert_allclose(a.grad, 2 * (3 * x**2 + x) * (6 * x + 1), rtol=1e-15)
