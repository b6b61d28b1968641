"""
The convolution kernels behind vg.conv2d (vgrad._C.conv2d and conv2d_grad): the direct kernels (stride 1,
small filters) and im2col + BLAS (strides, many channels), checked against PyTorch and central differences
on odd sizes, strides, paddings and non-contiguous inputs; the same bits with 1 and 2 threads; NaN and
infinity where np.matmul puts them; clean errors for bad input. The other kernels on the thread pool (pooling,
batch norm, dropout, the cross-entropy): the same bits with 1 and 2 threads, and the reference's values.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import vgrad._C as C
import vgrad as vg
from vgrad.nn_ops import Convolution, CrossEntropy, DropoutMask

torch = pytest.importorskip("torch")

# (N, C, H, W, O, kh, kw, (sh, sw), (ph, pw)) -- the comment says which path (conv.c's use_direct) it takes
SHAPES = [
    (3, 3, 11, 13, 6, 5, 5, (1, 1), (0, 0)),    # direct: the course's first layer, odd image
    (2, 6, 14, 14, 16, 5, 5, (1, 1), (2, 2)),   # direct, padded
    (2, 5, 9, 7, 4, 3, 2, (1, 1), (0, 1)),      # direct, non-square filter and padding
    (37, 2, 6, 5, 3, 3, 3, (1, 1), (1, 1)),     # direct, more images than the backward's 32 chunks
    (2, 1, 7, 5, 3, 1, 1, (1, 1), (0, 0)),      # direct, 1x1 filter
    (1, 4, 3, 3, 2, 5, 5, (1, 1), (2, 2)),      # direct, filter larger than the image
    (2, 5, 9, 7, 4, 3, 2, (2, 1), (1, 0)),      # BLAS: strides
    (3, 3, 12, 11, 5, 4, 3, (3, 2), (2, 1)),    # BLAS: strides and padding
    (1, 40, 10, 10, 30, 3, 3, (1, 1), (1, 1)),  # direct: C kh kw = 360, just under the limit of 400
    (2, 50, 6, 7, 8, 3, 3, (1, 1), (0, 1)),     # BLAS: C kh kw = 450
    (9, 64, 16, 16, 8, 3, 3, (2, 2), (1, 1)),   # BLAS, float64 in chunks of 7 images and a last one of 2
]
IDS = [f"{s[0]}x{s[1]}x{s[2]}x{s[3]}-o{s[4]}-k{s[5]}x{s[6]}-s{s[7][0]}{s[7][1]}-p{s[8][0]}{s[8][1]}" for s in SHAPES]


def draw(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    n, c, h, w, o, kh, kw, stride, padding = shape
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (w + 2 * padding[1] - kw) // stride[1] + 1
    go = rng.standard_normal((n, o, oh, ow)).astype(dtype)
    return x, wt, b, go


def torch_conv(x, w, b, go, stride, padding):
    """PyTorch's y and (gx, gw, gb), in float64."""
    xt, wt, bt = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    y.backward(torch.tensor(go, dtype=torch.float64))
    return y.detach().numpy(), (xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy())


def ours(x, w, b, go, stride, padding):
    y = C.conv2d(x, w, b, *stride, *padding)
    return y, C.conv2d_grad(go, x, w, *stride, *padding, True, True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_against_pytorch(shape, dtype):
    stride, padding = shape[7], shape[8]
    x, w, b, go = draw(shape, dtype, 1)
    y, grads = ours(x, w, b, go, stride, padding)
    y_t, grads_t = torch_conv(x, w, b, go, stride, padding)
    assert y.dtype == dtype and y.shape == y_t.shape
    assert all(g.dtype == dtype for g in grads)
    # relative to the sum of |terms|: each result is a sum of at most C kh kw (or N O OH OW) products
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    _, abs_grads = torch_conv(abs(x), abs(w), abs(b), abs(go), stride, padding)
    y_abs, _ = torch_conv(abs(x), abs(w), abs(b), abs(go), stride, padding)
    np.testing.assert_array_less(abs(y - y_t), rtol * y_abs + 1e-30)
    for name, g, g_t, bound in zip(("gx", "gw", "gb"), grads, grads_t, abs_grads):
        assert g.shape == g_t.shape, name
        assert np.all(abs(g - g_t) <= rtol * bound + 1e-30), (name, np.max(abs(g - g_t)))


@pytest.mark.parametrize("shape", [SHAPES[2], SHAPES[6], SHAPES[9]], ids=["direct", "blas-strided", "blas-channels"])
def test_central_differences(shape):
    """d(sum(y * go))/d(input) by central differences in float64, against the kernels' gradients."""
    stride, padding = shape[7], shape[8]
    x, w, b, go = draw(shape, np.float64, 2)
    _, (gx, gw, gb) = ours(x, w, b, go, stride, padding)
    rng = np.random.default_rng(3)

    def loss(xv, wv, bv):
        return float(np.sum(C.conv2d(xv, wv, bv, *stride, *padding) * go))

    h = 1e-6
    for which, (arr, grad) in enumerate(((x, gx), (w, gw), (b, gb))):
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in arr.shape)
            args = [x.copy(), w.copy(), b.copy()]
            args[which][idx] += h
            up = loss(*args)
            args[which][idx] -= 2 * h
            down = loss(*args)
            assert (up - down) / (2 * h) == pytest.approx(grad[idx], rel=1e-6, abs=1e-6), (which, idx)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[7]], ids=["direct", "blas"])
def test_non_contiguous_inputs(shape):
    """Transposed, sliced and Fortran-ordered inputs give the results of their contiguous copies."""
    stride, padding = shape[7], shape[8]
    x, w, b, go = draw(shape, np.float32, 4)
    want_y, want_g = ours(x, w, b, go, stride, padding)
    xs = np.zeros((x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3]), np.float32)[..., ::2]
    xs[...] = x  # every other column of a wider array
    wf = np.asfortranarray(w)
    bs = np.repeat(b, 2)[::2]
    got = np.transpose(np.ascontiguousarray(np.transpose(go, (3, 2, 1, 0))), (3, 2, 1, 0))
    assert not (xs.flags.c_contiguous or wf.flags.c_contiguous or bs.flags.c_contiguous or got.flags.c_contiguous)
    y, grads = ours(xs, wf, bs, got, stride, padding)
    np.testing.assert_array_equal(y, want_y)
    for g, want in zip(grads, want_g):
        np.testing.assert_array_equal(g, want)


@pytest.fixture
def threads():
    """Set vgrad's thread count for a test, restored after it."""
    before = C.num_threads(0)
    yield C.num_threads
    C.num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 3, 32, 32, 6, 5, 5, (1, 1), (0, 0)), (40, 6, 14, 14, 16, 5, 5, (1, 1), (1, 1)),
                                   (16, 3, 32, 32, 8, 5, 5, (2, 2), (1, 1)), (12, 64, 12, 12, 16, 3, 3, (1, 1), (1, 1))],
                         ids=["direct-first-layer", "direct-second-layer", "blas-strided", "blas-channels"])
def test_same_bits_with_one_and_two_threads(shape, dtype, threads):
    stride, padding = shape[7], shape[8]
    x, w, b, go = draw(shape, dtype, 5)
    threads(1)
    y1, g1 = ours(x, w, b, go, stride, padding)
    threads(2)
    assert threads(0) == 2
    y2, g2 = ours(x, w, b, go, stride, padding)
    assert y1.tobytes() == y2.tobytes()
    for a, c in zip(g1, g2):
        assert a.tobytes() == c.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2], ids=["direct", "blas"])
@pytest.mark.parametrize("case", ["nan pixel", "inf pixel, zero filter", "nan filter", "inf pixel, zero gradient"])
def test_nan_and_inf_as_np_matmul(case, stride, dtype):
    """A 1x1 filter (and a 3x3 one): NaN and infinity land where the textbook im2col @ np.matmul puts them."""
    for k in (1, 3):
        x = np.ones((2, 2, 5, 5), dtype)
        w = np.full((3, 2, k, k), 0.5, dtype)
        o = (5 - k) // stride + 1
        go = np.ones((2, 3, o, o), dtype)
        if case == "nan pixel":
            x[0, 1, 2, 2] = np.nan
        elif case == "inf pixel, zero filter":
            x[0, 1, 2, 2], w[...] = np.inf, 0
        elif case == "nan filter":
            w[1, 0, 0, 0] = np.nan
        else:
            x[0, 1, 2, 2], go[...] = np.inf, 0
        ctx = {}
        with np.errstate(invalid="ignore"):
            want_y = Convolution.Reference.forward(ctx, x, w, None, stride=stride)
            want_g = Convolution.Reference.backward(ctx, go)
        y = C.conv2d(x, w, None, stride, stride, 0, 0)
        grads = C.conv2d_grad(go, x, w, stride, stride, 0, 0, False, True)
        np.testing.assert_array_equal(y, want_y, err_msg=f"{case}, {k}x{k}: forward")
        np.testing.assert_array_equal(grads[0], want_g[0], err_msg=f"{case}, {k}x{k}: gx")
        np.testing.assert_array_equal(grads[1], want_g[1], err_msg=f"{case}, {k}x{k}: gw")
        assert np.isnan(y).any() or np.isnan(grads[0]).any() or np.isnan(grads[1]).any()


def test_num_threads_checks_and_environment(threads):
    with pytest.raises(ValueError, match=r"num_threads: the number of threads must be at least 1 \(or 0 to read it\), got -1"):
        threads(-1)
    with pytest.raises(TypeError, match="num_threads"):
        threads("two")
    for args in ((), (1, 2)):
        with pytest.raises(TypeError, match="num_threads"):
            C.num_threads(*args)
    threads(3)
    assert threads(0) == 3 and threads(5) == 3 and threads(0) == 5

    def in_child(**env):
        full = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "VGRAD_NUM_THREADS")}
        full.update(env)
        out = subprocess.run([sys.executable, "-c", "import vgrad._C as C; print(C.num_threads(0))"], env=full,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert in_child(OMP_NUM_THREADS="1") == 1
    assert in_child(OMP_NUM_THREADS="2,1") == 2
    assert in_child(OMP_NUM_THREADS="1", VGRAD_NUM_THREADS="3") == 3
    assert in_child() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("call, message", [
    ("C.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), None, 1, 1, 2**31 - 1, 2**31 - 1)", "is too large"),
    ("C.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), None, 1, 1, 2**62, 0)", "is too large"),
    ("C.conv2d(np.ones((0, 1, 2**29, 2**29)), np.ones((1, 1, 1, 1)), None, 1, 1, 0, 0).shape", None),
    ("C.conv2d(np.ones((1, 2, 4, 4)), np.ones((1, 3, 1, 1)), None, 1, 1, 0, 0)", "has 2 channels"),
    ("C.conv2d(np.ones((1, 2, 4, 4)), np.ones((1, 2, 1, 1)), np.ones(2), 1, 1, 0, 0)", "bias must have shape (1,)"),
    ("C.conv2d(np.ones((1, 2, 4, 4)), np.ones((1, 2, 5, 1)), None, 1, 1, 0, 0)", None),
    ("C.conv2d(np.ones((1, 2, 4)), np.ones((1, 2, 1, 1)), None, 1, 1, 0, 0)", None),
    ("C.conv2d_grad(np.ones((1, 1, 3, 3)), np.ones((1, 1, 4, 4)), np.ones((1, 1, 1, 1)), 1, 1, 0, 0, True, True)",
     "expected an upstream gradient of shape (1, 1, 4, 4)"),
    ("C.conv2d_grad(np.ones((1, 1, 1, 1)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), 1, 1, 2**31 - 1, 0, "
     "True, True)", "expected an upstream gradient of shape (1, 1, 4294967296, 2), got (1, 1, 1, 1)"),
    ("C.conv2d_grad(np.empty((0, 0, 1, 1)), np.empty((0, 2**20, 2**20, 2**18)), np.empty((0, 2**20, 2**20, 2**18)), "
     "1, 1, 0, 0, True, True)[1].shape", None),
])
def test_bad_and_extreme_sizes(call, message):
    """Refused with a ValueError naming the op, or (message None and an ok shape) computed without a crash."""
    if call.endswith(".shape"):
        shape = eval(call)
        assert 0 in shape
        return
    with pytest.raises(ValueError) as info:
        eval(call)
    assert "Convolution" in str(info.value)
    if message:
        assert message in str(info.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window", [3, 2], ids=["3x3-stride-2", "2x2-stride-2"])  # 2 x 2: MaxPool2d(2)'s own kernel
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_same_bits_with_one_and_two_threads_and_as_pytorch(pool, window, dtype, threads):
    """Pooling runs its planes on the thread pool: the same bits with 1 and 2 threads, PyTorch's values."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 6, 28, 28)).astype(dtype)
    x[3, 2, 5, 5] = np.nan  # a NaN is the maximum of its window
    out = (28 - window) // 2 + 1
    go = rng.standard_normal((64, 6, out, out)).astype(dtype)
    results = []
    for n in (1, 2):
        threads(n)
        if pool == "max":
            y, idx = C.maxpool2d_forward(x, window, window, 2, 2)
            results.append((y, idx, C.maxpool2d_backward(go, idx, x.shape)))
        else:
            results.append((C.avgpool2d_forward(x, window, window, 2, 2),
                            C.avgpool2d_backward(go, x.shape, window, window, 2, 2)))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()
    xt = torch.tensor(x, requires_grad=True)
    yt = (torch.nn.functional.max_pool2d if pool == "max" else torch.nn.functional.avg_pool2d)(xt, window, 2)
    yt.backward(torch.tensor(go))
    y, gx = results[0][0], results[0][-1]
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)



def test_set_num_threads_as_torchs(threads):
    vg.set_num_threads(1)
    assert vg.get_num_threads() == 1 == C.num_threads(0)
    vg.set_num_threads(2)
    assert vg.get_num_threads() == 2
    for bad in (0, -3, 1.5, True, "2"):
        with pytest.raises(ValueError, match="set_num_threads"):
            vg.set_num_threads(bad)
    assert vg.get_num_threads() == 2
    # a count far beyond any machine is capped (csrc/threads.c: 64), never a crash or a pool of 2**62 threads
    for huge in (1000, 2**31, 2**62):
        vg.set_num_threads(huge)
        assert vg.get_num_threads() == 64
    with pytest.raises(ValueError, match="num_threads.*out of range"):
        vg.set_num_threads(2**63)
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float64).reshape(2, 3, 6, 6)
    w = np.ones((4, 3, 3, 3))
    vg.set_num_threads(64)
    many = C.conv2d(x, w, None, 1, 1, 1, 1)
    vg.set_num_threads(1)
    np.testing.assert_array_equal(many, C.conv2d(x, w, None, 1, 1, 1, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_batch_norm_same_bits_with_one_and_two_threads_and_as_pytorch(training, dtype, threads):
    """Batch norm runs a task per channel on the thread pool: the same bits with 1 and 2 threads (each channel's
    sums are its own, in a fixed order), and PyTorch's values and gradients."""
    rng = np.random.default_rng(7)
    x = (3 + 2 * rng.standard_normal((64, 6, 28, 28))).astype(dtype)  # a mean and spread that are not 0 and 1
    gamma, beta = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    mean, var = rng.standard_normal(6).astype(dtype), (1 + rng.random(6)).astype(dtype)
    go = rng.standard_normal(x.shape).astype(dtype)
    results = []
    for n in (1, 2):
        threads(n)
        forward = C.batchnorm_forward(x, gamma, beta, None if training else mean, None if training else var, 1e-5)
        y, xhat, _, _, invstd = forward
        results.append(forward + C.batchnorm_backward(go, xhat, gamma, invstd, training))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()
    xt, gt, bt = (torch.tensor(v, requires_grad=True) for v in (x, gamma, beta))
    yt = torch.nn.functional.batch_norm(xt, torch.tensor(mean), torch.tensor(var), gt, bt, training=training, eps=1e-5)
    yt.backward(torch.tensor(go))
    y, gx, ggamma, gbeta = results[0][0], results[0][5], results[0][6], results[0][7]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(ggamma, gt.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * x.size / 6)
    np.testing.assert_allclose(gbeta, bt.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * x.size / 6)


def same_bits_with_one_and_two_threads(threads, run):
    """run()'s arrays with 1 thread, after asserting that 2 threads give the same bits; 2 really is the
    count used when the work is large enough (vg_threads_for), whatever the machine's default."""
    results = []
    for n in (1, 2):
        threads(n)
        assert threads(0) == n
        results.append(run())
    for k, (one, two) in enumerate(zip(*results)):
        assert one.dtype == two.dtype and one.shape == two.shape, k
        assert one.tobytes() == two.tobytes(), f"result {k} differs between 1 and 2 threads"
    return results[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 16, 28, 28), (3, 5, 7, 1001), (64, 120)],
                         ids=["conv-activations", "odd-size", "course-hidden-one-thread"])
def test_dropout_same_bits_with_one_and_two_threads_and_as_numpy(shape, dtype, threads):
    """Dropout runs runs of values on the thread pool (the last run shorter for the odd size): the same bits
    with 1 and 2 threads, and the reference's x * noise exactly (one multiplication per value)."""
    rng = np.random.default_rng(8)
    x, go = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    keep = rng.random(shape) >= 0.3
    y, gx = same_bits_with_one_and_two_threads(
        threads, lambda: (C.dropout_forward(x, keep, 0.3), C.dropout_backward(go, keep, 0.3)))
    np.testing.assert_array_equal(y, DropoutMask.Reference.forward({}, x, mask=keep, p=0.3))
    np.testing.assert_array_equal(gx, DropoutMask.Reference.backward({"mask": keep, "p": 0.3}, go))
    assert y.dtype == gx.dtype == dtype and np.count_nonzero(y == 0) > 0.2 * y.size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n, c", [(1999, 1001), (3, 50000), (30001, 7), (64, 10)],
                         ids=["odd-rows-and-classes", "rows-longer-than-a-task", "many-short-rows",
                              "course-output-one-thread"])
def test_cross_entropy_same_bits_with_one_and_two_threads_and_as_numpy(n, c, reduction, dtype, threads):
    """The cross-entropy runs runs of whole rows on the thread pool: the same bits with 1 and 2 threads (the
    loss adds the rows' losses after the tasks, in row order), and the reference's values: in float64 the
    softmax is NumPy's bit for bit, and the gradient is the reference's from the same softmax, exactly."""
    rng = np.random.default_rng(9)
    x = (4 * rng.standard_normal((n, c))).astype(dtype)
    x[n // 2] += 1000  # a row far from 0: the log-sum-exp is taken from its maximum
    t = rng.integers(0, c, n)
    go, divisor = np.asarray(1.5, dtype), (n if reduction == "mean" else 1)

    def run():
        loss, softmax = C.cross_entropy_forward(x, t, reduction)
        return loss, softmax, C.cross_entropy_backward(go, softmax, t, divisor)

    loss, softmax, gx = same_bits_with_one_and_two_threads(threads, run)
    ctx = {}
    want = CrossEntropy.Reference.forward(ctx, x, targets=t, reduction=reduction)
    assert loss.shape == () and loss.dtype == softmax.dtype == gx.dtype == dtype
    # the losses are summed pairwise (NumPy's sum groups them otherwise): close, not the same bits
    np.testing.assert_allclose(loss, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    if dtype == np.float64:
        np.testing.assert_array_equal(softmax, ctx["softmax"])
    else:  # float32's exp is vexp.c's, within 1 ulp of NumPy's
        np.testing.assert_allclose(softmax, ctx["softmax"], rtol=1e-5, atol=1e-30)
    np.testing.assert_array_equal(gx, CrossEntropy.Reference.backward(dict(ctx, softmax=softmax), go))
