"""Property tests (hypothesis) on the entry points of vgrad._C.

Random shapes (0-d and zero-size included), memory layouts (C, Fortran, transposed, strided, negative and
zero strides, read-only, unaligned, byte-swapped, plain Python lists and scalars), dtypes (float16/32/64,
long double, bool, every integer type) and values (NaN, +-inf, +-0, subnormal, the largest finite ones).
Every call must either give what the op's NumPy Reference (vgrad.ops.X.Reference) gives, or raise
TypeError/ValueError/IndexError/MemoryError naming the op. A crash ends the pytest process, so it fails the
run too.

Which inputs are valid is decided here, from the spec (tests never ask the code under test). In float64 every
kernel must give the Reference's result on the very same arguments bit for bit, signed zeros included, NaN
where it has NaN (the layout decides NumPy's order of summation and its exp/log code path). Arguments of
other dtypes (bool, integers, float16, long double) are left to the op's Reference: the kernel declines them
with vgrad._C.UseReference (a TypeError naming the op), as it does float32 mixed with float64 in multi-
operation formulas and the float64 layouts whose NumPy order it does not reproduce. float32 results agree
within a few ulps, sums and products within the rounding bound of a sum of n terms (float32 may add in
another order), so values for those are drawn in a range where no partial sum can overflow.

Each test takes its hypothesis settings from the loaded profile (tests/conftest.py: ci, quick or thorough), so
the budget is set there and nowhere here; CI's profile is derandomized, so it sees the same examples every time.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vgrad._C as C
import vgrad.ops as vops
from op_table import (BAD_ARRAYS, BAD_INDICES, BAD_INTS, BAD_SHAPES, BYTE_SWAPPED, KERNEL_OWNERS, LAYOUTS,
                      BinaryElementwise, MatrixProduct, UnaryElementwise, c_calls, declaration, declared)


CLEAN = (TypeError, ValueError, IndexError, MemoryError)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------

GOOD_DTYPES = [np.float64, np.float32, np.float16, np.longdouble, np.bool_, np.int8, np.uint8, np.int16,
               np.uint16, np.int32, np.uint32, np.int64, np.uint64]
NONFINITE = [np.inf, -np.inf, np.nan]
# Value ranges: "any" is every value of the dtype; the bounded ones keep sums and products of up to a few
# hundred terms finite, so that the order of summation cannot decide between a number and inf.
BOUND = {"sum": 1e15, "moderate": 1e6, "positive": 1e15}
LAYOUT_NAMES = ["C", "byteswapped", "list"] + sorted(LAYOUTS)


def _representable(value, dtype):
    """value rounded towards zero to the float dtype (hypothesis wants bounds it can represent)."""
    v = dtype.type(value)
    return float(np.nextafter(v, dtype.type(0)) if abs(float(v)) > abs(value) else v)


def elements(dtype, kind):
    """A strategy for the elements of an array of `dtype` whose values are of `kind`."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(info.min), int(info.max)
        if kind == "moderate":
            lo, hi = max(lo, -10**6), min(hi, 10**6)
        if kind == "positive":
            lo = 0
        return st.integers(lo, hi)
    width = dtype.itemsize * 8
    if kind == "any":
        return st.floats(width=width)
    bound = _representable(min(BOUND[kind], float(np.finfo(dtype).max)), dtype)
    if kind == "positive":
        return st.floats(0.0, bound, width=width) | st.sampled_from([np.inf, np.nan])
    return st.floats(-bound, bound, width=width) | st.sampled_from(NONFINITE)


def to_layout(a, layout):
    if layout == "C":
        return a
    if layout == "byteswapped":
        return BYTE_SWAPPED(a)
    if layout == "list":
        return a.tolist()  # nested lists, or a Python scalar for a 0-d array
    return LAYOUTS[layout](a)


@st.composite
def operand(draw, shape, kind="any", dtypes=GOOD_DTYPES):
    """An argument holding an array of `shape`: any accepted dtype, any layout, values of `kind`."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    made = np.dtype(np.float64) if dtype == np.longdouble else dtype
    a = draw(hnp.arrays(made, shape, elements=elements(made, kind))).astype(dtype)
    return to_layout(a, draw(st.sampled_from(LAYOUT_NAMES)))


def shapes(min_dims=0, max_dims=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=5)


MATRIX = st.tuples(st.integers(0, 6), st.integers(0, 6))


@st.composite
def maybe_same(draw, shape, strategy=None):
    """Usually `shape`, sometimes another one (an invalid call for ops that need equal shapes)."""
    return shape if draw(st.integers(0, 4)) else draw(shapes() if strategy is None else strategy)


INDEX_DTYPES = [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64, np.intp]


@st.composite
def index_array(draw, count, lo, hi, column=False):
    """Integer indices in [lo, hi], `count` of them (sometimes another count), in any layout."""
    n = count if draw(st.integers(0, 5)) else draw(st.integers(0, 7))
    dtype = np.dtype(draw(st.sampled_from(INDEX_DTYPES)))
    info = np.iinfo(dtype)
    values = draw(st.lists(st.integers(max(lo, int(info.min)), min(hi, int(info.max))), min_size=n, max_size=n))
    k = np.array(values, dtype=dtype)
    if column and draw(st.booleans()):
        k = k.reshape(-1, 1)
    return to_layout(k, draw(st.sampled_from(["C", "list", "byteswapped", "negative", "strided", "readonly"])))


# ------------------------------------------------------------------------------------------------
# What the answer must be
# ------------------------------------------------------------------------------------------------


def arr(obj):
    return np.asarray(obj)


def compute_dtype(*objs):
    """float32 when every input is float16/float32 (any byte order), float64 otherwise (the spec's rule)."""
    single = all(arr(o).dtype.kind == "f" and arr(o).dtype.itemsize in (2, 4) for o in objs)
    return F32 if single else F64


def ref(obj, dtype):
    """The values the Reference sees: obj as a native, C-contiguous array of the compute dtype."""
    return np.array(arr(obj), dtype=dtype, order="C")


def refused(name, op, *args, exc=CLEAN):
    """vgrad._C.<name>(*args) raises a clean exception whose message names the op."""
    with pytest.raises(exc) as info:
        getattr(C, name)(*args)
    if not isinstance(info.value, MemoryError):  # NumPy's own "Unable to allocate ..." names no op
        assert op in str(info.value), f"{name}: the message {info.value} does not name {op}"


def check_array(got, dtype, shape, what, contiguous=True):
    assert isinstance(got, np.ndarray), f"{what}: got a {type(got).__name__}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == tuple(shape), f"{what}: shape {got.shape}, expected {tuple(shape)}"
    # C-ordered; Fortran-ordered where NumPy's is (element-wise results of Fortran-ordered inputs)
    assert got.flags.c_contiguous or got.flags.f_contiguous or got.size == 0 or not contiguous


def same_special(got, want, what):
    """NaN where the reference has NaN, and inf of the same sign where it has inf."""
    gn, wn = np.isnan(got), np.isnan(want)
    assert np.array_equal(gn, wn), f"{what}: NaN at {np.argwhere(gn != wn)[:3].tolist()}"
    gi, wi = np.isinf(got), np.isinf(want)
    assert np.array_equal(gi, wi), f"{what}: inf at {np.argwhere(gi != wi)[:3].tolist()}: {got[gi != wi][:3]}"
    assert np.array_equal(got[wi], want[wi]), f"{what}: inf of the wrong sign"


def assert_exact(got, want, dtype, what, contiguous=True):
    """Bitwise agreement (signed zeros included), NaNs in the same places."""
    want = np.asarray(want)
    check_array(got, dtype, want.shape, what, contiguous)
    same_special(got, want, what)
    keep = ~np.isnan(want)
    g, w = got[keep], want[keep].astype(dtype)
    assert np.array_equal(g, w), f"{what}: {g[g != w][:3]} != {w[g != w][:3]}"
    assert np.array_equal(np.signbit(g), np.signbit(w)), f"{what}: the sign of a zero differs"


def assert_close(got, want, dtype, what, bound=0.0):
    """Agreement within a few ulps plus `bound` (the rounding bound of a sum), specials exactly."""
    want = np.asarray(want)
    check_array(got, dtype, want.shape, what)
    same_special(got, want, what)
    finite = np.isfinite(want)
    info = np.finfo(dtype)
    tol = 8 * float(info.eps) * np.abs(want.astype(np.float64)) + 8 * float(info.tiny) + bound
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = finite & ~(err <= tol)
    assert not bad.any(), f"{what}: {got[bad][:3]} != {want[bad][:3]} (tolerance {np.broadcast_to(tol, bad.shape)[bad][:3]})"


def sum_bound(x, dtype, axis=None, keepdims=False):
    """Twice the rounding bound n eps sum|x| of a sum of n terms (the kernel's and NumPy's)."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    n = a.size if axis is None else a.shape[axis]
    with np.errstate(all="ignore"):
        s = np.sum(np.where(np.isfinite(a), a, 0), axis=axis, keepdims=keepdims)
    return 2 * n * float(np.finfo(dtype).eps) * s


def named_product_bound(arrays, names, result, dtype):
    """The rounding bound of a product of matrices given by size names, as np.einsum's ('nk', 'km' -> 'nm'): k eps
    einsum(|arrays|), twice, k the number of terms summed (the sizes of the names not in the result); in float32,
    plus what the terms with a subnormal operand add (vg_matmul counts those operands as zeros)."""
    absolute = []
    for a in arrays:
        f = np.abs(a.astype(np.float64))
        f[~np.isfinite(f)] = 0
        absolute.append(f)
    sizes = {n: d for a, name in zip(arrays, names) for n, d in zip(name, a.shape)}
    terms = int(np.prod([sizes[n] for n in set("".join(names)) - set(result)]))
    spec = ",".join(names) + "->" + result
    bound = 2 * terms * float(np.finfo(dtype).eps) * np.einsum(spec, *absolute)
    if np.dtype(dtype) == np.float32:
        tiny = float(np.finfo(np.float32).tiny)
        for i, f in enumerate(absolute):  # each operand's subnormal entries with the others' magnitudes
            if (f < tiny).any():
                bound = bound + np.einsum(spec, *absolute[:i], np.where(f < tiny, f, 0), *absolute[i + 1:])
    return bound


def product_bound(a, b, dtype):
    """The rounding bound of a @ b, as for sums: k eps (|a| @ |b|), twice (and in float32 its subnormal terms)."""
    return named_product_bound([a, b], ("nk", "km"), "nm", dtype)


def reference(op, method, ctx, *args, **kwargs):
    """Op.Reference.<method>(ctx, *args) with NumPy's floating-point warnings silenced."""
    with np.errstate(all="ignore"):
        return getattr(op.Reference, method)(ctx, *args, **kwargs)


# ------------------------------------------------------------------------------------------------
# Declined calls, and exact float64 results
# ------------------------------------------------------------------------------------------------

DECLINED = "declined"


def kernel(name, op, *args):
    """C.<name>(*args), or DECLINED when the kernel leaves the call to the op's NumPy Reference."""
    try:
        return getattr(C, name)(*args)
    except C.UseReference as e:
        assert isinstance(e, TypeError) and op in str(e), f"{name}: {e}"
        return DECLINED


def numpy_dtype(obj):
    return obj.dtype if isinstance(obj, (np.ndarray, np.generic)) else None


def leaves_to_numpy(*objs):
    """An argument of a dtype the kernels leave to NumPy (the op's Reference): not float32/float64."""
    return any(d is not None and not (d.kind == "f" and d.itemsize in (4, 8)) for d in map(numpy_dtype, objs))


def mixes_widths(*objs):
    """float32 together with float64 (Python numbers and lists count as float64)."""
    return len({8 if d is None else d.itemsize for d in map(numpy_dtype, objs)}) > 1


def check_declined(name, got, objs, same_float=False, layout=False):
    """The kernel declines exactly the calls it must leave to the Reference: other dtypes; for formulas of
    several operations (same_float) float32 mixed with float64; `layout`: the float64 layouts (or other cases)
    it names. Returns True when it declined (nothing more to check)."""
    must = leaves_to_numpy(*objs) or (same_float and mixes_widths(*objs)) or layout
    assert (got is DECLINED) == must, f"{name}: {'declined' if got is DECLINED else 'computed'} {objs!r}"
    return must


def as_seen(obj, t):
    """What the op's Reference is given for this argument: in float64 an array itself (NumPy's result
    depends on its layout, which the kernel must follow), anything else as an array of the compute dtype."""
    if t == F64 and isinstance(obj, np.ndarray):
        return obj
    return ref(obj, t)


def check(got, want, t, what, bound=0.0):
    """float64: bit for bit (any layout of result); float32: within a few ulps plus `bound`."""
    if t == F64:
        assert_exact(got, want, t, what, contiguous=False)
    else:
        assert_close(got, want, t, what, bound)


# ------------------------------------------------------------------------------------------------
# Which entry points the tests below check
# ------------------------------------------------------------------------------------------------

# Every entry point of vgrad._C tested here against its op's Reference (the op naming it in `kernels`:
# op_table.KERNEL_OWNERS): the families of kernels below, derived from the ops' declarations of their test inputs
# (`tests = ...`, vgrad/op_inputs.py), each tested by one parametrized test, and the entry points of the tests marked
# @checks(...). tests/test_registry.py fails when an op's kernel is in neither.
REFERENCE_CHECKED = set()


def checks(*names, into=REFERENCE_CHECKED):
    """Marks the test that checks these entry points of vgrad._C against their op's Reference."""
    into.update(names)
    return lambda test: test


def unary_families(ops):
    """The element-wise ops of one input among `ops` (declared `tests = UnaryElementwise(...)`): their forward kernels
    -> whether float32 results are exact (else within a few ulps), and their backward kernels -> (the context key of
    the array it takes with go, whether its formula has several operations: float32 mixed with float64 declined)."""
    unary = declared(ops, UnaryElementwise)
    return ({op.kernels[0]: declaration(op).float32_exact for op in unary},
            {op.kernels[1]: (declaration(op).saved, declaration(op).several_operations) for op in unary})


def binary_families(ops):
    """The element-wise ops of two inputs among `ops` (declared `tests = BinaryElementwise(...)`): their forward
    kernels, and their backward kernels of (go, a, b) -> (the context keys of a and b, whether the formula has several
    operations). (Sub's backward kernel, of go alone, has a test of its own: test_neg_forward.)"""
    binary = declared(ops, BinaryElementwise)
    return ([op.kernels[0] for op in binary],
            {op.kernels[1]: (declaration(op).saved, declaration(op).several_operations)
             for op in binary if declaration(op).saved})


def matrix_product_family(ops):
    """The matrix products among `ops` (declared `tests = MatrixProduct(...)`): each kernel -> (the size names of the
    product's operands' shapes and of its result's, and for the backward kernel the context keys under which it takes
    the operands with go; None for the forward)."""
    family = {}
    for op in declared(ops, MatrixProduct):
        spec = declaration(op)
        family[op.kernels[0]] = (spec.operands, spec.output, None)
        family[op.kernels[1]] = (spec.operands, spec.output, spec.saved)
    return family


def derived_checks(ops):
    """The kernels of `ops` that the parametrized tests of the families check, from the ops' declarations."""
    unary_forward, unary_backward = unary_families(ops)
    binary_forward, binary_backward = binary_families(ops)
    return set(unary_forward) | set(unary_backward) | set(binary_forward) | set(binary_backward) | set(
        matrix_product_family(ops))


UNARY_FORWARD, UNARY_BACKWARD = unary_families(vops.ALL_OPS)
# BINARY_BACKWARD: entry point -> (the context keys of a and b, whether float32 mixed with float64 is declined)
BINARY_FORWARD, BINARY_BACKWARD = binary_families(vops.ALL_OPS)
# MATMUL: entry point -> (size names of the operands, of the result, the context keys of the operands for backward)
MATMUL = matrix_product_family(vops.ALL_OPS)
REFERENCE_CHECKED.update(derived_checks(vops.ALL_OPS))


@checks("add_into")
@settings()
@given(data=st.data())
def test_add_into_is_numpys_plus_equals(data):
    """add_into(current, grad), the step of backpropagation core.py hands to C, is current += grad: the same
    values in the same array, whatever the dtypes and layouts (current as a gradient is: a writable array)."""
    shape = data.draw(shapes())
    current = data.draw(hnp.arrays(data.draw(st.sampled_from([np.float32, np.float64])), shape,
                                   elements=elements(np.dtype(np.float64), "any")))
    if data.draw(st.sampled_from(["C", "F"])) == "F":
        current = np.asfortranarray(current)
    grad = data.draw(operand(shape))
    expected = current.copy()
    with np.errstate(all="ignore"):
        try:
            expected += np.asarray(grad)
        except (TypeError, ValueError) as e:  # a cast NumPy's += refuses (float64 into float32 is fine)
            with pytest.raises(type(e)):
                C.add_into(current, grad)
            return
        result = C.add_into(current, grad)
    assert result is current
    np.testing.assert_array_equal(current, expected)


@checks("cached_empty", "cached_zeros", "cached_copy")
@settings()
@given(data=st.data())
def test_cached_allocators_are_numpys(data):
    """The buffer cache's allocators (csrc/alloc.c) give what np.empty, np.zeros and np.array(a, dtype,
    order='C') give, whether the block is new or reused (large shapes come from the cache, small ones not)."""
    shape = data.draw(shapes() | st.sampled_from([(300, 100), (70000,), (2, 3, 9000)]))
    dtype = np.dtype(data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.complex128, np.bool_])))
    for fn, want in ((C.cached_empty, np.empty(shape, dtype)), (C.cached_zeros, np.zeros(shape, dtype))):
        got = fn(shape, dtype)
        assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
        assert got.flags.c_contiguous and got.flags.owndata and got.flags.writeable
        if fn is C.cached_zeros:
            np.testing.assert_array_equal(got, want)
        got.fill(1)  # dirty, for the next draw that reuses the block
    large = np.arange(30000.0).reshape(300, 100).T  # a large copy, from the cache (and not C-ordered)
    got = C.cached_copy(large, np.float32)
    assert got.flags.c_contiguous and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array(large, dtype=np.float32, order="C"))
    a = np.asarray(data.draw(operand(data.draw(shapes()))))
    to = np.dtype(data.draw(st.sampled_from([np.float32, np.float64])))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        try:
            want = np.array(a, dtype=to, order="C")
        except (TypeError, ValueError) as e:
            with pytest.raises(type(e)):
                C.cached_copy(a, to)
            return
        got = C.cached_copy(a, to)
    assert got.flags.c_contiguous and got.dtype == to and got is not a
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# The fused ops of Linear, logsoftmax and logceloss (csrc/fused.c)
# ------------------------------------------------------------------------------------------------


@st.composite
def affine_operands(draw):
    """(w, b, x): usually fitting shapes (w: m x k, b: m values as (1, m) or (m,), x: n x k), sometimes not."""
    m, k, n = (draw(st.integers(0, 5)) for _ in range(3))
    bshape = draw(st.sampled_from([(1, m), (m,)]))
    w = draw(operand(draw(maybe_same((m, k), MATRIX)), "moderate"))
    b = draw(operand(draw(maybe_same(bshape, shapes(max_dims=2))), "moderate"))
    x = draw(operand(draw(maybe_same((n, k), MATRIX)), "moderate"))
    return w, b, x


def affine_fits(w, b, x):
    w, b, x = arr(w), arr(b), arr(x)
    return w.ndim == 2 and x.ndim == 2 and w.shape[1] == x.shape[1] and b.size == w.shape[0]


@checks("affine_forward")
@settings()
@given(data=st.data())
def test_affine_forward(data):
    """w and b must be float32/float64 (else declined); x may be of any dtype: np.matmul promotes it."""
    w, b, x = data.draw(affine_operands())
    if not affine_fits(w, b, x):
        return refused("affine_forward", "Affine", w, b, x)
    got = kernel("affine_forward", "Affine", w, b, x)
    if check_declined("affine_forward", got, (w, b), layout=numpy_dtype(x) == np.longdouble):
        return
    t = compute_dtype(w, b, x)
    want = reference(vops.Affine, "forward", {}, as_seen(w, F64), as_seen(b, F64), as_seen(x, F64))
    if want.dtype == F64:
        return assert_exact(got, want, F64, "affine_forward", contiguous=False)
    rw, rb, rx = ref(w, t), ref(b, t), ref(x, t)
    bound = product_bound(rx, rw.T, t) + 2 * float(np.finfo(t).eps) * np.abs(np.nan_to_num(rb.reshape(1, -1)))
    assert_close(got, reference(vops.Affine, "forward", {}, rw, rb, rx), t, "affine_forward", bound)


@checks("affine_backward")
@settings()
@given(data=st.data())
def test_affine_backward(data):
    w, b, x = data.draw(affine_operands())
    fits = affine_fits(w, b, x)
    n, m = (arr(x).shape[0] if arr(x).ndim == 2 else 0), (arr(w).shape[0] if arr(w).ndim == 2 else 0)
    go = data.draw(operand(data.draw(maybe_same((n, m), MATRIX)), "moderate"))
    need_x = data.draw(st.booleans())
    bshape = arr(b).shape
    if not (fits and arr(go).shape == (n, m)):
        return refused("affine_backward", "Affine", go, w, x, bshape, need_x)
    got = kernel("affine_backward", "Affine", go, w, x, bshape, need_x)
    if check_declined("affine_backward", got, (go, w), layout=numpy_dtype(x) == np.longdouble):
        return
    assert isinstance(got, tuple) and len(got) == 3
    wants = reference(vops.Affine, "backward", {"w": as_seen(w, F64), "b": np.zeros(bshape), "x": as_seen(x, F64)},
                      as_seen(go, F64))
    t = compute_dtype(go, w, x)
    rgo, rw, rx = ref(go, t), ref(w, t), ref(x, t)
    approx = reference(vops.Affine, "backward", {"w": rw, "b": np.zeros(bshape, t), "x": rx}, rgo)
    bounds = [product_bound(rgo.T, rx, t), sum_bound(rgo, t, axis=0).reshape(bshape), product_bound(rgo, rw, t)]
    for k, what in enumerate(["w", "b", "x"]):
        if k == 2 and not need_x:
            assert got[2] is None
        elif wants[k].dtype == F64:
            assert_exact(got[k], wants[k], F64, f"affine_backward [{what}]")
        else:
            assert_close(got[k], approx[k], F32, f"affine_backward [{what}]", bounds[k])


def finite_matrix(draw, lo, hi, shape=None):
    """A float32/float64 matrix of finite values in [lo, hi], in any layout."""
    shape = draw(MATRIX) if shape is None else shape
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    a = draw(hnp.arrays(dtype, shape, elements=st.floats(lo, hi, width=dtype.itemsize * 8)))
    return to_layout(a, draw(st.sampled_from(["C", "list"] + sorted(LAYOUTS))))


@checks("logsoftmax_forward")
@settings()
@given(data=st.data())
def test_logsoftmax_forward(data):
    x = finite_matrix(data.draw, -1e3, 1e3) if data.draw(st.integers(0, 6)) else matrix_or_not(data.draw)
    a = arr(x)
    if a.ndim != 2 or (a.shape[1] == 0 and a.shape[0] > 0):
        return refused("logsoftmax_forward", "LogSoftmax", x)
    got = kernel("logsoftmax_forward", "LogSoftmax", x)
    t = compute_dtype(x)
    non_c = t == F64 and isinstance(x, np.ndarray) and not x.flags.c_contiguous
    if check_declined("logsoftmax_forward", got, (x,), layout=non_c and not leaves_to_numpy(x)):
        return
    assert isinstance(got, tuple) and len(got) == 4
    if a.shape[0] == 0:  # no rows: NumPy's argmax refuses the (0, 0) matrix, the kernel gives empty results
        return check_array(got[0], t, a.shape, "logsoftmax_forward")
    ctx = {}
    want = reference(vops.LogSoftmax, "forward", ctx, as_seen(x, t))
    if t == F64:
        for k, (g, w) in enumerate(zip(got, (want, ctx["expd"], ctx["sumd"]))):
            assert_exact(g, w, t, f"logsoftmax_forward [{k}]")
        np.testing.assert_array_equal(got[3], ctx["idxs"])
        return
    rx = ref(x, t)
    if not np.isfinite(rx).all():
        return check_array(got[0], t, rx.shape, "logsoftmax_forward")  # specials: shape and dtype
    # y = (x - m) - log(sum exp(x - m)): each of the two terms is off by a few ulps of its own size
    scale = np.abs(rx - rx.max(axis=1, keepdims=True)) + np.log(max(a.shape[1], 1)) + 1
    assert_close(got[0], want, t, "logsoftmax_forward", 8 * float(np.finfo(t).eps) * scale)


@checks("logsoftmax_backward")
@settings()
@given(data=st.data())
def test_logsoftmax_backward(data):
    """Against the Reference's backward on the context its forward made (expd, sumd, idxs), go in any
    layout and dtype."""
    x = finite_matrix(data.draw, -30.0, 5.0)
    if 0 in arr(x).shape:
        return  # NumPy's max refuses empty rows; no rows, nothing to differentiate
    go = data.draw(operand(data.draw(maybe_same(arr(x).shape, MATRIX)), "moderate"))
    ctx = {}
    reference(vops.LogSoftmax, "forward", ctx, ref(x, compute_dtype(x)))
    if arr(go).shape != arr(x).shape:
        return refused("logsoftmax_backward", "LogSoftmax", go, ctx["expd"], ctx["sumd"], ctx["idxs"])
    args = (go, ctx["expd"], ctx["sumd"], ctx["idxs"])
    got = kernel("logsoftmax_backward", "LogSoftmax", *args)
    if check_declined("logsoftmax_backward", got, args[:3], same_float=True):
        return
    t = compute_dtype(*args[:3])
    want = reference(vops.LogSoftmax, "backward", dict(ctx), as_seen(go, t))
    if t == F64:
        return assert_exact(got, want, t, "logsoftmax_backward")
    rgo = ref(go, t)
    if not np.isfinite(rgo).all():
        return check_array(got, t, rgo.shape, "logsoftmax_backward")
    e = ctx["expd"] / ctx["sumd"][:, None]
    bound = (e + 1) * (sum_bound(rgo, t, axis=1, keepdims=True) + 8 * float(np.finfo(t).eps)
                       * (np.abs(rgo).sum(axis=1, keepdims=True) + np.abs(rgo)))
    assert_close(got, want, t, "logsoftmax_backward", bound)


@checks("logceloss_forward")
@settings()
@given(data=st.data())
def test_logceloss_forward(data):
    lp = matrix_or_not(data.draw, "sum")
    a = arr(lp)
    rows, cols = (a.shape if a.ndim == 2 else (0, 0))
    targets = data.draw(index_array(rows, -cols - 1, cols))
    k = arr(targets)
    valid = (a.ndim == 2 and is_index(k) and k.ndim == 1 and k.size == rows
             and bool(np.all((k >= -cols) & (k < cols))))
    if not valid:
        return refused("logceloss_forward", "LogCELoss", lp, targets)
    got = kernel("logceloss_forward", "LogCELoss", lp, targets)
    if check_declined("logceloss_forward", got, (lp,)):
        return
    t = compute_dtype(lp)
    want = reference(vops.LogCELoss, "forward", {}, as_seen(lp, t), targets=k.astype(np.intp))
    rlp = ref(lp, t)
    picked = rlp[np.arange(rows), k.astype(np.intp)] if rows else np.zeros(0, t)
    check(got, want, t, "logceloss_forward", sum_bound(picked, t) if t == F32 else 0.0)


@checks("logceloss_backward")
@settings()
@given(data=st.data())
def test_logceloss_backward(data):
    shape = data.draw(shape_argument(2))
    rows, cols = drawable(shape)
    go = data.draw(operand(data.draw(maybe_same((), shapes(max_dims=1)))))
    targets = data.draw(index_array(rows, -cols - 1, cols))
    k = arr(targets)
    valid = (shape_ok(shape, 2) and arr(go).size == 1 and is_index(k) and k.ndim == 1 and k.size == int(shape[0])
             and bool(np.all((k >= -cols) & (k < cols))))
    if not valid:
        return refused("logceloss_backward", "LogCELoss", go, targets, shape)
    got = kernel("logceloss_backward", "LogCELoss", go, targets, shape)
    if check_declined("logceloss_backward", got, (go,)):
        return
    t = compute_dtype(go)
    ctx = {"targets": k.astype(np.intp), "shape": tuple(int(d) for d in shape)}
    want = reference(vops.LogCELoss, "backward", ctx, ref(go, t).reshape(()))
    assert_exact(got, want, t, "logceloss_backward")


# ------------------------------------------------------------------------------------------------
# The graph machinery (vgrad/core.py) on random graphs, against central differences
# ------------------------------------------------------------------------------------------------

GRAPH_OPS = [("unary", vops.Sigmoid), ("unary", vops.Exp), ("unary", vops.Id), ("unary", vops.ReLU),
             ("binary", vops.Add), ("binary", vops.Sub), ("binary", vops.Multiply), ("two", None)]


def _twice(x, trace):
    """A Python op with two outputs (so that random graphs hold multi-output ops too) that records the order
    in which backward reaches it."""

    class Twice(vops.Op):
        @staticmethod
        def forward(context, x):
            context["id"] = len(trace)
            trace.append(("forward", context["id"]))
            return x * 0.5, x * 2.0

        @staticmethod
        def backward(context, ga, gb):
            trace.append(("backward", context["id"]))
            return 0.5 * ga + 2.0 * gb

    return Twice.do_forward(x)


def _random_graph(plan, trace, values=None):
    """Builds the graph a plan describes: each step applies an op to earlier nodes (by index)."""
    import vgrad as vg

    values = values if values is not None else [np.linspace(-1.0, 1.0, 3) + i for i in range(3)]
    leaves = [vg.TensorNode(v.copy()) for v in values]
    nodes = list(leaves)
    for kind, op, picks, frozen in plan:
        args = [nodes[p % len(nodes)] for p in picks]
        if kind == "unary":
            nodes.append(op.do_forward(args[0]))
        elif kind == "binary":
            nodes.append(op.do_forward(args[0], args[1]))
        else:
            nodes.extend(_twice(args[0], trace))
        if frozen:
            nodes[-1].requires_grad = False
    loss = vg.Sum.do_forward(nodes[-1] * nodes[len(nodes) // 2])
    return leaves, nodes, loss


# a step of a plan: (kind, op, two picks among the nodes so far, whether the new node gets requires_grad False)
PLAN_STEP = st.tuples(st.sampled_from(GRAPH_OPS), st.lists(st.integers(0, 50), min_size=2, max_size=2),
                      st.integers(0, 9).map(lambda v: v == 0)).map(lambda s: (s[0][0], s[0][1], s[1], s[2]))


@settings()
@given(plan=st.lists(PLAN_STEP, min_size=1, max_size=12))
def test_graph_machinery_on_random_graphs(plan):
    """Random graphs (diamonds, shared inputs, two-output ops, nodes with requires_grad False): backward gives
    the leaves the derivatives central differences give (through the nodes that require a gradient), visits
    every node once per parent below the loss, runs each op's backward once; zero_grad zeroes every gradient;
    clear cuts every link. (tests/test_graph_engine.py runs the graph tests with core.py as Python too.)"""
    trace = []
    leaves, nodes, loss = _random_graph(plan, trace)
    nodes = nodes + [loss]
    with np.errstate(all="ignore"):
        try:
            loss.backward()
        except ValueError:  # every path to the loss passes a node with requires_grad False
            assert not loss.requires_grad or all(not n.requires_grad for n in nodes[-2:])
            return
    backward_calls = [entry for entry in trace if entry[0] == "backward"]
    assert len(backward_calls) == len(set(backward_calls))  # each two-output op ran its backward at most once
    frozen_anywhere = any(not n.requires_grad for n in nodes)
    if not frozen_anywhere:
        values = [leaf.value.copy() for leaf in leaves]
        at = float(loss.value)
        for i, leaf in enumerate(leaves):
            for j in range(leaf.value.size):
                numeric = []
                for sign in (1.0, -1.0):
                    shifted = [v.copy() for v in values]
                    shifted[i][j] += sign * 1e-6
                    with np.errstate(all="ignore"):
                        numeric.append(float(_random_graph(plan, [], shifted)[2].value))
                right, left = (numeric[0] - at) / 1e-6, (at - numeric[1]) / 1e-6
                if not (np.isfinite(right) and np.isfinite(left)) or abs(right - left) > 1e-3 * max(1.0, abs(right)):
                    continue  # a kink (ReLU at 0) or an overflow at this point: no derivative to compare
                derivative = (numeric[0] - numeric[1]) / 2e-6
                assert abs(leaf.grad[j] - derivative) <= 1e-4 * max(1.0, abs(derivative)), (i, j)
    import vgrad.core as core
    below = core._nodes_below(loss)  # (an output of a two-output op that the loss does not use is not below it)
    loss.zero_grad()
    assert all(float(np.abs(n.grad).sum()) == 0.0 for n in below)
    loss.clear()
    assert all(n.source is None and n.visits == 0 and n.numparents == 0 for n in below)


# ------------------------------------------------------------------------------------------------
# Element-wise
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNARY_FORWARD))
@settings()
@given(data=st.data())
def test_unary_forward(name, data):
    op, exact = KERNEL_OWNERS[name], UNARY_FORWARD[name]
    x = data.draw(operand(shapes()))
    got = kernel(name, op.__name__, x)
    if check_declined(name, got, (x,)):
        return
    t = compute_dtype(x)
    if t == F64:
        return assert_exact(got, reference(op, "forward", {}, as_seen(x, t)), t, name, contiguous=False)
    want = reference(op, "forward", {}, ref(x, t))
    (assert_exact if exact else assert_close)(got, want, t, name)


@pytest.mark.parametrize("name", sorted(UNARY_BACKWARD))
@settings()
@given(data=st.data())
def test_unary_backward(name, data):
    op, (key, several) = KERNEL_OWNERS[name], UNARY_BACKWARD[name]
    shape = data.draw(shapes())
    go, s = data.draw(operand(shape)), data.draw(operand(data.draw(maybe_same(shape))))
    if arr(go).shape != arr(s).shape:
        return refused(name, op.__name__, go, s)
    got = kernel(name, op.__name__, go, s)
    if check_declined(name, got, (go, s), same_float=several):
        return
    t = compute_dtype(go, s)
    assert_exact(got, reference(op, "backward", {key: as_seen(s, t)}, as_seen(go, t)), t, name)


@checks("neg_forward")
@settings()
@given(data=st.data())
def test_neg_forward(data):
    go = data.draw(operand(shapes()))
    got = kernel("neg_forward", "Sub", go)
    if check_declined("neg_forward", got, (go,)):
        return
    t = compute_dtype(go)
    _, want = reference(vops.Sub, "backward", {}, as_seen(go, t))
    assert_exact(got, want, t, "neg_forward")


@pytest.mark.parametrize("name", sorted(BINARY_FORWARD))
@settings()
@given(data=st.data())
def test_binary_forward(name, data):
    op = KERNEL_OWNERS[name]
    shape = data.draw(shapes())
    a, b = data.draw(operand(shape)), data.draw(operand(data.draw(maybe_same(shape))))
    if arr(a).shape != arr(b).shape:
        return refused(name, op.__name__, a, b)
    got = kernel(name, op.__name__, a, b)
    if check_declined(name, got, (a, b)):
        return
    t = compute_dtype(a, b)
    assert_exact(got, reference(op, "forward", {}, as_seen(a, t), as_seen(b, t)), t, name)


@pytest.mark.parametrize("name", sorted(BINARY_BACKWARD))
@settings()
@given(data=st.data())
def test_binary_backward(name, data):
    op, ((key_a, key_b), several) = KERNEL_OWNERS[name], BINARY_BACKWARD[name]
    shape = data.draw(shapes())
    go, a, b = (data.draw(operand(data.draw(maybe_same(shape)))) for _ in range(3))
    if not arr(go).shape == arr(a).shape == arr(b).shape:
        return refused(name, op.__name__, go, a, b)
    got = kernel(name, op.__name__, go, a, b)
    if check_declined(name, got, (go, a, b), same_float=several):
        return
    t = compute_dtype(go, a, b)
    assert isinstance(got, tuple) and len(got) == 2
    want = reference(op, "backward", {key_a: as_seen(a, t), key_b: as_seen(b, t)}, as_seen(go, t))
    for k in range(2):
        assert_exact(got[k], want[k], t, f"{name} [{k}]")


# ------------------------------------------------------------------------------------------------
# Reductions
# ------------------------------------------------------------------------------------------------


@checks("sum_forward")
@settings()
@given(data=st.data())
def test_sum_forward(data):
    x = data.draw(operand(shapes(), "sum"))
    got = kernel("sum_forward", "Sum", x)
    if check_declined("sum_forward", got, (x,)):
        return
    t = compute_dtype(x)
    want = reference(vops.Sum, "forward", {}, as_seen(x, t))
    check(got, want, t, "sum_forward", sum_bound(ref(x, t), t))


@st.composite
def shape_argument(draw, ndim=None):
    """A shape as vgrad's ops store it (tuple, list or int array), or a bad one: negative or huge."""
    n = draw(st.integers(0, 3)) if ndim is None else ndim
    if ndim is not None and not draw(st.integers(0, 5)):
        n = draw(st.integers(0, 3))  # the wrong number of dimensions
    dims = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    if dims and not draw(st.integers(0, 6)):
        dims[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, -2**40, 2**40, 2**62, 2**63 - 1]))
    form = draw(st.sampled_from(["tuple", "list", "array"]))
    return tuple(dims) if form == "tuple" else dims if form == "list" else np.array(dims, dtype=np.int64)


def drawable(shape):
    """(rows, cols) of a matrix shape argument, clamped to sizes we can make arrays of."""
    dims = [min(max(int(d), 0), 6) for d in shape] + [0, 0]
    return dims[0], dims[1]


def is_index(k):
    """Integer indices (an empty list is float64 to NumPy, so it is not)."""
    return k.dtype.kind in "iu"


def shape_ok(shape, ndim=None):
    """A valid shape for an allocation: the right length, non-negative, and either small or holding no
    element at all (a zero-size array may have a huge dimension, if NumPy can describe it)."""
    dims = [int(d) for d in shape]
    if (ndim is not None and len(dims) != ndim) or any(d < 0 for d in dims):
        return False
    if 0 in dims:
        try:
            np.empty(dims)
        except ValueError:
            return False
        return True
    return all(d <= 2**20 for d in dims)


@checks("sum_backward")
@settings()
@given(data=st.data())
def test_sum_backward(data):
    go = data.draw(operand(data.draw(st.sampled_from([(), (1,), (1, 1), (2,), (0,)]))))
    xsize = data.draw(shape_argument())
    if arr(go).size != 1 or not shape_ok(xsize):
        return refused("sum_backward", "Sum", go, xsize)
    got = kernel("sum_backward", "Sum", go, xsize)
    if check_declined("sum_backward", got, (go,)):
        return
    t = compute_dtype(go)
    want = reference(vops.Sum, "backward", {"xsize": tuple(int(d) for d in xsize)}, ref(go, t).reshape(()))
    assert_exact(got, want, t, "sum_backward")


def matrix_or_not(draw, kind="any"):
    """Mostly a matrix; sometimes another number of dimensions (an invalid call)."""
    shape = draw(MATRIX) if draw(st.integers(0, 6)) else draw(shapes(max_dims=3))
    return draw(operand(shape, kind))


@checks("rowsum_forward")
@settings()
@given(data=st.data())
def test_rowsum_forward(data):
    x = matrix_or_not(data.draw, "sum")
    if arr(x).ndim != 2:
        return refused("rowsum_forward", "RowSum", x)
    got = kernel("rowsum_forward", "RowSum", x)
    if check_declined("rowsum_forward", got, (x,)):
        return
    t = compute_dtype(x)
    want = reference(vops.RowSum, "forward", {}, as_seen(x, t))
    check(got, want, t, "rowsum_forward", sum_bound(ref(x, t), t, axis=1))


@checks("rowsum_backward")
@settings()
@given(data=st.data())
def test_rowsum_backward(data):
    xshape = data.draw(shape_argument(2))
    rows, _ = drawable(xshape)
    go = data.draw(operand(data.draw(maybe_same((rows,), shapes(max_dims=2)))))
    if not shape_ok(xshape, 2) or arr(go).shape != (int(xshape[0]),):
        return refused("rowsum_backward", "RowSum", go, xshape)
    got = kernel("rowsum_backward", "RowSum", go, xshape)
    if check_declined("rowsum_backward", got, (go,)):
        return
    t = compute_dtype(go)
    want = reference(vops.RowSum, "backward", {"xshape": tuple(int(d) for d in xshape)}, ref(go, t))
    assert_exact(got, want, t, "rowsum_backward")


@checks("rowmax_forward")
@settings()
@given(data=st.data())
def test_rowmax_forward(data):
    x = matrix_or_not(data.draw)
    a = arr(x)
    if a.ndim != 2 or (a.shape[1] == 0 and a.shape[0] > 0):
        return refused("rowmax_forward", "RowMax", x)
    got = kernel("rowmax_forward", "RowMax", x)
    if check_declined("rowmax_forward", got, (x,)):
        return
    t = compute_dtype(x)
    ctx = {"idxs": np.zeros(0, dtype=np.intp)}
    if a.shape[0]:  # np.argmax refuses the (0, 0) matrix, whose zero rows have (empty) maxima
        want = reference(vops.RowMax, "forward", ctx, as_seen(x, t))
    else:
        want = np.zeros(0, dtype=t)
    assert isinstance(got, tuple) and len(got) == 2
    assert_exact(got[0], want, t, "rowmax_forward")  # max is exact; the sign of a tie of zeros is np.amax's
    np.testing.assert_array_equal(got[1], ctx["idxs"], err_msg="rowmax_forward: the indices of the maxima")


@checks("rowmax_backward")
@settings()
@given(data=st.data())
def test_rowmax_backward(data):
    xshape = data.draw(shape_argument(2))
    rows, cols = drawable(xshape)
    go = data.draw(operand(data.draw(maybe_same((rows,), shapes(max_dims=2)))))
    idxs = data.draw(index_array(rows, -2, cols + 1, column=True))
    k = arr(idxs)
    valid = (shape_ok(xshape, 2) and arr(go).shape == (rows,) and is_index(k) and k.size == rows
             and bool(np.all((k >= 0) & (k < cols))))
    if not valid:
        return refused("rowmax_backward", "RowMax", go, idxs, xshape)
    got = kernel("rowmax_backward", "RowMax", go, idxs, xshape)
    if check_declined("rowmax_backward", got, (go,)):
        return
    t = compute_dtype(go)
    ctx = {"xshape": tuple(int(d) for d in xshape), "idxs": k.reshape(-1).astype(np.intp)}
    assert_exact(got, reference(vops.RowMax, "backward", ctx, ref(go, t)), t, "rowmax_backward")


@checks("normalize_forward")
@settings()
@given(data=st.data())
def test_normalize_forward(data):
    # Normalize's domain is non-negative (softmax): there the sums have no cancellation to amplify.
    x = matrix_or_not(data.draw, "positive")
    if arr(x).ndim != 2:
        return refused("normalize_forward", "Normalize", x)
    got = kernel("normalize_forward", "Normalize", x)
    if check_declined("normalize_forward", got, (x,)):
        return
    t = compute_dtype(x)
    ctx = {}
    want = reference(vops.Normalize, "forward", ctx, as_seen(x, t))
    assert isinstance(got, tuple) and len(got) == 2
    n = arr(x).shape[1]
    eps = float(np.finfo(t).eps)
    check(got[1], ctx["sumd"], t, "normalize_forward sumd", sum_bound(ref(x, t), t, axis=1, keepdims=True))
    with np.errstate(all="ignore"):
        check(got[0], want, t, "normalize_forward", 2 * n * eps * np.abs(want))


@checks("normalize_backward")
@settings()
@given(data=st.data())
def test_normalize_backward(data):
    shape = data.draw(MATRIX) if data.draw(st.integers(0, 6)) else data.draw(shapes(max_dims=3))
    go, x = data.draw(operand(shape, "moderate")), data.draw(operand(data.draw(maybe_same(shape)), "moderate"))
    rows = shape[0] if len(shape) else 1
    dshape = data.draw(st.sampled_from([(rows, 1), (rows, 1), (rows + 1, 1), ()]))
    # sums away from 0, or 0/inf/nan: the correction sum then stays finite in every order
    divisors = st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan]) | st.floats(1e-3, 1e6) | st.floats(-1e6, -1e-3)
    sumd = to_layout(data.draw(hnp.arrays(np.float64, dshape, elements=divisors)).astype(
        data.draw(st.sampled_from([np.float32, np.float64]))), data.draw(st.sampled_from(LAYOUT_NAMES)))
    g, a = arr(go), arr(x)
    if not (a.ndim == 2 and g.shape == a.shape and arr(sumd).size == a.shape[0]):
        return refused("normalize_backward", "Normalize", go, x, sumd)
    got = kernel("normalize_backward", "Normalize", go, x, sumd)
    t = compute_dtype(go, x, sumd)
    non_c = any(isinstance(v, np.ndarray) and not v.flags.c_contiguous for v in (go, x))
    if check_declined("normalize_backward", got, (go, x, sumd), same_float=True,
                      layout=t == F64 and non_c and not leaves_to_numpy(go, x, sumd)):
        return
    if t == F64:
        S = as_seen(sumd, t)
        S = S.reshape(-1, 1) if S.ndim != 2 else S
        want = reference(vops.Normalize, "backward", {"x": as_seen(x, t), "sumd": S}, as_seen(go, t))
        return assert_exact(got, want, t, "normalize_backward")
    G, X, S = ref(go, t), ref(x, t), ref(sumd, t).reshape(-1, 1)
    want = reference(vops.Normalize, "backward", {"x": X, "sumd": S}, G)
    with np.errstate(all="ignore"):
        bound = sum_bound(G * X / (S * S), t, axis=1, keepdims=True)
    assert_close(got, want, t, "normalize_backward", bound)


# ------------------------------------------------------------------------------------------------
# Shapes
# ------------------------------------------------------------------------------------------------

DIMS = st.integers(-5, 5) | st.sampled_from([2**62, -2**62, 2**70])


@checks("expand_forward")
@settings()
@given(data=st.data())
def test_expand_forward(data):
    shape = list(data.draw(shapes()))
    dim = data.draw(DIMS)
    if shape and -len(shape) <= dim < len(shape) and data.draw(st.integers(0, 4)):
        shape[dim] = 1  # usually a singleton there
    x = data.draw(operand(tuple(shape)))
    repeats = data.draw(st.integers(0, 4) | st.sampled_from([-1, 2**62, 2**70]))
    a = arr(x)
    valid = (-a.ndim <= dim < a.ndim and a.shape[dim] == 1 and 0 <= repeats <= 4)
    if not valid:
        return refused("expand_forward", "Expand", x, dim, repeats)
    got = kernel("expand_forward", "Expand", x, dim, repeats)
    if check_declined("expand_forward", got, (x,)):
        return
    t = compute_dtype(x)
    want = reference(vops.Expand, "forward", {}, as_seen(x, t), dim=dim, repeats=repeats)
    assert_exact(got, want.astype(t), t, "expand_forward")


@checks("expand_backward")
@settings()
@given(data=st.data())
def test_expand_backward(data):
    go = data.draw(operand(shapes(), "sum"))
    dim = data.draw(DIMS)
    g = arr(go)
    if not -g.ndim <= dim < g.ndim:
        return refused("expand_backward", "Expand", go, dim)
    got = kernel("expand_backward", "Expand", go, dim)
    if check_declined("expand_backward", got, (go,)):
        return
    t = compute_dtype(go)
    want = reference(vops.Expand, "backward", {"dim": dim}, as_seen(go, t))
    check(got, want, t, "expand_backward", sum_bound(ref(go, t), t, axis=dim, keepdims=True))


@checks("identity")
@settings()
@given(data=st.data())
def test_identity(data):
    x = data.draw(operand(shapes()))
    assert C.identity(x) is x


def check_view(got, x, want, what):
    """A view (of x's own array when x is one) holding exactly the reference's values, x's dtype kept."""
    a = arr(x)
    assert isinstance(got, np.ndarray) and got.dtype == a.dtype and got.shape == want.shape, what
    assert np.array_equal(got, want, equal_nan=True), what
    if isinstance(x, np.ndarray) and x.size:
        assert np.shares_memory(got, x), f"{what}: not a view of the input"


@checks("squeeze")
@settings()
@given(data=st.data())
def test_squeeze(data):
    shape = list(data.draw(shapes()))
    dim = data.draw(DIMS)
    if shape and -len(shape) <= dim < len(shape) and data.draw(st.integers(0, 4)):
        shape[dim] = 1
    x = data.draw(operand(tuple(shape)))
    a = arr(x)
    if not (-a.ndim <= dim < a.ndim and a.shape[dim] == 1):
        return refused("squeeze", "Squeeze", x, dim)
    check_view(C.squeeze(x, dim), x, reference(vops.Squeeze, "forward", {}, a, dim), "squeeze")


@checks("unsqueeze")
@settings()
@given(data=st.data())
def test_unsqueeze(data):
    x = data.draw(operand(shapes()))
    dim = data.draw(DIMS)
    a = arr(x)
    if not -a.ndim - 1 <= dim <= a.ndim:
        return refused("unsqueeze", "Unsqueeze", x, dim)
    check_view(C.unsqueeze(x, dim), x, reference(vops.Unsqueeze, "forward", {}, a, dim), "unsqueeze")


def test_unsqueeze_at_the_dimension_limit():
    x = np.zeros((1,) * 64)  # NumPy 2's maximum number of dimensions
    refused("unsqueeze", "Unsqueeze", x, 0)
    assert C.squeeze(x, 5).shape == (1,) * 63


# ------------------------------------------------------------------------------------------------
# Select
# ------------------------------------------------------------------------------------------------


@checks("select_forward")
@settings()
@given(data=st.data())
def test_select_forward(data):
    x = matrix_or_not(data.draw)
    a = arr(x)
    rows, cols = (a.shape + (0, 0))[:2] if a.ndim >= 2 else (a.shape[0] if a.ndim else 0, 0)
    indices = data.draw(index_array(rows, -cols - 1, cols, column=True))
    k = arr(indices)
    valid = a.ndim == 2 and is_index(k) and k.ndim == 1 and k.size == rows and bool(np.all((k >= -cols) & (k < cols)))
    if not valid:
        return refused("select_forward", "Select", x, indices)
    got = kernel("select_forward", "Select", x, indices)
    if check_declined("select_forward", got, (x,)):
        return
    t = compute_dtype(x)
    want = reference(vops.Select, "forward", {}, as_seen(x, t), indices=k.astype(np.intp))
    assert_exact(got, want.astype(t), t, "select_forward")


@checks("select_backward")
@settings()
@given(data=st.data())
def test_select_backward(data):
    xshape = data.draw(shape_argument(2))
    rows, cols = drawable(xshape)
    go = data.draw(operand(data.draw(maybe_same((rows,), shapes(max_dims=2)))))
    indices = data.draw(index_array(rows, -cols - 1, cols, column=True))
    k = arr(indices)
    valid = (shape_ok(xshape, 2) and arr(go).shape == (rows,) and is_index(k) and k.size == rows
             and bool(np.all((k >= -cols) & (k < cols))))
    if not valid:
        return refused("select_backward", "Select", go, indices, xshape)
    got = kernel("select_backward", "Select", go, indices, xshape)
    if check_declined("select_backward", got, (go,)):
        return
    t = compute_dtype(go)
    ctx = {"input_size": tuple(int(d) for d in xshape), "indices": k.reshape(-1, 1).astype(np.intp)}
    assert_exact(got, reference(vops.Select, "backward", ctx, ref(go, t)), t, "select_backward")


# ------------------------------------------------------------------------------------------------
# Matrix products
# ------------------------------------------------------------------------------------------------

SIDE = st.integers(0, 5)


@st.composite
def matrices(draw, *pairs):
    """Operands whose shapes are given as pairs of size names ('n', 'k', ...), sometimes off by one or not
    2-D (invalid calls)."""
    sizes = {}
    out = []
    for pair in pairs:
        shape = tuple(sizes.setdefault(s, draw(SIDE)) for s in pair)
        if not draw(st.integers(0, 10)):
            shape = draw(shapes(max_dims=3))
        elif not draw(st.integers(0, 10)):
            shape = (shape[0], shape[1] + 1)
        out.append(draw(operand(shape, "moderate")))
    return out


def dims_fit(objs, pairs):
    """Every operand is 2-D and the sizes named alike agree."""
    sizes = {}
    for o, pair in zip(objs, pairs):
        a = arr(o)
        if a.ndim != 2:
            return False
        for s, d in zip(pair, a.shape):
            if sizes.setdefault(s, d) != d:
                return False
    return True


@pytest.mark.parametrize("name", sorted(MATMUL))
@settings()
@given(data=st.data())
def test_matrix_products(name, data):
    op, (operands, output, keys) = KERNEL_OWNERS[name], MATMUL[name]
    pairs = operands if keys is None else (output,) + operands  # a backward kernel takes go first
    objs = data.draw(matrices(*pairs))
    if not dims_fit(objs, pairs):
        return refused(name, op.__name__, *objs)
    with np.errstate(all="ignore"):  # np.matmul warns about NaN results, in vugrad too
        got = kernel(name, op.__name__, *objs)
    if check_declined(name, got, objs):
        return
    t = compute_dtype(*objs)
    R = [ref(o, t) for o in objs]
    G = [as_seen(o, t) for o in objs]
    if keys is None:
        want = reference(op, "forward", {}, *G)
        return check(got, want, t, name, named_product_bound(R, operands, output, t) if t == F32 else 0.0)
    go, p, q = R
    want = reference(op, "backward", {keys[0]: G[1], keys[1]: G[2]}, G[0])
    assert isinstance(got, tuple) and len(got) == 2
    # the gradient of each operand is the product of go with the other operand (for a @ b: go @ b.T, a.T @ go)
    bounds = (named_product_bound([go, q], (output, operands[1]), operands[0], t),
              named_product_bound([go, p], (output, operands[0]), operands[1], t))
    for k in range(2):
        check(got[k], want[k], t, f"{name} [{k}]", bounds[k] if t == F32 else 0.0)


# ------------------------------------------------------------------------------------------------
# Bad arguments, for every entry point
# ------------------------------------------------------------------------------------------------

CALLS = c_calls()
BAD_KINDS = {"arrays": BAD_ARRAYS, "indices": BAD_INDICES, "shapes": BAD_SHAPES, "ints": BAD_INTS}


def _bad_params():
    params = []
    for name in sorted(CALLS):
        call = CALLS[name]
        for role, table in BAD_KINDS.items():
            for pos in getattr(call, role):
                for kind in sorted(table):
                    params.append(pytest.param(name, pos, role, kind, id=f"{name}-{pos}-{kind}"))
    return params


@pytest.mark.parametrize("name,pos,role,kind", _bad_params())
def test_bad_argument_raises_type_error(name, pos, role, kind):
    """complex, object, string, bytes, datetime, structured, ragged, None ... in place of any one argument
    of a valid call: TypeError naming the op."""
    call = CALLS[name]
    args = list(call.args)
    args[pos] = BAD_KINDS[role][kind](args[pos])
    refused(name, call.op, *args, exc=TypeError)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_wrong_number_of_arguments(name):
    call = CALLS[name]
    refused(name, call.op, *call.args[:-1], exc=TypeError)
    refused(name, call.op, *call.args, call.args[-1], exc=TypeError)


ANYTHING = (st.none() | st.integers(-3, 5) | st.sampled_from([2**62, -2**62, 2**70, 1.5, "mean", "x", b"x", ()])
            | st.tuples(st.integers(-1, 4), st.integers(-1, 4)) | shapes().flatmap(operand)
            | shapes().flatmap(lambda s: hnp.arrays(st.sampled_from(["c16", "O", "U3", "M8[s]"]), s)))


@pytest.mark.parametrize("name", sorted(CALLS))
@settings()
@given(data=st.data())
def test_any_arguments_never_crash(name, data):
    """Arguments of any kind and number, in the positions of a valid call (some left valid): a result or a
    clean exception, never a crash. This covers the CNN entry points too (their reference tests are in
    test_properties_cnn.py)."""
    call = CALLS[name]
    args = [data.draw(ANYTHING) if data.draw(st.booleans()) else a for a in call.args]
    args = args[:data.draw(st.integers(len(args) - 1, len(args)))] if data.draw(st.integers(0, 9)) == 0 else args
    try:
        getattr(C, name)(*args)
    except CLEAN:
        pass
    except Exception:  # add_into is `current += grad`: whatever += raises for these operands, it raises
        if name != "add_into":
            raise
