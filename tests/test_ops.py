"""Generic tests of every built-in op, parametrized over tests/op_table.py (its entries are built from each op's
declaration of its test inputs, `tests = ...` in its class).

Each op's C forward/backward is compared with its NumPy Reference class, with central differences through
the graph API, and (when torch is importable) with PyTorch. For the course's ops (entry.exact) float64 must
equal the Reference bit for bit on every layout, and other dtypes must give exactly what NumPy gives; the
CNN toolkit's ops are held to tolerances in float64 too, and compute integers in float64.
"""
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vgrad as vg
import vgrad.ops as vops
from op_table import (
    BY_NAME,
    BYTE_SWAPPED,
    FLOAT_TOL,
    LAYOUTS,
    SPECIAL_MATRIX,
    TABLE,
    as_tuple,
    assert_close,
    assert_exact,
    assert_matches,
    assert_same_context,
    c_copy,
    central_differences,
    compute_dtype,
    forward,
    graph_grads,
    values,
)

FLOATS = [np.float32, np.float64]


def _sample_params(entries=TABLE, max_size=None):
    """One pytest.param(entry, index) per sample of each entry, named by op and shapes."""
    params = []
    for entry in entries:
        for i, s in enumerate(entry.samples(np.float64, np.random.default_rng(0))):
            if max_size is not None and sum(x.size for x in s.inputs) > max_size:
                continue
            params.append(pytest.param(entry, i, id=f"{entry.name}-{s.describe()}"))
    return params


SAMPLES = _sample_params()
SMALL_SAMPLES = _sample_params(max_size=40)
ERRORS = [pytest.param(e, c, id=f"{e.name}-{c.label}") for e in TABLE for c in e.errors]
# The course's ops of two array inputs (Add, Sub, Multiply, Div, MatrixMultiply, BatchMM): float32 with float64
BINARY = [e for e in TABLE if e.exact and len(e.samples(np.dtype(np.float64), np.random.default_rng(0))[0].inputs) == 2]


def sample(entry, i, dtype, rng):
    return entry.samples(np.dtype(dtype), rng)[i]


def checked_forward(op, inputs, kwargs):
    """op.forward on a fresh context, checking that the inputs were left unchanged."""
    before = [np.array(x, copy=True) for x in inputs]
    out, ctx = forward(op, inputs, kwargs)
    for x, b in zip(inputs, before):
        np.testing.assert_array_equal(x, b, err_msg=f"{op.__name__}.forward changed its input")
    return out, ctx


def checked_backward(op, ctx, go, inputs, dtype, ref_grads=None):
    """op.backward(ctx, go): one gradient per input, each of the input's shape and of `dtype`."""
    go_before = go.copy()
    raw = op.backward(ctx, go)
    np.testing.assert_array_equal(go, go_before, err_msg=f"{op.__name__}.backward changed goutput")
    if ref_grads is not None:
        assert isinstance(raw, tuple) == isinstance(ref_grads, tuple), (
            f"{op.__name__}.backward returns {type(raw).__name__}, Reference returns {type(ref_grads).__name__}"
        )
    grads = as_tuple(raw)
    assert len(grads) == len(inputs)
    for g, x in zip(grads, inputs):
        assert isinstance(g, np.ndarray)
        assert g.shape == x.shape, f"{op.__name__}: gradient shape {g.shape} != input shape {x.shape}"
        assert g.dtype == np.dtype(dtype), f"{op.__name__}: gradient dtype {g.dtype}, expected {np.dtype(dtype)}"
    return grads


def check_against_reference(entry, inputs, kwargs, dtype, rng, ref_inputs=None, ref_kwargs=None):
    """Forward and backward of the op on `inputs` agree with its Reference on `ref_inputs` (default: inputs
    cast to `dtype`); the output and gradients have `dtype`; the contexts hold the same keys."""
    dtype = np.dtype(dtype)
    if ref_inputs is None:
        ref_inputs = [np.asarray(x).astype(dtype) for x in inputs]
    ref_kwargs = kwargs if ref_kwargs is None else ref_kwargs
    op, ref = entry.op, entry.op.Reference
    exact = entry.exact and dtype == np.float64

    out, ctx = checked_forward(op, inputs, kwargs)
    want, ref_ctx = forward(ref, ref_inputs, ref_kwargs)
    assert isinstance(out, np.ndarray), f"{entry.name}.forward returned {type(out).__name__}"
    assert out.dtype == dtype, f"{entry.name}: output dtype {out.dtype}, expected {dtype}"
    assert_matches(entry, out, want, dtype, f"{entry.name} forward")
    assert_same_context(ctx, ref_ctx, dtype, entry.name, exact=exact)

    go = values("real", out.shape, dtype, rng)
    ref_grads = ref.backward(ref_ctx, go.copy())
    grads = checked_backward(op, ctx, go, inputs, dtype, ref_grads)
    for k, (g, r) in enumerate(zip(grads, as_tuple(ref_grads))):
        assert_matches(entry, g, r, dtype, f"{entry.name} backward, input {k}")
    return out, grads


# ------------------------------------------------------------------------------------------------
# The table itself
# ------------------------------------------------------------------------------------------------


def test_all_ops_includes_the_contract_ops():
    contract = {"Add", "Sub", "Multiply", "Div", "MatrixMultiply", "BatchMM", "Log", "Exp", "Sigmoid", "ReLU", "Id",
                "Sum", "RowSum", "RowMax", "Normalize", "Expand", "Select", "Squeeze", "Unsqueeze"}
    assert isinstance(vops.ALL_OPS, tuple)
    missing = contract - {op.__name__ for op in vops.ALL_OPS}
    assert not missing, f"contract ops missing from ALL_OPS: {missing}"


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_op_shape(entry):
    """Each op is an Op subclass with a nested NumPy Reference Op subclass."""
    assert issubclass(entry.op, vg.Op)
    assert issubclass(entry.op.Reference, vg.Op)
    assert getattr(vg, entry.name) is entry.op


# ------------------------------------------------------------------------------------------------
# Against the NumPy Reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("entry,i", SAMPLES)
def test_matches_reference(entry, i, dtype, rng):
    s = sample(entry, i, dtype, rng)
    check_against_reference(entry, s.inputs, s.kwargs, dtype, rng)


EXACT_LAYOUTS = dict(LAYOUTS, byteswapped=BYTE_SWAPPED)


@pytest.mark.parametrize("layout", sorted(EXACT_LAYOUTS))
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("entry,i", SAMPLES)
def test_layouts(entry, i, dtype, layout, rng):
    """Fortran, transposed, strided, negative-stride, zero-stride, read-only, unaligned and byte-swapped inputs,
    goutputs and indices. In float64 the course's ops must give what their Reference gives on the very same
    arrays, bit for bit (NumPy's own order of summation and its exp/log code path depend on the layout)."""
    s = sample(entry, i, dtype, rng)
    exact = entry.exact and dtype == np.float64
    if layout == "byteswapped" and not exact:
        pytest.skip("byte-swapped inputs are checked where results are exact")
    to_layout = EXACT_LAYOUTS[layout]
    inputs = [to_layout(x) for x in s.inputs]
    kwargs = {k: to_layout(v) if isinstance(v, np.ndarray) else v for k, v in s.kwargs.items()}
    if exact:
        ref_inputs, ref_kwargs = inputs, kwargs
    else:
        ref_inputs = [c_copy(x) for x in inputs]
        ref_kwargs = {k: c_copy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}

    op, ref = entry.op, entry.op.Reference
    out, ctx = checked_forward(op, inputs, kwargs)
    want, ref_ctx = forward(ref, ref_inputs, ref_kwargs)
    go = to_layout(values("real", out.shape, dtype, rng))
    if exact:
        assert_exact(out, want, f"{entry.name} forward, {layout} inputs")
        ref_grads = as_tuple(ref.backward(ref_ctx, go))
        grads = as_tuple(op.backward(ctx, go))
        assert len(grads) == len(ref_grads)
        for k, (g, r) in enumerate(zip(grads, ref_grads)):
            assert_exact(g, r, f"{entry.name} backward, {layout} inputs and goutput, input {k}")
        return
    assert out.dtype == np.dtype(dtype)
    assert_close(out, want, dtype, f"{entry.name} forward, {layout} inputs")
    ref_grads = as_tuple(ref.backward(ref_ctx, c_copy(go)))
    grads = checked_backward(op, ctx, go, inputs, dtype)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, dtype, f"{entry.name} backward, {layout} inputs and goutput")


def check_numpy_dtypes(entry, s, rng):
    """The course's ops on inputs of another dtype than float32/float64: exactly what the Reference (NumPy)
    gives, dtype included, forward and backward; where NumPy refuses (the boolean `-`), the same exception."""
    op, ref = entry.op, entry.op.Reference
    try:
        with np.errstate(all="ignore"):
            want, ref_ctx = forward(ref, [x.copy() for x in s.inputs], s.kwargs)
    except Exception as e:  # noqa: BLE001 - whatever NumPy raises, the op raises too
        with pytest.raises(type(e)):
            forward(op, s.inputs, s.kwargs)
        return
    with np.errstate(all="ignore"):
        out, ctx = checked_forward(op, s.inputs, s.kwargs)
    assert_exact(out, want, f"{entry.name} forward")
    go = values("real", np.shape(out), vg.core.grad_dtype(np.asarray(out)), rng)
    with np.errstate(all="ignore"):
        ref_grads = as_tuple(ref.backward(ref_ctx, go.copy()))
        grads = as_tuple(op.backward(ctx, go))
    assert len(grads) == len(ref_grads)
    for k, (g, r) in enumerate(zip(grads, ref_grads)):
        assert_exact(g, r, f"{entry.name} backward, input {k}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_], ids=["u8", "i64", "bool"])
@pytest.mark.parametrize("entry,i", SAMPLES)
def test_integer_and_bool_inputs(entry, i, dtype, rng):
    """The course's ops keep NumPy's dtypes (int64 + int64 is int64, uint8 + uint8 wraps around, the sum of
    int64 is int64, the sigmoid of int64 is float64); the CNN toolkit's compute integers in float64."""
    if np.dtype(dtype).kind == "b" and not entry.bools:
        pytest.skip(f"bool inputs are not meaningful for {entry.name}")
    if np.dtype(dtype).kind in "iu" and not entry.ints:
        pytest.skip(f"integer inputs are not meaningful for {entry.name}")
    s = sample(entry, i, dtype, rng)
    assert all(x.dtype == np.dtype(dtype) for x in s.inputs)
    if entry.passthrough:
        check_passthrough(entry, s, rng)
    elif entry.exact:
        check_numpy_dtypes(entry, s, rng)
    else:
        check_against_reference(entry, s.inputs, s.kwargs, np.float64, rng)


@pytest.mark.parametrize("entry,i", SAMPLES)
def test_float16_inputs(entry, i, rng):
    """float16: what NumPy gives for the course's ops; computed in float32 by the CNN toolkit's."""
    s = sample(entry, i, np.float16, rng)
    if entry.passthrough:
        check_passthrough(entry, s, rng)
    elif entry.exact:
        check_numpy_dtypes(entry, s, rng)
    else:
        check_against_reference(entry, s.inputs, s.kwargs, np.float32, rng)


def check_passthrough(entry, s, rng):
    """Ops that return their input or a view of it keep its dtype and values; gradients follow goutput."""
    out, ctx = checked_forward(entry.op, s.inputs, s.kwargs)
    want, ref_ctx = forward(entry.op.Reference, s.inputs, s.kwargs)
    assert out.dtype == s.inputs[0].dtype
    np.testing.assert_array_equal(out, want)
    assert out.shape == want.shape
    go = values("real", out.shape, np.float64, rng)
    (g,) = checked_backward(entry.op, ctx, go, s.inputs, np.float64)
    assert_exact(g, entry.op.Reference.backward(ref_ctx, go.copy()))


@pytest.mark.parametrize("entry", BINARY, ids=lambda e: e.name)
@pytest.mark.parametrize("order", ["f32,f64", "f64,f32"])
def test_mixed_float32_float64_computes_in_float64(entry, order, rng):
    """Exactly what NumPy gives on the mixed inputs (it promotes to float64), forward and backward."""
    s = entry.samples(np.dtype(np.float64), rng)[0]
    first, second = (np.float32, np.float64) if order == "f32,f64" else (np.float64, np.float32)
    inputs = [s.inputs[0].astype(first), s.inputs[1].astype(second)]
    assert compute_dtype(*inputs) == np.float64
    out, ctx = checked_forward(entry.op, inputs, s.kwargs)
    want, ref_ctx = forward(entry.op.Reference, inputs, s.kwargs)
    assert out.dtype == np.float64
    assert_exact(out, want, f"{entry.name} mixed")
    go = values("real", out.shape, np.float64, rng)
    for k, (g, r) in enumerate(zip(as_tuple(entry.op.backward(ctx, go)),
                                   as_tuple(entry.op.Reference.backward(ref_ctx, go)))):
        assert_exact(g, r, f"{entry.name} mixed, backward {k}")


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_non_native_byte_order(entry, rng):
    """Big-endian float64 inputs: computed correctly (for the course's ops: what NumPy gives on them, bit for
    bit) or refused with TypeError, never misread."""
    s = entry.samples(np.dtype(np.float64), rng)[0]
    inputs = [x.astype(x.dtype.newbyteorder(">" if np.little_endian else "<")) for x in s.inputs]
    try:
        out, _ = forward(entry.op, inputs, s.kwargs)
    except TypeError as e:
        assert entry.name in str(e)
        return
    if entry.exact:
        want, _ = forward(entry.op.Reference, inputs, s.kwargs)
        assert_exact(out, want, f"{entry.name} byte-swapped")
        return
    want, _ = forward(entry.op.Reference, [x.astype(np.float64) for x in s.inputs], s.kwargs)
    assert_close(out, want, np.float64, f"{entry.name} byte-swapped")


# ------------------------------------------------------------------------------------------------
# Against central differences through the graph API
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry,i", SMALL_SAMPLES)
def test_gradient_central_differences(entry, i, rng):
    s = sample(entry, i, np.float64, rng)
    op, kwargs = entry.op, s.kwargs
    out0, _ = forward(op.Reference, s.inputs, kwargs)
    R = rng.standard_normal(out0.shape)

    out, grads = graph_grads(lambda *nodes: op.do_forward(*nodes, **kwargs), s.inputs, R)
    assert_close(out, out0, np.float64, f"{entry.name} forward through do_forward")

    def f(*xs):
        return float(np.sum(forward(op, xs, kwargs)[0] * R))

    for k, (g, want) in enumerate(zip(grads, central_differences(f, s.inputs))):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-6, err_msg=f"{entry.name} gradient of input {k}")


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry,case", ERRORS)
def test_error_inputs(entry, case):
    with pytest.raises(case.exc, match=case.match):
        entry.op.forward({}, *case.inputs, **case.kwargs)


BAD_DTYPES = {
    "complex": lambda x: x.astype(np.complex128),
    "object": lambda x: x.astype(object),
    "str": lambda x: x.astype(str),
    "none": lambda x: None,
}


@pytest.mark.parametrize("which", ["all", "last"])
@pytest.mark.parametrize("kind", sorted(BAD_DTYPES))
@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_bad_dtypes_raise_type_error(entry, kind, which, rng):
    s = entry.samples(np.dtype(np.float64), rng)[0]
    inputs = list(s.inputs)
    targets = range(len(inputs)) if which == "all" else [len(inputs) - 1]
    for k in targets:
        inputs[k] = BAD_DTYPES[kind](inputs[k])
    with pytest.raises(TypeError, match=entry.name):
        entry.op.forward({}, *inputs, **s.kwargs)


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_do_forward_refuses_raw_arrays(entry, rng):
    s = entry.samples(np.dtype(np.float64), rng)[0]
    with pytest.raises(TypeError, match=entry.name):
        entry.op.do_forward(*s.inputs, **s.kwargs)


# ------------------------------------------------------------------------------------------------
# Raw-array calls as in vugrad's own tests, and a few op-specific facts
# ------------------------------------------------------------------------------------------------


def test_rowmax_backward_scatters_to_argmax():
    x = np.asarray([[0.0, 1.0], [4.0, 5.0], [9, 0.0]])
    ctx = {}
    out = vg.RowMax.forward(ctx, x)
    np.testing.assert_array_equal(out, [1.0, 5.0, 9.0])
    grad = vg.RowMax.backward(ctx, np.asarray([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(grad, [[0.0, 0.1], [0.0, 0.2], [0.3, 0.0]])


def test_rowsum_backward_with_rowmax_context_broadcasts_over_rows():
    x = np.asarray([[0.0, 1.0], [4.0, 0.0], [9, 0.0]])
    ctx = {}
    vg.RowMax.forward(ctx, x)
    grad = vg.RowSum.backward(ctx, np.arange(3.0) + 0.1)
    np.testing.assert_array_equal(grad, [[0.1, 0.1], [1.1, 1.1], [2.1, 2.1]])


def test_rowmax_ties_pick_first_like_argmax():
    x = np.array([[2.0, 2.0, 1.0], [0.0, 3.0, 3.0]])
    ctx = {}
    vg.RowMax.forward(ctx, x)
    np.testing.assert_array_equal(np.ravel(ctx["idxs"]), np.argmax(x, axis=1))


def test_sum_gives_0d_array(rng):
    x = rng.standard_normal((3, 4))
    out = vg.Sum.forward({}, x)
    assert isinstance(out, np.ndarray) and out.shape == ()
    assert_exact(out, np.asarray(x.sum()))


def test_sum_is_accurate_on_long_inputs():
    x = np.full(1_000_001, 0.1, dtype=np.float32)
    out = vg.Sum.forward({}, x)
    assert out.dtype == np.float32
    assert float(out) == pytest.approx(100000.1, rel=1e-5)


def test_select_single_row_keeps_shape_n():
    x = np.array([[1.0, 2.0, 3.0]])
    out = vg.Select.forward({}, x, indices=np.array([2]))
    assert out.shape == (1,)
    np.testing.assert_array_equal(out, [3.0])


def test_select_context_indices_are_a_column(rng):
    ctx = {}
    idx = np.array([1, 0, 2])
    vg.Select.forward(ctx, rng.standard_normal((3, 3)), indices=idx)
    assert ctx["input_size"] == (3, 3)
    np.testing.assert_array_equal(ctx["indices"], idx[:, None])


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_sigmoid_and_exp_extremes(dtype):
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    with np.errstate(over="ignore"):
        sig = vg.Sigmoid.forward({}, x)
        ex = vg.Exp.forward({}, x)
    np.testing.assert_allclose(sig, [0.0, 1 / (1 + np.exp(100.0)), 0.5, 1.0, 1.0], atol=1e-30)
    assert not np.isnan(sig).any()
    assert ex[0] == 0.0 and ex[2] == 1.0 and np.isinf(ex[-1])


def test_relu_gradient_is_zero_at_zero_and_below():
    ctx = {}
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(vg.ReLU.forward(ctx, x), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(vg.ReLU.backward(ctx, np.array([5.0, 5.0, 5.0])), [0.0, 0.0, 5.0])


@pytest.mark.parametrize("dim", [0, 1])
def test_expand_matches_numpy_repeat(dim, rng):
    shape = (1, 4) if dim == 0 else (4, 1)
    x = rng.standard_normal(shape)
    ctx = {}
    out = vg.Expand.forward(ctx, x, dim=dim, repeats=3)
    np.testing.assert_array_equal(out, np.repeat(x, 3, axis=dim))
    go = rng.standard_normal(out.shape)
    np.testing.assert_allclose(vg.Expand.backward(ctx, go), go.sum(axis=dim, keepdims=True), rtol=1e-14)


def test_large_matmul_matches_numpy(rng):
    """Large enough for blocked/threaded BLAS kernels: bit for bit what np.matmul gives on vugrad's operands."""
    a, b = rng.standard_normal((130, 257)), rng.standard_normal((257, 67))
    ctx = {}
    out = vg.MatrixMultiply.forward(ctx, a, b)
    assert_exact(out, np.matmul(a, b))
    go = rng.standard_normal(out.shape)
    ga, gb = vg.MatrixMultiply.backward(ctx, go)
    assert_exact(ga, np.matmul(go, b.T))
    assert_exact(gb, np.matmul(a.T, go))


def test_large_elementwise_matches_numpy(rng):
    x = rng.standard_normal((1000, 1001)) * 10
    assert_exact(vg.Exp.forward({}, x), np.exp(x))
    assert_exact(vg.Log.forward({}, np.abs(x)), np.log(np.abs(x)))
    assert_exact(vg.Sigmoid.forward({}, x), 1 / (1 + np.exp(-x)))
    assert_exact(vg.RowSum.forward({}, x), np.sum(x, axis=1))
    assert_exact(vg.Sum.forward({}, x), np.asarray(x.sum()))


# ------------------------------------------------------------------------------------------------
# Against PyTorch (skipped when torch is not importable)
# ------------------------------------------------------------------------------------------------


def _mlp_vg(x, w1, b1, w2, b2, targets):
    h = vg.BatchMM.do_forward(w1, x) + vg.Expand.do_forward(b1, dim=0, repeats=x.size(0))
    h = vg.sigmoid(h)
    o = vg.BatchMM.do_forward(w2, h) + vg.Expand.do_forward(b2, dim=0, repeats=x.size(0))
    return vg.logceloss(vg.logsoftmax(o), targets)


def _mlp_torch(torch, x, w1, b1, w2, b2, targets):
    h = torch.sigmoid(x @ w1.T + b1)
    logp = torch.log_softmax(h @ w2.T + b2, dim=1)
    return -logp[torch.arange(x.shape[0]), torch.as_tensor(targets)].sum()


TARGETS = np.array([0, 2, 1, 2, 0, 1])

# name -> (vgrad function of nodes, torch function of tensors, [(domain, shape) per input])
TORCH_PIECES = {
    "sigmoid": (vg.sigmoid, lambda t, x: t.sigmoid(x), [("wide", (6, 5))]),
    "log": (vg.Log.do_forward, lambda t, x: t.log(x), [("positive", (6, 5))]),
    "exp": (vg.Exp.do_forward, lambda t, x: t.exp(x), [("real", (6, 5))]),
    "matmul": (vg.MatrixMultiply.do_forward, lambda t, a, b: a @ b, [("real", (6, 4)), ("real", (4, 3))]),
    "batchmm": (vg.BatchMM.do_forward, lambda t, m, v: v @ m.T, [("real", (3, 4)), ("real", (6, 4))]),
    "softmax": (vg.softmax, lambda t, x: t.softmax(x, dim=1), [("real", (6, 5))]),
    "logsoftmax": (vg.logsoftmax, lambda t, x: t.log_softmax(x, dim=1), [("real", (6, 5))]),
    "logceloss": (lambda x: vg.logceloss(x, TARGETS),
                  lambda t, x: -x[t.arange(6), t.as_tensor(TARGETS)].sum(), [("real", (6, 3))]),
    "mlp": (lambda *p: _mlp_vg(*p, TARGETS), lambda t, *p: _mlp_torch(t, *p, TARGETS),
            [("real", (6, 2)), ("real", (8, 2)), ("real", (1, 8)), ("real", (3, 8)), ("real", (1, 3))]),
}


@pytest.mark.parametrize("piece", sorted(TORCH_PIECES))
def test_against_torch(piece, rng):
    torch = pytest.importorskip("torch")
    vg_fn, torch_fn, specs = TORCH_PIECES[piece]
    arrays = [values(domain, shape, np.float64, rng) for domain, shape in specs]

    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    t_out = torch_fn(torch, *tensors)
    R = rng.standard_normal(tuple(t_out.shape))
    (t_out * torch.as_tensor(R)).sum().backward()

    out, grads = graph_grads(vg_fn, arrays, R)
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{piece} forward")
    for k, (g, t) in enumerate(zip(grads, tensors)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"{piece} grad of input {k}")


# ------------------------------------------------------------------------------------------------
# Large inputs, special values, references and memory, threads
# ------------------------------------------------------------------------------------------------

LARGE = [pytest.param(e, id=e.name) for e in TABLE if e.large is not None]


LARGE_TOL = {np.float32: dict(rtol=1e-4, atol=1e-3), np.float64: dict(rtol=1e-10, atol=1e-9)}


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("entry", LARGE)
def test_large_inputs_match_reference(entry, layout, dtype, rng):
    """Inputs large enough for the kernels' blocked, threaded or GIL-free paths: bit for bit in float64 for the
    course's ops (on the same arrays), within tolerances otherwise (float32 sums of many terms are summed in
    another order than NumPy's)."""
    tol = LARGE_TOL[dtype]
    exact = entry.exact and dtype == np.float64
    (s,) = entry.large(np.dtype(dtype), rng)
    to_layout = LAYOUTS.get(layout, lambda x: x)
    inputs = [to_layout(x) for x in s.inputs]
    op, ref = entry.op, entry.op.Reference
    out, ctx = forward(op, inputs, s.kwargs)
    want, ref_ctx = forward(ref, inputs if exact else [c_copy(x) for x in inputs], s.kwargs)
    assert out.dtype == np.dtype(dtype)
    go = to_layout(values("real", out.shape, dtype, rng))
    if exact:
        assert_exact(out, want, f"{entry.name} forward")
        for k, (g, r) in enumerate(zip(as_tuple(op.backward(ctx, go)), as_tuple(ref.backward(ref_ctx, go)))):
            assert_exact(g, r, f"{entry.name} backward {k}")
        return
    np.testing.assert_allclose(out, want, **tol)
    for g, r in zip(as_tuple(op.backward(ctx, go)), as_tuple(ref.backward(ref_ctx, c_copy(go)))):
        assert g.shape == r.shape and g.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, r, **tol)


SPECIAL_INPUTS = {entry.name: entry.special for entry in TABLE}  # op name -> a Sample of special values


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(SPECIAL_INPUTS))
def test_special_values_like_reference(name, dtype, rng):
    """inf, nan, signed zeros, subnormals and overflowing inputs: in float64 exactly the Reference's results for
    the course's ops (NaN where it has NaN, the same signs of zeros); otherwise the same inf/nan pattern, and
    close values elsewhere."""
    entry = BY_NAME[name]
    s = SPECIAL_INPUTS[name]
    with np.errstate(over="ignore"):  # 1e308 is inf in float32
        inputs = [x.astype(dtype) for x in s.inputs]
    with np.errstate(all="ignore"):
        out, ctx = forward(entry.op, inputs, s.kwargs)
        want, ref_ctx = forward(entry.op.Reference, [x.copy() for x in inputs], s.kwargs)
        go = values("real", np.shape(out), dtype, rng)
        grads = as_tuple(entry.op.backward(ctx, go))
        ref_grads = as_tuple(entry.op.Reference.backward(ref_ctx, go))
    assert len(grads) == len(ref_grads)
    if dtype == np.float64 and entry.exact:
        assert_exact(out, want, f"{name} forward")
        assert_same_context(ctx, ref_ctx, dtype, name, exact=True)
        for k, (g, r) in enumerate(zip(grads, ref_grads)):
            assert_exact(g, r, f"{name} backward {k}")
        return
    if dtype == np.float32 and not entry.special_float32:
        return  # float32's exp and sums may round differently where values cancel; no pattern to compare
    tol = dict(rtol=1e-6) if entry.exact else dict(FLOAT_TOL[np.dtype(dtype)], atol=1e-6)
    np.testing.assert_allclose(out, want, err_msg=f"{name} forward", **tol)
    assert_same_context(ctx, ref_ctx, dtype, name)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, err_msg=f"{name} backward", **tol)


def test_batchnorm_in_evaluation_mode_passes_gradients_by_special_values():
    """With running statistics the gradient over x is go * gamma * invstd, whatever x is (the Reference's)."""
    x = SPECIAL_MATRIX
    kwargs = {"running_mean": np.zeros(4), "running_var": np.ones(4)}
    gamma, beta, go = np.ones(4), np.zeros(4), np.ones((8, 4))
    with np.errstate(all="ignore"):
        _, ctx = forward(vg.BatchNormalization, [x, gamma, beta], kwargs)
        _, ref_ctx = forward(vg.BatchNormalization.Reference, [x, gamma, beta], kwargs)
        gx = vg.BatchNormalization.backward(ctx, go)[0]
    np.testing.assert_allclose(gx, vg.BatchNormalization.Reference.backward(ref_ctx, go)[0])


def test_select_negative_indices_wrap_like_numpy_or_raise(rng):
    x = rng.standard_normal((3, 4))
    idx = np.array([-1, 0, -4])
    try:
        out = vg.Select.forward({}, x, indices=idx)
    except IndexError as e:
        assert "Select" in str(e)
        return
    np.testing.assert_array_equal(out, np.take_along_axis(x, idx[:, None], axis=1)[:, 0])


def _refcounts(arrays):
    return [sys.getrefcount(a) for a in arrays]


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_no_reference_leaks(entry, rng):
    """Forward, backward and error paths leave the reference counts of inputs unchanged, and outputs
    and gradients are freed when dropped."""
    s = entry.samples(np.dtype(np.float64), rng)[0]
    watched = list(s.inputs) + [v for v in s.kwargs.values() if isinstance(v, np.ndarray)]
    before = _refcounts(watched)
    for _ in range(20):
        out, ctx = forward(entry.op, s.inputs, s.kwargs)
        grads = as_tuple(entry.op.backward(ctx, np.ones(out.shape)))
        del ctx
        dropped = [weakref.ref(a) for a in (out,) + grads if not any(a is w for w in watched)]
        del out, grads
        assert all(r() is None for r in dropped), f"{entry.name}: an output or gradient was not freed"
    for case in entry.errors:
        err_before = _refcounts(case.inputs)
        for _ in range(20):
            with pytest.raises(case.exc):
                entry.op.forward({}, *case.inputs, **case.kwargs)
        assert _refcounts(case.inputs) == err_before, f"{entry.name} leaks on error {case.label}"
    assert _refcounts(watched) == before, f"{entry.name} leaks references to its inputs"


def test_concurrent_calls_from_threads(rng):
    a, b = rng.standard_normal((300, 400)), rng.standard_normal((400, 200))
    want = [np.exp(a), np.matmul(a, b), a.sum(axis=1), 1 / (1 + np.exp(-a))]

    def work(_):
        return [vg.Exp.forward({}, a), vg.MatrixMultiply.forward({}, a, b), vg.RowSum.forward({}, a),
                vg.Sigmoid.forward({}, a)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    for got in results:
        for g, w in zip(got, want):
            assert_exact(g, w)
