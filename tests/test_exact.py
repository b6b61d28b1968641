"""float64 is bit-identical to NumPy, by construction, and these tests hold it to that:

- exp and log run NumPy's own inner loops (csrc/npyloops.c): equal to np.exp and np.log on every size from 0 to
  70, across the kernels' piece boundaries, on special values, in every memory layout;
- sums run NumPy's own pairwise loop the way np.sum calls it: equal to np.sum on every layout, every shape of
  row, and signed zeros;
- the fused ops (Affine, LogSoftmax, LogCELoss) equal the unfused graphs they replace (vg.unfused()), output and
  every input gradient, with both graph engines;
- the ops' NumPy References mirror vugrad's own formulas (when VGRAD_VUGRAD_DIR names a work tree of vugrad);
- other dtypes than float32/float64 give what NumPy gives (vugrad's question 1-2 printouts).

tests/test_ops.py checks every op against its Reference on the op table's samples and layouts; tests/
test_vugrad_parity.py trains the course MLP under both libraries.
"""
import contextlib

import numpy as np
import pytest

import vgrad as vg
import vgrad._C as C
from op_table import BYTE_SWAPPED, LAYOUTS, assert_exact
from vugrad_tree import VUGRAD_DIR, imported_vugrad

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310, -1e-310, 2.2250738585072014e-308,
                     709.78, 709.79, 710.0, -708.4, -708.5, -745.13, -745.14, -746.0, 1e300, -1e300, 1.0, -1.0,
                     0.5, 1e-20, -1e-20, 88.7, -103.9, 2.0 ** -1022])
# sizes around the kernels' pieces (sigmoid: 2048, the negation in front of exp: 512) and SIMD widths
SIZES = list(range(71)) + [127, 128, 129, 511, 512, 513, 1023, 2047, 2048, 2049, 4095, 4096, 4097, 10_007]
ALL_LAYOUTS = dict(LAYOUTS, byteswapped=BYTE_SWAPPED, C=lambda x: x)


def values(n, rng, scale=10.0):
    """n float64 values: normal, some tiny and huge, a third of them special."""
    x = rng.standard_normal(n) * scale * 10.0 ** rng.uniform(-3, 2, n)
    special = rng.random(n) < 0.3
    x[special] = rng.choice(SPECIALS, special.sum())
    return x


def layouts_of(x):
    """x (1-D) in every layout, and as a matrix in every layout when its size allows one."""
    out = {f"1d-{name}": f(x) for name, f in ALL_LAYOUTS.items()}
    if x.size % 4 == 0 and x.size:
        m = x.reshape(-1, 4)
        out.update({f"2d-{name}": f(m) for name, f in ALL_LAYOUTS.items()})
    return out


# ------------------------------------------------------------------------------------------------
# exp, log, sigmoid: NumPy's loops
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_exp_log_sigmoid_are_numpys_on_every_size_and_layout(n, rng):
    x = values(n, rng)
    with np.errstate(all="ignore"):
        for name, a in layouts_of(x).items():
            assert_exact(vg.Exp.forward({}, a), np.exp(a), f"Exp {name} n={n}")
            assert_exact(vg.Log.forward({}, a), np.log(a), f"Log {name} n={n}")
            assert_exact(vg.Sigmoid.forward({}, a), 1 / (1 + np.exp(-a)), f"Sigmoid {name} n={n}")


@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0, 750.0])
def test_exp_on_a_million_values(scale, rng):
    """The brief's measurement: 1e6 normal values times a scale (Exp differed from np.exp on 11% of them)."""
    x = rng.standard_normal(1_000_000) * scale
    with np.errstate(all="ignore"):
        assert_exact(C.exp_forward(x), np.exp(x))
        assert_exact(C.sigmoid_forward(x), 1 / (1 + np.exp(-x)))
        assert_exact(C.log_forward(np.abs(x)), np.log(np.abs(x)))


def test_exp_of_0d_and_scalars():
    for v in SPECIALS:
        with np.errstate(all="ignore"):
            for a in (np.array(v), BYTE_SWAPPED(np.array(v))):
                assert_exact(vg.Exp.forward({}, a), np.asarray(np.exp(a)))
                assert_exact(vg.Log.forward({}, a), np.asarray(np.log(a)))
                assert_exact(vg.Sigmoid.forward({}, a), np.asarray(1 / (1 + np.exp(-a))))


def test_float32_keeps_its_fast_path_within_rounding():
    """float32 uses vexp.c and libm (faster); it may differ from NumPy in the last bits, not more."""
    x = np.linspace(-80, 80, 100_001).astype(np.float32)
    np.testing.assert_allclose(vg.Exp.forward({}, x), np.exp(x), rtol=2 * np.finfo(np.float32).eps)
    np.testing.assert_allclose(vg.Sigmoid.forward({}, x), 1 / (1 + np.exp(-x)), rtol=4 * np.finfo(np.float32).eps,
                               atol=1e-38)


# ------------------------------------------------------------------------------------------------
# sums: NumPy's pairwise loop, in NumPy's order
# ------------------------------------------------------------------------------------------------

SUM_SHAPES = [(0,), (1,), (7,), (8,), (9,), (127,), (128,), (129,), (1000,), (20_000,), (3, 4), (4, 3), (1, 9),
              (9, 1), (17, 33), (2, 3, 4), (5, 1, 7), (300, 2), (2, 300), (3, 9000), (0, 5), (5, 0)]


def sum_values(shape, rng, kind):
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-8, 8, shape)
    if kind == "negative zeros":
        x = np.full(shape, -0.0)
    elif kind == "zeros":
        x = np.where(rng.random(shape) < 0.5, -0.0, 0.0)
    elif kind == "specials":
        m = rng.random(shape) < 0.1
        x[m] = rng.choice(SPECIALS, m.sum())
    return x


@pytest.mark.parametrize("kind", ["normal", "negative zeros", "zeros", "specials"])
@pytest.mark.parametrize("shape", SUM_SHAPES, ids=str)
def test_sums_are_numpys(shape, kind, rng):
    x0 = sum_values(shape, rng, kind)
    with np.errstate(all="ignore"):
        for name, f in ALL_LAYOUTS.items():
            x = f(x0)
            assert_exact(vg.Sum.forward({}, x), np.asarray(x.sum()), f"Sum {name}")
            if x.ndim == 2:
                assert_exact(vg.RowSum.forward({}, x), np.sum(x, axis=1), f"RowSum {name}")
                assert_exact(vg.Normalize.forward({}, x), x / x.sum(axis=1, keepdims=True), f"Normalize {name}")
            for dim in range(x.ndim):
                assert_exact(vg.Expand.backward({"dim": dim}, x), x.sum(axis=dim, keepdims=True),
                             f"Expand backward dim={dim} {name}")


def graph_of(ops, x, w):
    """A graph of element-wise ops and sums over x and w (TensorNodes): the loss."""
    h = ops.Multiply.do_forward(ops.Sigmoid.do_forward(x), w)
    h = ops.Add.do_forward(h, ops.Div.do_forward(x, ops.Exp.do_forward(w)))
    p = ops.Normalize.do_forward(ops.Exp.do_forward(ops.Sub.do_forward(h, x)))
    return ops.Sum.do_forward(ops.Multiply.do_forward(ops.Log.do_forward(p), h))


class _References:
    def __getattr__(self, name):
        return getattr(vg, name).Reference


@pytest.mark.parametrize("layout", ["C", "fortran", "transposed", "strided"])
def test_graphs_of_other_layouts_give_numpys_numbers(layout, rng):
    """Element-wise results keep NumPy's layout where every input is Fortran-ordered, so that a sum further on
    adds in NumPy's order: a graph fed such arrays gives the numbers of the same graph of References (NumPy)."""
    f = ALL_LAYOUTS[layout]
    x0, w0 = f(rng.standard_normal((37, 29))), f(rng.standard_normal((37, 29)))
    results = []
    for ops in (vg, _References()):
        x, w = vg.TensorNode(x0), vg.TensorNode(w0)
        loss = graph_of(ops, x, w)
        loss.backward()
        results.append((loss.value, x.grad, w.grad))
        loss.clear()
    for got, want in zip(*results):
        assert_exact(got, want)
    if layout == "fortran":
        assert vg.Sigmoid.forward({}, x0).flags.f_contiguous and vg.Add.forward({}, x0, w0).flags.f_contiguous


@pytest.mark.parametrize("outer", [1, 2, 5])
@pytest.mark.parametrize("inner", [1, 2, 3, 7, 8, 9, 64])
@pytest.mark.parametrize("length", [0, 1, 2, 7, 8, 9, 100, 1000])
def test_sum_over_a_middle_axis_in_numpys_order(outer, length, inner, rng):
    """Expand's gradient: go.sum(axis=1, keepdims=True) of C-ordered (outer, length, inner) arrays, where NumPy
    adds rows in order (inner > 1) or sums runs pairwise (inner == 1)."""
    go = rng.standard_normal((outer, length, inner)) * 10.0 ** rng.uniform(-8, 8, (outer, length, inner))
    assert_exact(vg.Expand.backward({"dim": 1}, go), go.sum(axis=1, keepdims=True))


def test_rowmax_ties_of_signed_zeros_are_numpys(rng):
    """np.amax's choice between -0.0 and 0.0 depends on its SIMD lanes; the kernel asks it when that matters."""
    for cols in (2, 3, 9, 17, 64):
        x = np.where(rng.random((6, cols)) < 0.5, -0.0, 0.0) - (rng.random((6, cols)) < 0.3)
        assert_exact(vg.RowMax.forward({}, x), np.amax(x, axis=1))


# ------------------------------------------------------------------------------------------------
# matrix products: np.matmul's own BLAS call or loop, on vugrad's operands
# ------------------------------------------------------------------------------------------------

MATMUL_SHAPES = [(1, 1, 1), (1, 5, 1), (1, 5, 3), (4, 5, 1), (4, 1, 3), (3, 4, 5), (0, 3, 2), (3, 0, 2), (2, 3, 0),
                 (17, 33, 9), (64, 128, 10), (130, 257, 67)]


@pytest.mark.parametrize("m,n,p", MATMUL_SHAPES)
def test_matrix_products_are_np_matmul_on_every_layout(m, n, p, rng):
    """MatrixMultiply and BatchMM, forward and backward, against np.matmul on the same operands: C, Fortran,
    transposed, strided, negative and zero strides, unaligned, byte-swapped, float32 and mixed; and a product
    of an array with its own transpose, for which np.matmul calls BLAS's syrk."""
    a0, b0, go0 = rng.standard_normal((m, n)), rng.standard_normal((n, p)), rng.standard_normal((m, p))
    for name, f in ALL_LAYOUTS.items():
        for a, b, go in [(f(a0), f(b0), f(go0)), (f(a0), b0, go0), (a0, f(b0), f(go0)),
                         (f(a0).astype(np.float32), f(b0).astype(np.float32), go0.astype(np.float32)),
                         (f(a0).astype(np.float32), b0, go0)]:
            with np.errstate(all="ignore"):
                ctx = {}
                assert_exact(vg.MatrixMultiply.forward(ctx, a, b), np.matmul(a, b), f"matmul {name}")
                ga, gb = vg.MatrixMultiply.backward(ctx, go)
                assert_exact(ga, np.matmul(go, b.T), f"matmul ga {name}")
                assert_exact(gb, np.matmul(a.T, go), f"matmul gb {name}")
                ctx = {}
                assert_exact(vg.BatchMM.forward(ctx, b.T, a), np.matmul(a, b), f"batchmm {name}")
                gm, gv = vg.BatchMM.backward(ctx, go)
                assert_exact(gm, np.matmul(go.T, a), f"batchmm gm {name}")
                assert_exact(gv, np.matmul(go, b.T), f"batchmm gv {name}")
    x = rng.standard_normal((m, n))
    assert_exact(vg.MatrixMultiply.forward({}, x.T, x), np.matmul(x.T, x))
    assert_exact(vg.BatchMM.forward({}, x, x), np.matmul(x, x.T))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_, np.float16, np.float32, np.longdouble])
def test_affine_takes_pixels_of_any_dtype(dtype, rng):
    """Linear on raw uint8 pixels (the course's MNIST batches) stays on the fused kernel: np.matmul promotes the
    input itself, so the result is the Reference's (vugrad's) bit for bit."""
    w, b = rng.standard_normal((10, 12)), rng.standard_normal((1, 10))
    x = (rng.random((7, 12)) * 255).astype(dtype)
    go = rng.standard_normal((7, 10))
    ctx, ref_ctx = {}, {}
    assert_exact(vg.Affine.forward(ctx, w, b, x), vg.Affine.Reference.forward(ref_ctx, w, b, x))
    for g, r in zip(vg.Affine.backward(ctx, go), vg.Affine.Reference.backward(ref_ctx, go)):
        assert_exact(g, r)
    if dtype == np.longdouble:  # long double products: left to the Reference
        with pytest.raises(C.UseReference, match="Affine"):
            C.affine_forward(w, b, x)
    else:
        assert_exact(C.affine_forward(w, b, x), vg.Affine.Reference.forward({}, w, b, x))  # not declined


# ------------------------------------------------------------------------------------------------
# the fused ops equal the unfused graphs, bit for bit
# ------------------------------------------------------------------------------------------------


def matrix(shape, rng, kind):
    x = rng.standard_normal(shape) * {"normal": 1.0, "wide": 30.0, "pixels": 100.0}.get(kind, 1.0)
    if kind == "ties":  # repeated maxima and values, zeros of both signs
        x = np.round(x) * 0.5
        x[rng.random(shape) < 0.2] = -0.0
    if kind == "specials":
        m = rng.random(shape) < 0.15
        x[m] = rng.choice(SPECIALS, m.sum())
    return x


def graph(fused, fn, arrays, weights):
    """fn on TensorNodes of `arrays` (fused ops or vg.unfused()), backward from Sum(out * weights): the output
    value and every input's gradient."""
    with contextlib.nullcontext() if fused else vg.unfused():
        nodes = [vg.TensorNode(a) for a in arrays]
        out = fn(*nodes)
        loss = vg.Sum.do_forward(out * vg.TensorNode(weights)) if weights is not None else out
        loss.backward()
    result = [out.value] + [n.grad for n in nodes]
    loss.clear()
    return result


def linear(w, b, x):
    layer = vg.Linear.__new__(vg.Linear)
    layer.w, layer.b = w, b
    return layer(x)


FUSED = {
    "Affine": (linear, lambda rng, n, k, m, kind: [matrix((m, k), rng, kind), matrix((1, m), rng, kind),
                                                   matrix((n, k), rng, kind)]),
    "LogSoftmax": (vg.logsoftmax, lambda rng, n, k, m, kind: [matrix((n, m), rng, kind)]),
    "LogCELoss": (None, lambda rng, n, k, m, kind: [matrix((n, m), rng, kind)]),
}


@pytest.mark.parametrize("kind", ["normal", "wide", "pixels", "ties", "specials"])
@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (3, 4, 2), (5, 2, 10), (128, 16, 10), (7, 9, 33), (2, 3, 200)])
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_op_equals_its_unfused_graph(name, n, k, m, kind, rng):
    fn, make = FUSED[name]
    arrays = make(rng, n, k, m, kind)
    weights = rng.standard_normal((n, m))
    if name == "LogCELoss":
        targets = rng.integers(0, m, n)
        fn, weights = (lambda lp: vg.logceloss(lp, targets)), None
    with np.errstate(all="ignore"):
        fused = graph(True, fn, arrays, weights)
        unfused = graph(False, fn, arrays, weights)
    for what, f, u in zip(["output"] + [f"gradient {i}" for i in range(len(arrays))], fused, unfused):
        assert_exact(f, u, f"{name} {what}")


def test_mlp_losses_equal_fused_and_unfused(rng, np_random_state):
    """The course MLP on raw 0-255 pixels, 20 steps: the same losses, bit for bit, fused and unfused."""
    x = rng.integers(0, 256, (20 * 32, 64)).astype(np.uint8)
    y = rng.integers(0, 10, 20 * 32)
    runs = []
    for ctx in (contextlib.nullcontext, vg.unfused):
        np.random.seed(0)
        mlp = vg.MLP(64, 10)
        losses = []
        with ctx():
            for fr in range(0, len(x), 32):
                loss = vg.logceloss(mlp(vg.TensorNode(x[fr:fr + 32])), y[fr:fr + 32])
                losses.append(float(loss.value).hex())
                loss.backward()
                for p in mlp.parameters():
                    p.value -= 0.0001 * p.grad
                loss.zero_grad()
                loss.clear()
        runs.append((losses, [p.value for p in mlp.parameters()]))
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1]):
        assert_exact(p, q)


# ------------------------------------------------------------------------------------------------
# the References are vugrad's formulas
# ------------------------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def vugrad_ops():
    if not VUGRAD_DIR:
        pytest.skip("set VGRAD_VUGRAD_DIR to a work tree of dlvu/vugrad")
    with imported_vugrad(VUGRAD_DIR) as vugrad:
        yield vugrad


VUGRAD_CASES = {  # op name -> (inputs, kwargs) in float64
    "Add": (["real", "real"], {}), "Sub": (["real", "real"], {}), "Multiply": (["real", "real"], {}),
    "MatrixMultiply": (["m34", "m45"], {}), "BatchMM": (["m43", "m53"], {}), "Log": (["positive"], {}),
    "Exp": (["real"], {}), "Sigmoid": (["wide"], {}), "Id": (["real"], {}), "Sum": (["real"], {}),
    "RowSum": (["real"], {}), "RowMax": (["real"], {}), "Normalize": (["positive"], {}),
    "Expand": (["row"], {"dim": 0, "repeats": 5}), "Select": (["real"], {"indices": "targets"}),
    "Squeeze": (["row"], {"dim": 0}), "Unsqueeze": (["real"], {"dim": 1}),
}


def vugrad_input(kind, rng):
    shapes = {"m34": (3, 4), "m45": (4, 5), "m43": (4, 3), "m53": (5, 3), "row": (1, 7)}
    x = rng.standard_normal(shapes.get(kind, (6, 7)))
    return {"positive": np.abs(x) + 0.5, "wide": x * 30}.get(kind, x)


@pytest.mark.parametrize("name", sorted(VUGRAD_CASES))
def test_op_and_reference_equal_vugrads_op(vugrad_ops, name, rng):
    """Each op of vugrad (core.py and ops.py) against vgrad's op and its Reference, forward and backward, bit for
    bit on float64 (values and dtypes; vugrad's RowSum gradient is a read-only broadcast, ours a copy)."""
    kinds, kwargs = VUGRAD_CASES[name]
    inputs = [vugrad_input(kind, rng) for kind in kinds]
    if kwargs.get("indices") == "targets":
        kwargs = {"indices": rng.integers(0, inputs[0].shape[1], inputs[0].shape[0])}
    theirs = getattr(vugrad_ops, name, None) or getattr(vugrad_ops.core, name)  # Sub is only in vugrad.core
    for ours in (getattr(vg, name), getattr(vg, name).Reference):
        ctx_v, ctx_o = {}, {}
        want = theirs.forward(ctx_v, *inputs, **kwargs)
        got = ours.forward(ctx_o, *inputs, **kwargs)
        assert_exact(got, want, f"{ours.__name__} forward")
        go = rng.standard_normal(np.shape(want))
        want_g = theirs.backward(ctx_v, go.copy())
        got_g = ours.backward(ctx_o, go.copy())
        want_g = want_g if isinstance(want_g, tuple) else (want_g,)
        got_g = got_g if isinstance(got_g, tuple) else (got_g,)
        assert len(got_g) == len(want_g)
        for g, w in zip(got_g, want_g):
            assert_exact(g, w, f"{ours.__name__} backward")


# ------------------------------------------------------------------------------------------------
# dtypes other than float32/float64: NumPy's
# ------------------------------------------------------------------------------------------------


def test_integer_values_keep_numpys_dtype():
    a = vg.TensorNode(np.array([[1, 2], [3, 4]]))
    prod = a * a
    assert prod.value.dtype == np.int64 and prod.value.tolist() == [[1, 4], [9, 16]]
    assert (a + a).value.dtype == np.int64 and (a - a).value.dtype == np.int64
    u = vg.TensorNode(np.array([200, 100], dtype=np.uint8))
    assert_exact((u + u).value, np.array([144, 200], dtype=np.uint8))  # wraps around, as NumPy does
    assert vg.Sigmoid.do_forward(a).value.dtype == np.float64
    assert vg.Sum.do_forward(a).value.dtype == np.int64
    assert vg.RowMax.do_forward(a).value.dtype == np.int64
    assert vg.Expand.do_forward(vg.TensorNode(np.array([[1, 2]])), dim=0, repeats=3).value.dtype == np.int64
    assert vg.Select.do_forward(a, indices=np.array([1, 0])).value.dtype == np.int64
    assert vg.MatrixMultiply.do_forward(a, a).value.dtype == np.int64
    loss = vg.Sum.do_forward(vg.Multiply.do_forward(a, a))
    loss.backward()
    assert a.grad.dtype == np.float64 and a.grad.tolist() == [[2.0, 4.0], [6.0, 8.0]]  # gradients stay float


def test_float16_gives_numpys_float16():
    x = np.linspace(-3, 3, 12, dtype=np.float16).reshape(3, 4)
    with np.errstate(all="ignore"):
        assert_exact(vg.Exp.forward({}, x), np.exp(x))
        assert_exact(vg.Sigmoid.forward({}, x), 1 / (1 + np.exp(-x)))
        assert_exact(vg.Add.forward({}, x, x), x + x)
        assert_exact(vg.RowSum.forward({}, x), np.sum(x, axis=1))


def test_mixed_float32_float64_is_float64_and_exact(rng):
    a, b = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal((5, 6)) + 3
    go = rng.standard_normal((5, 6))
    assert_exact(vg.Div.forward({}, a, b), a / b)
    ga, gb = vg.Div.backward({"a": b, "b": a}, go)  # -go * a / (b * b): b * b is float32 in NumPy
    assert_exact(ga, go / a)
    assert_exact(gb, -go * b / (a * a))
    assert_exact(vg.MatrixMultiply.forward({}, a, b.T), np.matmul(a, b.T))
