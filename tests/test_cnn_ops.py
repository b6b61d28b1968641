"""The CNN toolkit's ops (vgrad/nn_ops.py) through the functional API, against PyTorch (forward and gradients
to 1e-10 in float64, on the same values) and against central differences. The generic per-op tests (Reference,
layouts, dtypes, errors) run from tests/op_table.py."""
import numpy as np
import pytest

import vgrad as vg
from op_table import central_differences

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = dict(rtol=1e-10, atol=1e-12)


def run_both(vg_fn, torch_fn, arrays, rng, grads=True):
    """vg_fn(*nodes) and torch_fn(*tensors) on the same float64 arrays; checks the outputs and the gradients of
    sum(out * R) for a random R. Returns the vgrad output."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    t_out = torch_fn(*tensors)
    nodes = [vg.TensorNode(a) for a in arrays]
    out = vg_fn(*nodes)
    np.testing.assert_allclose(out.value, t_out.detach().numpy(), **TOL)
    if grads:
        R = rng.standard_normal(tuple(t_out.shape))
        (t_out * torch.as_tensor(R)).sum().backward()
        loss = vg.Sum.do_forward(out * vg.TensorNode(R))
        loss.backward()
        for k, (n, t) in enumerate(zip(nodes, tensors)):
            np.testing.assert_allclose(n.grad, t.grad.numpy(), **TOL, err_msg=f"gradient of input {k}")
    return out


CONV_CASES = [  # x shape, w shape, bias, stride, padding
    ((2, 3, 8, 8), (4, 3, 3, 3), True, 1, 0),
    ((2, 3, 9, 7), (5, 3, 3, 2), False, 2, 1),
    ((1, 2, 10, 9), (3, 2, 4, 3), True, (2, 3), (1, 2)),
    ((3, 1, 28, 28), (6, 1, 5, 5), True, 1, 2),
    ((2, 6, 14, 14), (16, 6, 5, 5), True, 1, 0),
    ((1, 4, 5, 5), (2, 4, 1, 1), True, 1, 0),
    ((2, 2, 4, 4), (3, 2, 3, 3), True, 1, 3),  # padding larger than the filter: border outputs see only zeros
]


@pytest.mark.parametrize("xs,ws,bias,stride,padding", CONV_CASES)
def test_conv2d_matches_torch(xs, ws, bias, stride, padding, rng):
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)] + ([rng.standard_normal(ws[0])] if bias else [])
    run_both(lambda *n: vg.conv2d(*n, stride=stride, padding=padding),
             lambda *t: F.conv2d(*t, stride=stride, padding=padding), arrays, rng)


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), ((2, 3), (1, 2)), (3, 1)])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_matches_torch(pool, kernel, stride, rng):
    vg_fn, t_fn = (vg.max_pool2d, F.max_pool2d) if pool == "max" else (vg.avg_pool2d, F.avg_pool2d)
    run_both(lambda x: vg_fn(x, kernel, stride), lambda x: t_fn(x, kernel, stride),
             [rng.standard_normal((2, 3, 9, 8))], rng)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("scale", [1.0, 100.0])  # 100: exp would overflow without the log-sum-exp shift
def test_cross_entropy_matches_torch(reduction, scale, rng):
    targets = rng.integers(0, 7, 6)
    run_both(lambda x: vg.cross_entropy(x, targets, reduction=reduction),
             lambda x: F.cross_entropy(x, torch.as_tensor(targets), reduction=reduction),
             [rng.standard_normal((6, 7)) * scale], rng)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 5, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch_and_updates_running_stats(shape, training, rng):
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    run_both(lambda x, g, b: vg.batch_norm(x, rm, rv, g, b, training=training, momentum=0.2, eps=1e-4),
             lambda x, g, b: F.batch_norm(x, rm_t, rv_t, g, b, training=training, momentum=0.2, eps=1e-4),
             [rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)], rng)
    np.testing.assert_allclose(rm, rm_t.numpy(), **TOL)
    np.testing.assert_allclose(rv, rv_t.numpy(), **TOL)


def test_dropout_matches_torch_given_the_same_mask(rng):
    """PyTorch draws its own mask; with the mask vgrad drew, x * mask / (1 - p) is what PyTorch computes."""
    x = rng.standard_normal((5, 6))
    np.random.seed(3)
    out = vg.dropout(vg.TensorNode(x), p=0.4, training=True)
    keep = out.source.context["mask"]
    tx = torch.tensor(x, requires_grad=True)
    t_out = tx * (torch.as_tensor(keep).double() / (1 - 0.4))
    np.testing.assert_allclose(out.value, t_out.detach().numpy(), **TOL)


def test_float32_blitz_layers_match_torch(rng):
    """float32 in, float32 out, close to PyTorch's float32 results."""
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((6, 3, 5, 5)) * 0.1).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    out = vg.max_pool2d(vg.relu(vg.conv2d(vg.TensorNode(x), vg.TensorNode(w), vg.TensorNode(b))), 2)
    t_out = F.max_pool2d(F.relu(F.conv2d(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b))), 2)
    assert out.value.dtype == np.float32
    np.testing.assert_allclose(out.value, t_out.numpy(), rtol=1e-5, atol=1e-5)


# ---- central differences (float64) on shapes bigger than the op table's ------------------------------------


def gradcheck(fn, arrays, rng):
    nodes = [vg.TensorNode(a) for a in arrays]
    out = fn(*nodes)
    R = rng.standard_normal(out.value.shape)
    vg.Sum.do_forward(out * vg.TensorNode(R)).backward()

    def f(*xs):
        return float(np.sum(fn(*[vg.TensorNode(x) for x in xs]).value * R))

    for k, (node, want) in enumerate(zip(nodes, central_differences(f, arrays))):
        np.testing.assert_allclose(node.grad, want, rtol=1e-6, atol=1e-7, err_msg=f"input {k}")


def test_gradcheck_conv_pool_chain(rng):
    x, w, b = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    gradcheck(lambda x, w, b: vg.avg_pool2d(vg.max_pool2d(vg.conv2d(x, w, b, stride=1, padding=1), 2, 1), 2),
              [x, w, b], rng)


def test_gradcheck_strided_conv(rng):
    gradcheck(lambda x, w: vg.conv2d(x, w, stride=(2, 1), padding=(0, 2)),
              [rng.standard_normal((2, 2, 7, 5)), rng.standard_normal((2, 2, 3, 2))], rng)


def test_gradcheck_batch_norm_training(rng):
    gradcheck(lambda x, g, b: vg.batch_norm(x, None, None, g, b, training=True),
              [rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3), rng.standard_normal(3)], rng)


def test_gradcheck_cross_entropy_of_flattened_conv(rng):
    targets = np.array([1, 0, 3])
    gradcheck(lambda x, w: vg.cross_entropy(vg.flatten(vg.conv2d(x, w)), targets),
              [rng.standard_normal((3, 1, 4, 4)), rng.standard_normal((1, 1, 3, 3))], rng)


# ---- behaviour ---------------------------------------------------------------------------------------------


def test_conv_skips_the_gradient_of_data_inputs(rng):
    """An input with requires_grad=False (a batch of images) gets no gradient computed; the filters still do."""
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    xn, wn = vg.TensorNode(x, requires_grad=False), vg.TensorNode(w)
    out = vg.conv2d(xn, wn)
    ctx = out.source.context
    grads = vg.Convolution.backward(ctx, np.ones(out.value.shape))
    assert grads[0] is None
    tw = torch.tensor(w, requires_grad=True)
    F.conv2d(torch.tensor(x), tw).sum().backward()
    np.testing.assert_allclose(grads[1], tw.grad.numpy(), **TOL)


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    ctx = {}
    vg.MaxPooling.forward(ctx, x, kernel_size=2)
    np.testing.assert_array_equal(ctx["indices"], [[[[0]]]])
    g = vg.MaxPooling.backward(ctx, np.full((1, 1, 1, 1), 5.0))
    np.testing.assert_array_equal(g, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_max_pool_propagates_nan():
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    assert np.isnan(vg.MaxPooling.forward({}, x, kernel_size=2)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [2, 6, 9, 600])  # 600: a row of 300 windows, more than the kernel takes at once
def test_max_pool_2x2_picks_as_numpy_argmax_for_every_window_pattern(dtype, width):
    """MaxPool2d(2) has its own unrolled kernel: every window of four values drawn from {0, 1, NaN} (ties, NaN
    first, NaN after a larger value, two NaNs), placed at every window position, gives np.argmax's index."""
    values = np.array(np.meshgrid(*[[0.0, 1.0, np.nan]] * 4, indexing="ij")).reshape(4, -1).T  # (81, 4)
    ow = width // 2
    windows = np.resize(values, (3 * ow, 4))  # 3 rows of windows
    x = np.zeros((1, 1, 6, width), dtype)
    for k, (a, b, c, d) in enumerate(windows):
        p, q = divmod(k, ow)
        x[0, 0, 2 * p:2 * p + 2, 2 * q:2 * q + 2] = [[a, b], [c, d]]
    ctx, rctx = {}, {}
    y = vg.MaxPooling.forward(ctx, x, kernel_size=2)
    want = vg.MaxPooling.Reference.forward(rctx, x, kernel_size=2)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(ctx["indices"], rctx["indices"])


def test_dropout_is_reproducible_and_keeps_the_expected_value():
    x = vg.TensorNode(np.ones((200, 500)))
    np.random.seed(0)
    a = vg.dropout(x, 0.3).value
    np.random.seed(0)
    b = vg.dropout(x, 0.3).value
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 1 / 0.7}
    assert abs((a == 0).mean() - 0.3) < 0.01  # 100,000 draws: the standard error is 0.0015
    assert vg.dropout(x, 0.3, training=False) is x
    assert not vg.dropout(x, 1.0).value.any()
    with pytest.raises(ValueError, match="dropout"):
        vg.dropout(x, 1.5)


def test_flatten_and_reshape_are_views_with_gradients(rng):
    x = rng.standard_normal((2, 3, 4))
    node = vg.TensorNode(x)
    flat = vg.flatten(node)
    assert flat.value.shape == (2, 12) and np.shares_memory(flat.value, x)
    back = vg.reshape(flat, (4, 6))
    vg.Sum.do_forward(back * vg.TensorNode(np.arange(24.0).reshape(4, 6))).backward()
    np.testing.assert_array_equal(node.grad, np.arange(24.0).reshape(2, 3, 4))


def test_batch_norm_with_one_value_per_channel_is_refused_in_training():
    with pytest.raises(ValueError, match="BatchNormalization"):
        vg.batch_norm(vg.TensorNode(np.ones((1, 3))), np.zeros(3), np.ones(3), training=True)
