"""Property tests (hypothesis) on the CNN entry points of vgrad._C, against the NumPy References of
vgrad/nn_ops.py.

Each test draws small NCHW batches (batch 0-3, channels 1-3, sides 1-7), window/stride/padding values (some
invalid for the shape), dtypes and memory layouts (Fortran, transposed, strided, negative strides,
read-only, unaligned, byte-swapped, lists), runs the op's C-backed forward/backward through its Python
class and compares with Op.Reference on the same values cast to the compute dtype. An invalid call must
raise TypeError/ValueError/IndexError naming the op (checked by calling vgrad._C directly).

Which calls are valid is decided here from the spec. Tolerances: a few ulps plus the rounding bound of the
sums involved (n eps sum|terms|, twice), computed by running the Reference on absolute values. NaN/inf are
drawn only where the reference's answer does not depend on the summation order or the BLAS (pooling,
dropout); convolutions and batch statistics get finite values.
"""
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vgrad._C as C
from vgrad.nn_ops import (AvgPooling, BatchNormalization, Convolution, ConvolutionReLU, CrossEntropy, DropoutMask,
                          MaxPooling, Reshape)
from test_properties import (LAYOUT_NAMES, arr, assert_close, assert_exact, check_array, checks,
                             compute_dtype, elements, ref, reference, refused, same_special, shapes, to_layout)

# The entry points of vgrad._C checked here against their op's Reference: those of the tests marked @cnn_checks(...)
# (tests/test_registry.py fails when an op's kernel is neither here nor in test_properties.REFERENCE_CHECKED).
CNN_REFERENCE_CHECKED = set()


def cnn_checks(*names):
    return checks(*names, into=CNN_REFERENCE_CHECKED)

FLOATS = [np.float64, np.float32]
DTYPES = [np.float64, np.float64, np.float32, np.float32, np.float16, np.int16, np.bool_]


def image_shape(channels=None):
    return st.tuples(st.integers(0, 3), st.just(channels) if channels else st.integers(1, 3),
                     st.integers(1, 7), st.integers(1, 7))


def layouts(shape):
    """The layouts for an array of `shape`: not a nested list when it is empty (that loses the shape)."""
    return [n for n in LAYOUT_NAMES if n != "list" or 0 not in shape]


@st.composite
def operand(draw, shape, kind, dtypes):
    """As test_properties.operand, keeping the shape of empty arrays."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    a = draw(hnp.arrays(dtype, shape, elements=elements(dtype, kind)))
    return to_layout(a, draw(st.sampled_from(layouts(shape))))


def finite(shape, dtypes=DTYPES, lo=-100.0):
    """Finite values in [lo, 100], any of `dtypes`, any layout."""
    return _bounded(shape, dtypes, lo)


@st.composite
def _bounded(draw, shape, dtypes, lo):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if dtype.kind == "b":
        a = draw(hnp.arrays(dtype, shape))
    elif dtype.kind in "iu":
        a = draw(hnp.arrays(dtype, shape, elements=st.integers(int(lo), 100)))
    else:
        a = draw(hnp.arrays(np.float64, shape, elements=st.floats(lo, 100.0))).astype(dtype)
    return to_layout(a, draw(st.sampled_from(layouts(shape))))


def absolute(a):
    """|a| in float64 with non-finite values as 0 (for rounding bounds)."""
    a = np.abs(np.asarray(a, dtype=np.float64))
    a[~np.isfinite(a)] = 0
    return a


def eps(t):
    return float(np.finfo(t).eps)


def subnormals(a, t):
    """|a|'s float32 subnormal entries, 0 elsewhere (0 everywhere for float64): in float32 the products of
    im2col + BLAS count them as zeros (csrc/npyloops.c, vg_matmul), which the bounds must allow for."""
    a = absolute(a)
    return np.where(a < float(np.finfo(np.float32).tiny), a, 0) if np.dtype(t) == np.float32 else np.zeros_like(a)


# ------------------------------------------------------------------------------------------------
# Convolution
# ------------------------------------------------------------------------------------------------

WINDOW = st.integers(1, 4)


@st.composite
def conv_arguments(draw):
    n, c, h, w = draw(image_shape())
    o = draw(st.integers(1, 3))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2))) if draw(st.integers(0, 9)) else \
        (draw(st.integers(-2, 2)), draw(st.integers(-2, 2)))
    if draw(st.integers(0, 9)):  # usually a window that fits the padded image
        kh = draw(st.integers(1, min(4, h + 2 * max(padding[0], 0))))
        kw = draw(st.integers(1, min(4, w + 2 * max(padding[1], 0))))
    else:
        kh, kw = draw(WINDOW), draw(WINDOW)
    wc = c if draw(st.integers(0, 9)) else c + 1  # sometimes the filters expect other channels
    x = draw(finite((n, c, h, w)))
    filters = draw(finite((o, wc, kh, kw)))
    bias = None
    if draw(st.booleans()):
        bias = draw(finite((o,) if draw(st.integers(0, 9)) else (o + 1,)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if draw(st.integers(0, 9)) else \
        (draw(st.integers(-1, 3)), draw(st.integers(-1, 3)))
    return x, filters, bias, stride, padding


def conv_valid(x, w, b, stride, padding):
    (_, c, h, wd), (o, wc, kh, kw) = arr(x).shape, arr(w).shape
    return (c == wc and (b is None or arr(b).shape == (o,)) and min(stride) >= 1 and min(padding) >= 0
            and kh <= h + 2 * padding[0] and kw <= wd + 2 * padding[1])


@cnn_checks("conv2d", "conv2d_grad")
@settings()
@given(args=conv_arguments(), data=st.data())
def test_conv2d(args, data):
    x, w, b, stride, padding = args
    if not conv_valid(x, w, b, stride, padding):
        event("invalid call")
        return refused("conv2d", "Convolution", x, w, b, *stride, *padding)
    inputs = (x, w) if b is None else (x, w, b)
    t = compute_dtype(*inputs)
    X, W, B = (ref(v, t) if v is not None else None for v in (x, w, b))
    ctx, rctx = {}, {}
    got = Convolution.forward(ctx, x, w, b, stride=stride, padding=padding)
    want = reference(Convolution, "forward", rctx, X, W, B, stride=stride, padding=padding)
    k = W[0].size + 1
    bound = 2 * k * eps(t) * Convolution.Reference.forward(
        {}, absolute(X), absolute(W), None if b is None else absolute(B), stride=stride, padding=padding)
    for x_part, w_part in ((subnormals(X, t), absolute(W)), (absolute(X), subnormals(W, t))):
        bound = bound + Convolution.Reference.forward({}, x_part, w_part, stride=stride, padding=padding)
    assert_close(got, want, t, "conv2d", bound)

    # backward, from the forward's own context, with an upstream gradient of any dtype and layout
    go = data.draw(finite(want.shape))
    t2 = compute_dtype(go, ctx["x"], w)
    G = ref(go, t2)
    rctx2 = dict(rctx, x=rctx["x"].astype(t2), w=W.astype(t2))
    grads = Convolution.backward(ctx, go)
    wants = reference(Convolution, "backward", rctx2, G)
    assert len(grads) == len(wants) == (2 if b is None else 3)
    # each gradient is a sum of at most this many products; bound from the reference on |values|
    n_terms = W.size + G.size + 1
    bounds = Convolution.Reference.backward(dict(rctx2, x=absolute(rctx2["x"]), w=absolute(W)), absolute(G))
    flushed = [Convolution.Reference.backward(dict(rctx2, x=xp, w=wp), gp) for xp, wp, gp in (
        (subnormals(rctx2["x"], t2), absolute(W), absolute(G)), (absolute(rctx2["x"]), subnormals(W, t2), absolute(G)),
        (absolute(rctx2["x"]), absolute(W), subnormals(G, t2)))]
    for k, (g, r, bd) in enumerate(zip(grads, wants, bounds)):
        assert_close(g, r, t2, f"conv2d_grad [{k}]", 2 * n_terms * eps(t2) * bd + sum(f[k] for f in flushed))


@cnn_checks("conv2d_relu", "conv2d_relu_grad")
@settings()
@given(args=conv_arguments(), data=st.data())
def test_conv2d_relu(args, data):
    """The fused op gives the two ops' bits (Convolution's C kernels, then ReLU's), forward and backward, on the
    direct and the im2col paths alike; and, like Convolution, the Reference's values within rounding."""
    x, w, b, stride, padding = args
    if not conv_valid(x, w, b, stride, padding):
        event("invalid call")
        return refused("conv2d_relu", "ConvolutionReLU", x, w, b, *stride, *padding)
    ctx, plain, rctx = {}, {}, {}
    got = ConvolutionReLU.forward(ctx, x, w, b, stride=stride, padding=padding)
    conv = Convolution.forward(plain, x, w, b, stride=stride, padding=padding)
    t = conv.dtype
    assert_exact(got, C.relu_forward(conv), t, "conv2d_relu against relu_forward(conv2d)")
    assert ctx["y"] is got and set(ctx) == set(plain) | {"y"}

    inputs = (x, w) if b is None else (x, w, b)
    X, W, B = (ref(v, compute_dtype(*inputs)) if v is not None else None for v in (x, w, b))
    want = reference(ConvolutionReLU, "forward", rctx, X, W, B, stride=stride, padding=padding)
    assert set(rctx) == set(ctx)
    bound = 2 * (W[0].size + 1) * eps(t) * Convolution.Reference.forward(
        {}, absolute(X), absolute(W), None if b is None else absolute(B), stride=stride, padding=padding)
    for x_part, w_part in ((subnormals(X, t), absolute(W)), (absolute(X), subnormals(W, t))):
        bound = bound + Convolution.Reference.forward({}, x_part, w_part, stride=stride, padding=padding)
    assert_close(got, want, t, "conv2d_relu", bound)  # (a ReLU moves no value further apart)

    go = data.draw(finite(got.shape))
    grads = ConvolutionReLU.backward(ctx, go)
    t2 = compute_dtype(go, x, w, conv)  # the kernels' type: of the gradient's operands, y included
    unfused = Convolution.backward(plain, C.relu_backward(arr(go).astype(t2), conv.astype(t2)))
    assert len(grads) == len(unfused) == (2 if b is None else 3)
    for k, (g, u) in enumerate(zip(grads, unfused)):
        assert_exact(g, u, u.dtype, f"conv2d_relu_grad [{k}] against conv2d_grad(relu_backward(go, y))")
    # the Reference's gradient, through the ReLU of the kernels' own y (where y is near 0, a rounding of the
    # convolution decides which side of the ReLU a value lies)
    G = ref(go, t2)
    rctx2 = dict(rctx, x=rctx["x"].astype(t2), w=W.astype(t2), y=got)
    wants = reference(ConvolutionReLU, "backward", rctx2, G)
    masked = np.where(got > 0, absolute(G), 0)
    bounds = Convolution.Reference.backward(dict(rctx2, x=absolute(rctx2["x"]), w=absolute(W)), masked)
    flushed = [Convolution.Reference.backward(dict(rctx2, x=xp, w=wp), gp) for xp, wp, gp in (
        (subnormals(rctx2["x"], t2), absolute(W), masked), (absolute(rctx2["x"]), subnormals(W, t2), masked),
        (absolute(rctx2["x"]), absolute(W), subnormals(masked, t2)))]
    n_terms = W.size + G.size + 1
    for k, (g, r, bd) in enumerate(zip(grads, wants, bounds)):
        assert_close(g, r, t2, f"conv2d_relu_grad [{k}]", 2 * n_terms * eps(t2) * bd + sum(f[k] for f in flushed))


@settings()
@given(data=st.data())
def test_conv2d_relu_grad_refuses_an_output_of_another_shape(data):
    n, c, h, w = data.draw(image_shape())
    go = np.ones((n, 2, h, w))
    y = np.ones((n, 2, h, w + data.draw(st.integers(1, 2))))
    refused("conv2d_relu_grad", "ConvolutionReLU", go, np.ones((n, c, h, w)), np.ones((2, c, 1, 1)), 1, 1, 0, 0,
            True, True, y)


@cnn_checks("num_threads")
@settings()
@given(args=conv_arguments(), data=st.data())
def test_conv2d_gives_the_same_bits_whatever_the_thread_count(args, data):
    """num_threads(n) changes who computes, not what: each thread owns its outputs and the sums over the
    batch are added in a fixed order, so 1 and 3 threads give the same bits, forward and backward."""
    x, w, b, stride, padding = args
    if not conv_valid(x, w, b, stride, padding):
        return
    x, w = arr(x), arr(w)
    b = None if b is None else arr(b)
    go = None
    results = []
    before = C.num_threads(0)
    try:
        for threads in (1, 3):
            assert C.num_threads(threads) >= 1 and C.num_threads(0) == threads
            y = C.conv2d(x, w, b, *stride, *padding)
            if go is None:
                go = data.draw(finite(y.shape))
            results.append((y,) + tuple(C.conv2d_grad(go, x, w, *stride, *padding, b is not None, True)))
            yr = C.conv2d_relu(x, w, b, *stride, *padding)
            results[-1] += (yr,) + tuple(C.conv2d_relu_grad(go, x, w, *stride, *padding, b is not None, True, yr))
    finally:
        C.num_threads(before)
    for one, three in zip(*results):
        assert_exact(three, one, one.dtype, "conv2d with 3 threads against 1")


@settings()
@given(data=st.data())
def test_conv2d_grad_bad_shapes(data):
    """go, x or the filters that do not belong together: a clean error naming the op."""
    n, c, h, w = data.draw(image_shape())
    kh, kw = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    o = data.draw(st.integers(1, 3))
    oh, ow = h - kh + 1, w - kw + 1
    shapes_ok = [(n, o, oh, ow), (n, c, h, w), (o, c, kh, kw)]
    which = data.draw(st.integers(0, 3))
    drawn = [list(s) for s in shapes_ok]
    if which < 2:
        drawn[which][-1] += data.draw(st.integers(1, 2))  # a gradient or an image of another size
    elif which == 2:
        drawn[2][1] += 1  # filters of other channels than the images
    else:
        drawn[0][1] += 1  # a gradient of other channels than the filters' outputs
    go, x, filters = (np.ones(s, dtype=data.draw(st.sampled_from(FLOATS))) for s in drawn)
    refused("conv2d_grad", "Convolution", go, x, filters, 1, 1, 0, 0, False, True)


# ------------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------------


@st.composite
def pool_arguments(draw, kind):
    shape = draw(image_shape())
    x = draw(operand(shape, kind, DTYPES))
    if draw(st.integers(0, 9)):  # usually a window that fits
        kernel = (draw(st.integers(1, min(4, shape[2]))), draw(st.integers(1, min(4, shape[3]))))
        stride = None if draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    else:
        kernel = (draw(st.integers(-1, 9)), draw(st.integers(-1, 9)))
        stride = None if draw(st.booleans()) else (draw(st.integers(-1, 3)), draw(st.integers(-1, 3)))
    return x, kernel, stride


def pool_valid(x, kernel, stride):
    h, w = arr(x).shape[2:]
    return arr(x).ndim == 4 and min(kernel + (stride or kernel)) >= 1 and kernel[0] <= h and kernel[1] <= w


@cnn_checks("maxpool2d_forward", "maxpool2d_backward")
@settings()
@given(args=pool_arguments("any"), data=st.data())
def test_maxpool2d(args, data):
    x, kernel, stride = args
    if not pool_valid(x, kernel, stride):
        event("invalid call")
        return refused("maxpool2d_forward", "MaxPooling", x, *kernel, *(stride or kernel))
    t = compute_dtype(x)
    ctx, rctx = {}, {}
    got = MaxPooling.forward(ctx, x, kernel_size=kernel, stride=stride)
    want = reference(MaxPooling, "forward", rctx, ref(x, t), kernel_size=kernel, stride=stride)
    check_array(got, t, want.shape, "maxpool2d_forward")
    same_special(got, want, "maxpool2d_forward")
    assert np.array_equal(got, want, equal_nan=True), "maxpool2d_forward"  # the maximum is exact
    np.testing.assert_array_equal(ctx["indices"], rctx["indices"], err_msg="maxpool2d_forward indices")

    go = data.draw(operand(want.shape, "moderate", DTYPES))
    t2 = compute_dtype(go)
    G = ref(go, t2)
    gx = MaxPooling.backward(ctx, go)
    # overlapping windows add several gradients into one pixel: at most kh kw windows share a pixel
    bound = 2 * kernel[0] * kernel[1] * eps(t2) * MaxPooling.Reference.backward(rctx, absolute(G))
    assert_close(gx, reference(MaxPooling, "backward", rctx, G), t2, "maxpool2d_backward", bound)


@settings()
@given(data=st.data())
def test_maxpool2d_backward_bad_indices(data):
    """Indices outside the image, or a go that does not match xshape: a clean error naming the op."""
    n, c, h, w = data.draw(image_shape())
    oh, ow = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    go = np.ones((n, c, oh, ow), dtype=data.draw(st.sampled_from(FLOATS)))
    indices = np.zeros((n, c, oh, ow), dtype=np.intp)
    if n and data.draw(st.booleans()):
        indices.flat[data.draw(st.integers(0, indices.size - 1))] = data.draw(
            st.sampled_from([-1, h * w, h * w + 5, -2**40, 2**40]))
    else:
        go = np.ones((n, c + 1, oh, ow))
    refused("maxpool2d_backward", "MaxPooling", go, indices, (n, c, h, w))


@cnn_checks("avgpool2d_forward", "avgpool2d_backward")
@settings()
@given(args=pool_arguments("sum"), data=st.data())
def test_avgpool2d(args, data):
    x, kernel, stride = args
    if not pool_valid(x, kernel, stride):
        event("invalid call")
        return refused("avgpool2d_forward", "AvgPooling", x, *kernel, *(stride or kernel))
    t = compute_dtype(x)
    ctx, rctx = {}, {}
    X = ref(x, t)
    got = AvgPooling.forward(ctx, x, kernel_size=kernel, stride=stride)
    want = reference(AvgPooling, "forward", rctx, X, kernel_size=kernel, stride=stride)
    k = kernel[0] * kernel[1]
    bound = 2 * (k + 1) * eps(t) * AvgPooling.Reference.forward({}, absolute(X), kernel_size=kernel, stride=stride)
    assert_close(got, want, t, "avgpool2d_forward", bound)

    go = data.draw(operand(want.shape, "sum", DTYPES))
    t2 = compute_dtype(go)
    G = ref(go, t2)
    gx = AvgPooling.backward(ctx, go)
    bound = 2 * (k + 1) * eps(t2) * AvgPooling.Reference.backward(rctx, absolute(G))
    assert_close(gx, reference(AvgPooling, "backward", rctx, G), t2, "avgpool2d_backward", bound)


@settings()
@given(data=st.data())
def test_avgpool2d_backward_bad_shapes(data):
    n, c, h, w = data.draw(image_shape())
    kh, kw = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    oh, ow = h - kh + 1, w - kw + 1
    bad = data.draw(st.sampled_from(["go", "kernel", "xshape"]))
    go = np.ones((n, c, oh + (bad == "go"), ow), dtype=data.draw(st.sampled_from(FLOATS)))
    xshape = (n, c, h) if bad == "xshape" else (n, c, h, w)
    if bad == "kernel":
        kh = h + 1
    refused("avgpool2d_backward", "AvgPooling", go, xshape, kh, kw, 1, 1)


# ------------------------------------------------------------------------------------------------
# Dropout
# ------------------------------------------------------------------------------------------------

P = st.sampled_from([0.0, 0.5, 1.0, 0.1, 0.9]) | st.floats(0.0, 1.0)


@cnn_checks("dropout_forward", "dropout_backward")
@settings()
@given(data=st.data())
def test_dropout(data):
    shape = data.draw(shapes())
    x = data.draw(operand(shape, "any", DTYPES))
    mshape = shape if data.draw(st.integers(0, 6)) else data.draw(shapes())
    mask = to_layout(data.draw(hnp.arrays(np.bool_, mshape)),
                     data.draw(st.sampled_from(["C", "list", "fortran", "strided", "negative", "readonly"])))
    p = data.draw(P) if data.draw(st.integers(0, 6)) else data.draw(
        st.sampled_from([-0.1, 1.5, np.nan, np.inf, -np.inf]))
    if arr(mask).shape != arr(x).shape or not 0 <= p <= 1:
        event("invalid call")
        return refused("dropout_forward", "DropoutMask", x, mask, p)
    t = compute_dtype(x)
    ctx, rctx = {}, {}
    M = np.asarray(mask, dtype=bool)
    got = DropoutMask.forward(ctx, x, mask=mask, p=p)
    assert_exact(got, reference(DropoutMask, "forward", rctx, ref(x, t), mask=M, p=p), t, "dropout_forward")
    go = data.draw(operand(shape, "any", DTYPES))
    t2 = compute_dtype(go)
    assert_exact(DropoutMask.backward(ctx, go), reference(DropoutMask, "backward", rctx, ref(go, t2)), t2,
                 "dropout_backward")


@settings()
@given(data=st.data())
def test_dropout_backward_bad_arguments(data):
    shape = data.draw(shapes(min_dims=1))
    go = np.ones(shape, dtype=data.draw(st.sampled_from(FLOATS)))
    bad = data.draw(st.sampled_from(["shape", "p"]))  # (a mask of numbers is cast to bool: FORCECAST)
    mask = np.ones(shape[::-1] + (2,) if bad == "shape" else shape, dtype=bool)
    refused("dropout_backward", "DropoutMask", go, mask, 2.0 if bad == "p" else 0.5)


# ------------------------------------------------------------------------------------------------
# Batch normalisation
# ------------------------------------------------------------------------------------------------


@st.composite
def batchnorm_arguments(draw):
    n, c, h, w = draw(image_shape())
    n = n + 1 if draw(st.integers(0, 5)) else n  # mostly enough values per channel for batch statistics
    shape = draw(st.sampled_from([(n, c), (n, c, h), (n, c, h, w)]))
    if not draw(st.integers(0, 12)):
        shape = draw(st.sampled_from([(c,), (), (n, c, h, w, 1)]))
    x = draw(finite(shape, FLOATS + [np.float16, np.int16]))
    pshape = (c,) if draw(st.integers(0, 9)) else (c + 1,)
    gamma, beta = draw(finite(pshape, FLOATS)), draw(finite((c,), FLOATS))
    running = None
    if draw(st.booleans()):
        running = (draw(finite((c,), FLOATS)), draw(finite((c,), FLOATS, lo=0.0)))
    eps_ = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return x, gamma, beta, running, eps_


@cnn_checks("batchnorm_forward", "batchnorm_backward")
@settings()
@given(args=batchnorm_arguments(), data=st.data())
def test_batchnorm(args, data):
    x, gamma, beta, running, eps_ = args
    a = arr(x)
    c = a.shape[1] if a.ndim >= 2 else -1
    per_channel = a.size // c if a.ndim >= 2 and c else 0
    valid = a.ndim >= 2 and arr(gamma).shape == (c,) and (running is not None or per_channel > 1)
    rm, rv = running or (None, None)
    if not valid:
        event("invalid call")
        return refused("batchnorm_forward", "BatchNormalization", x, gamma, beta, rm, rv, eps_)
    t = compute_dtype(x, gamma, beta)
    X, Gm, Bt = ref(x, t), ref(gamma, t), ref(beta, t)
    ctx, rctx = {}, {}
    got = BatchNormalization.forward(ctx, x, gamma, beta, running_mean=rm, running_var=rv, eps=eps_)
    want = reference(BatchNormalization, "forward", rctx, X, Gm, Bt, running_mean=None if rm is None else ref(rm, t),
                     running_var=None if rv is None else ref(rv, t), eps=eps_)
    shape = (1, -1) + (1,) * (a.ndim - 2)
    e = eps(t)
    m = max(per_channel, 1)
    inv = rctx["invstd"].reshape(shape).astype(np.float64)
    # x - mean cancels: errors relative to (|x| + |mean|) invstd, plus the statistics' own rounding
    xhat_bound = 16 * m * e * ((absolute(X) + absolute(rctx["mean"]).reshape(shape)) * inv + absolute(rctx["xhat"]))
    mean, var = absolute(rctx["mean"]), absolute(rctx["var"])
    assert_close(ctx["mean"], rctx["mean"], t, "batchnorm_forward mean", 16 * m * e * mean)
    # var sums squares of x - mean, each off by the rounding of mean: a constant channel's var is noise
    assert_close(ctx["var"], rctx["var"], t, "batchnorm_forward var",
                 16 * m * e * (var + np.sqrt(var) * mean + e * mean * mean))
    assert_close(ctx["invstd"], rctx["invstd"], t, "batchnorm_forward invstd", 16 * m * e * absolute(rctx["invstd"]))
    assert_close(ctx["xhat"], rctx["xhat"], t, "batchnorm_forward xhat", xhat_bound)
    assert_close(got, want, t, "batchnorm_forward",
                 2 * absolute(Gm).reshape(shape) * xhat_bound + 8 * e * absolute(Bt).reshape(shape))

    # backward from the kernel's own saved values, so that only the backward formulas are compared
    go = data.draw(finite(a.shape, FLOATS))
    t2 = compute_dtype(go, ctx["xhat"], gamma, ctx["invstd"])
    G = ref(go, t2)
    bctx = {"xhat": ref(ctx["xhat"], t2), "gamma": ref(gamma, t2), "invstd": ref(ctx["invstd"], t2),
            "training": ctx["training"]}
    grads = BatchNormalization.backward(ctx, go)
    wants = reference(BatchNormalization, "backward", bctx, G)
    axes = (0,) + tuple(range(2, a.ndim))
    e2 = eps(t2)
    scale = absolute(bctx["gamma"] * bctx["invstd"]).reshape(shape)
    mg = absolute(G).sum(axis=axes).reshape(shape) / m  # (a sum: an empty batch has no mean)
    mgx = (absolute(G) * absolute(bctx["xhat"])).sum(axis=axes).reshape(shape) / m
    gx_bound = 16 * m * e2 * (absolute(G) + mg + absolute(bctx["xhat"]) * mgx) * scale
    sums = 4 * m * e2 * np.stack([(absolute(G) * absolute(bctx["xhat"])).sum(axis=axes), absolute(G).sum(axis=axes)])
    assert len(grads) == 3
    assert_close(grads[0], wants[0], t2, "batchnorm_backward gx", gx_bound)
    assert_close(grads[1], wants[1], t2, "batchnorm_backward ggamma", sums[0])
    assert_close(grads[2], wants[2], t2, "batchnorm_backward gbeta", sums[1])


# ------------------------------------------------------------------------------------------------
# Cross-entropy
# ------------------------------------------------------------------------------------------------


@cnn_checks("cross_entropy_forward", "cross_entropy_backward")
@settings()
@given(data=st.data())
def test_cross_entropy(data):
    n, c = data.draw(st.integers(0, 4)), data.draw(st.integers(1, 5))
    shape = (n, c) if data.draw(st.integers(0, 9)) else data.draw(shapes(max_dims=3))
    logits = data.draw(finite(shape, DTYPES, lo=-100.0))
    rows = arr(logits).shape[0] if arr(logits).ndim else 0
    classes = arr(logits).shape[1] if arr(logits).ndim >= 2 else 0
    count = rows if data.draw(st.integers(0, 9)) else data.draw(st.integers(0, 5))
    hi = classes - 1 if data.draw(st.integers(0, 6)) else classes + 1
    targets = to_layout(np.array(data.draw(st.lists(st.integers(-1 if hi > classes else 0, max(hi, 0)),
                                                     min_size=count, max_size=count)), dtype=np.int64),
                        data.draw(st.sampled_from(["C", "negative", "strided", "readonly"] + ["list"] * (count > 0))))
    reduction = data.draw(st.sampled_from(["mean", "sum"])) if data.draw(st.integers(0, 9)) else "avg"
    k = np.asarray(targets, dtype=np.int64)
    valid = (arr(logits).ndim == 2 and k.shape == (rows,) and bool(np.all((k >= 0) & (k < classes)))
             and reduction in ("mean", "sum"))
    if not valid:
        event("invalid call")
        return refused("cross_entropy_forward", "CrossEntropy", logits, targets, reduction)
    t = compute_dtype(logits)
    L = ref(logits, t)
    ctx, rctx = {}, {}
    got = CrossEntropy.forward(ctx, logits, targets=targets, reduction=reduction)
    want = reference(CrossEntropy, "forward", rctx, L, targets=k, reduction=reduction)
    e = eps(t)
    shifted = absolute(L - L.max(axis=1, keepdims=True)) if rows else np.zeros((0, classes))
    terms = (shifted.sum() + rows * np.log(classes) + rows) / (rctx["divisor"] or 1)
    assert_close(got, want, t, "cross_entropy_forward", 8 * (classes + rows) * e * terms)
    assert_close(ctx["softmax"], rctx["softmax"], t, "cross_entropy_forward softmax",
                 8 * classes * e * rctx["softmax"])

    go = data.draw(finite((), FLOATS))
    t2 = compute_dtype(go, ctx["softmax"])
    bctx = dict(rctx, softmax=ref(ctx["softmax"], t2))
    got = CrossEntropy.backward(ctx, go)
    assert_close(got, reference(CrossEntropy, "backward", bctx, ref(go, t2)), t2, "cross_entropy_backward")


@settings()
@given(data=st.data())
def test_cross_entropy_backward_bad_arguments(data):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5))
    softmax = np.full((n, c), 1.0 / c, dtype=data.draw(st.sampled_from(FLOATS)))
    targets, go, divisor = np.zeros(n, dtype=np.int64), np.float64(1.0), n
    bad = data.draw(st.sampled_from(["go", "target", "length", "softmax"]))
    if bad == "go":
        go = np.ones(2)
    elif bad == "target":
        targets[data.draw(st.integers(0, n - 1))] = data.draw(st.sampled_from([-1, c, c + 7]))
    elif bad == "length":
        targets = np.zeros(n + 1, dtype=np.int64)
    else:
        softmax = softmax.reshape(-1)
    refused("cross_entropy_backward", "CrossEntropy", go, softmax, targets, divisor)


# ------------------------------------------------------------------------------------------------
# Reshape
# ------------------------------------------------------------------------------------------------


@cnn_checks("reshape")
@settings()
@given(data=st.data())
def test_reshape(data):
    x = data.draw(operand(data.draw(shapes()), "any", DTYPES))
    a = arr(x)
    if data.draw(st.integers(0, 4)):  # usually a shape with the same size, one side maybe -1
        target = list(data.draw(st.permutations(list(a.shape) + [1] * data.draw(st.integers(0, 2)))))
        if target and data.draw(st.booleans()):
            target[data.draw(st.integers(0, len(target) - 1))] = -1
    else:
        target = data.draw(st.lists(st.integers(-2, 6), max_size=4))
    target = tuple(target)
    try:
        want = np.reshape(a, target)
    except ValueError:
        event("invalid call")
        return refused("reshape", "Reshape", x, target)
    ctx = {}
    got = Reshape.forward(ctx, x, shape=target)
    assert isinstance(got, np.ndarray) and got.dtype == a.dtype and got.shape == want.shape, "reshape"
    assert np.array_equal(got, want, equal_nan=True), "reshape"
    if isinstance(x, np.ndarray) and x.size and np.shares_memory(want, a):
        assert np.shares_memory(got, x), "reshape: not a view where np.reshape gives one"
    back = Reshape.backward(ctx, got)
    assert back.shape == a.shape and np.array_equal(back, a, equal_nan=True), "reshape backward"


# ------------------------------------------------------------------------------------------------
# Arrays of a dtype no kernel computes in, in place of each float array of a valid call
# ------------------------------------------------------------------------------------------------


def _valid_calls():
    """name -> (op named in the errors, a valid argument tuple, positions of its float arrays)."""
    x, w, go = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    m, g, keep = np.arange(6.0).reshape(3, 2), np.ones(2), np.ones((3, 2), dtype=bool)
    targets = np.array([0, 1, 1])
    return {
        "conv2d": ("Convolution", (x, w, np.ones(1), 1, 1, 0, 0), (0, 1, 2)),
        "conv2d_grad": ("Convolution", (go, x, w, 1, 1, 0, 0, True, True), (0, 1, 2)),
        "conv2d_relu": ("ConvolutionReLU", (x, w, np.ones(1), 1, 1, 0, 0), (0, 1, 2)),
        "conv2d_relu_grad": ("ConvolutionReLU", (go, x, w, 1, 1, 0, 0, True, True, go), (0, 1, 2, 9)),
        "maxpool2d_forward": ("MaxPooling", (x, 2, 2, 1, 1), (0,)),
        "maxpool2d_backward": ("MaxPooling", (go, np.zeros((1, 1, 2, 2), dtype=np.intp), (1, 1, 3, 3)), (0,)),
        "avgpool2d_forward": ("AvgPooling", (x, 2, 2, 1, 1), (0,)),
        "avgpool2d_backward": ("AvgPooling", (go, (1, 1, 3, 3), 2, 2, 1, 1), (0,)),
        "batchnorm_forward": ("BatchNormalization", (m, g, g, g, g, 1e-5), (0, 1, 2)),  # 3, 4: below
        "batchnorm_backward": ("BatchNormalization", (m, m, g, g, True), (0, 1, 2, 3)),
        "dropout_forward": ("DropoutMask", (m, keep, 0.5), (0,)),
        "dropout_backward": ("DropoutMask", (m, keep, 0.5), (0,)),
        "cross_entropy_forward": ("CrossEntropy", (m.T.copy(), np.array([0, 2]), "mean"), (0,)),
        "cross_entropy_backward": ("CrossEntropy", (np.float64(1.0), np.full((3, 2), 0.5), targets, 3), (0, 1)),
    }


BAD_DTYPES = ["c16", "O", "U3", "M8[s]", "V8"]


def test_valid_calls_are_valid():
    for name, (_, args, _) in _valid_calls().items():
        getattr(C, name)(*args)  # the bad-dtype test below changes one argument of these


@pytest.mark.parametrize("name", sorted(_valid_calls()))
@pytest.mark.parametrize("dtype", BAD_DTYPES)
def test_bad_dtype_raises_type_error(name, dtype):
    op, args, positions = _valid_calls()[name]
    for pos in positions:
        bad = list(args)
        bad[pos] = np.zeros(np.shape(args[pos]), dtype=dtype)
        refused(name, op, *bad, exc=TypeError)


@pytest.mark.parametrize("dtype", BAD_DTYPES)
def test_bad_dtype_running_statistics(dtype):
    """The running mean and variance are refused for the same dtypes as the other inputs (complex, object,
    datetime, ...), though they follow the others' compute type rather than set it."""
    op, args, _ = _valid_calls()["batchnorm_forward"]
    for pos in (3, 4):
        bad = list(args)
        bad[pos] = np.zeros(2, dtype=dtype)
        refused("batchnorm_forward", op, *bad, exc=TypeError)
