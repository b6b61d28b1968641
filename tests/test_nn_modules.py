"""The CNN modules (vgrad/nn.py): shapes, parameters, train/eval, and the blitz CNN against PyTorch's with the
same weights (forward and every gradient to 1e-10 in float64)."""
import numpy as np
import pytest

import vgrad as vg


def blitz(dropout=None):
    layers = [vg.Conv2d(3, 6, 5), vg.relu, vg.MaxPool2d(2), vg.Conv2d(6, 16, 5), vg.relu, vg.MaxPool2d(2),
              vg.Flatten(), vg.Linear(400, 120), vg.relu, vg.Linear(120, 84), vg.relu]
    if dropout:
        layers.append(vg.Dropout(dropout))
    return vg.Sequential(*layers, vg.Linear(84, 10))


def test_conv2d_module_shapes_and_initialisation(np_random_state):
    np.random.seed(0)
    conv = vg.Conv2d(3, 8, (3, 5), stride=2, padding=1)
    assert conv.w.value.shape == (8, 3, 3, 5) and conv.b.value.shape == (8,)
    bound = 1 / np.sqrt(3 * 3 * 5)
    assert np.abs(conv.w.value).max() <= bound and np.abs(conv.w.value).max() > 0.9 * bound
    out = conv(vg.TensorNode(np.zeros((2, 3, 9, 9))))
    assert out.value.shape == (2, 8, 5, 4)
    assert conv.parameters() == [conv.w, conv.b]
    assert vg.Conv2d(3, 8, 3, bias=False).parameters()[0].value.shape == (8, 3, 3, 3)
    assert len(vg.Conv2d(3, 8, 3, bias=False).parameters()) == 1


def test_sequential_collects_parameters_and_takes_functions():
    net = blitz()
    assert len(net.parameters()) == 10  # two convolutions and three linear layers, weights and biases
    out = net(vg.TensorNode(np.zeros((2, 3, 32, 32))))
    assert out.value.shape == (2, 10)
    with pytest.raises(TypeError, match="Sequential"):
        vg.Sequential(vg.relu, 3)


def _nodes(node):
    """Every node made by an op in the graph that made node."""
    seen, out, todo = set(), [], [node]
    while todo:
        n = todo.pop()
        if id(n) in seen or n.source is None:
            continue
        seen.add(id(n))
        out.append(n)
        todo.extend(n.source.inputs)
    return out


def graph_ops(node):
    """The names of the ops in the graph that made node."""
    return {n.source.op.__name__ for n in _nodes(node)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_fuses_a_convolution_and_its_relu_with_the_same_bits(np_random_state, dtype):
    """Conv2d then vg.relu or vg.ReLU() is one ConvolutionReLU op, whose loss and gradients are those of the
    two ops' graph (vg.unfused()) bit for bit; a Conv2d followed by anything else, or a subclass with its own
    forward, stays a Convolution."""
    np.random.seed(1)

    class Doubled(vg.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    net = vg.to_dtype(vg.Sequential(vg.Conv2d(3, 6, 5), vg.relu, vg.MaxPool2d(2),                 # fused
                                    vg.Conv2d(6, 8, 3, padding=1), vg.ReLU(),                      # fused
                                    vg.Conv2d(8, 8, 3, stride=2), vg.relu,                         # fused (BLAS path)
                                    vg.Conv2d(8, 8, 1), vg.Sigmoid(),                              # not a ReLU
                                    Doubled(8, 4, 1), vg.relu,                                     # own forward
                                    vg.Flatten(), vg.Linear(4 * 2 * 2, 10)), dtype)
    x = np.random.standard_normal((5, 3, 16, 16)).astype(dtype)
    targets = np.array([1, 0, 3, 9, 2])
    results = []
    for graphs in (vg.unfused, __import__("contextlib").nullcontext):
        with graphs():
            xn = vg.TensorNode(x)
            loss = vg.cross_entropy(net(xn), targets)
        loss.backward()
        results.append((loss.value, xn.grad.copy(), [p.grad.copy() for p in net.parameters()], graph_ops(loss)))
        loss.zero_grad()
    (loss0, gx0, grads0, ops0), (loss1, gx1, grads1, ops1) = results
    assert "ConvolutionReLU" not in ops0 and {"Convolution", "ReLU"} <= ops0
    assert "ConvolutionReLU" in ops1 and "Convolution" in ops1 and "ReLU" in ops1  # (the last two: not fused)
    assert loss1.tobytes() == loss0.tobytes() and gx1.tobytes() == gx0.tobytes()
    assert all(a.dtype == b.dtype == dtype and a.tobytes() == b.tobytes() for a, b in zip(grads1, grads0))
    convs = [n for n in _nodes(net(vg.TensorNode(x))) if n.source.op.__name__.startswith("Convolution")]
    assert sorted(n.source.op.__name__ for n in convs) == ["Convolution"] * 2 + ["ConvolutionReLU"] * 3


def test_train_and_eval_switch_dropout_and_batch_norm(np_random_state):
    bn, drop = vg.BatchNorm2d(2), vg.Dropout(0.5)
    net = vg.Sequential(bn, drop)
    x = vg.TensorNode(np.random.standard_normal((4, 2, 3, 3)) * 3 + 1)
    net.train()
    y = net(x).value
    assert (y == 0).mean() > 0.2  # dropout at work
    assert bn.running_mean.any()  # the running statistics moved towards the batch's
    net.eval()
    assert not drop.training and not bn.training
    mean_before = bn.running_mean.copy()
    y = net(x).value
    np.testing.assert_array_equal(bn.running_mean, mean_before)  # not updated in eval
    want = (x.value - mean_before[None, :, None, None]) / np.sqrt(bn.running_var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-12)


def test_batch_norm_modules_check_dimensions():
    with pytest.raises(ValueError, match="BatchNorm2d"):
        vg.BatchNorm2d(3)(vg.TensorNode(np.zeros((4, 3))))
    with pytest.raises(ValueError, match="BatchNorm1d"):
        vg.BatchNorm1d(3)(vg.TensorNode(np.zeros((4, 3, 2, 2))))
    assert vg.BatchNorm1d(3)(vg.TensorNode(np.ones((4, 3, 2)))).value.shape == (4, 3, 2)


def test_to_dtype_casts_parameters_and_buffers():
    net = vg.Sequential(vg.Conv2d(1, 2, 3), vg.BatchNorm2d(2))
    vg.to_dtype(net, np.float32)
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32 for p in net.parameters())
    assert net[1].running_var.dtype == np.float32
    out = net(vg.TensorNode(np.zeros((2, 1, 5, 5), dtype=np.float32)))
    assert out.value.dtype == np.float32


def test_dropout_runs_are_reproducible_with_np_random_seed(np_random_state):
    x = vg.TensorNode(np.random.standard_normal((4, 3, 32, 32)))
    results = []
    for _ in range(2):
        np.random.seed(7)
        results.append(blitz(dropout=0.5)(x).value)
    np.testing.assert_array_equal(results[0], results[1])


def test_blitz_cnn_matches_torch_with_the_same_weights(np_random_state):
    """The tutorial's network: loss and the gradient of every parameter equal PyTorch's to 1e-10 (float64)."""
    torch = pytest.importorskip("torch")
    tnn, F = torch.nn, torch.nn.functional
    np.random.seed(1)
    net = blitz()
    x = np.random.standard_normal((4, 3, 32, 32))
    y = np.array([3, 1, 9, 0])

    tnet = tnn.Sequential(tnn.Conv2d(3, 6, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(),
                          tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84),
                          tnn.ReLU(), tnn.Linear(84, 10)).double()
    tparams = [p for p in tnet.parameters()]
    with torch.no_grad():  # copy vgrad's weights into PyTorch's (vgrad's Linear bias is (1, out))
        for tp, p in zip(tparams, net.parameters()):
            tp.copy_(torch.tensor(p.value.reshape(tp.shape)))

    loss = vg.cross_entropy(net(vg.TensorNode(x)), y)
    loss.backward()
    t_loss = F.cross_entropy(tnet(torch.tensor(x)), torch.tensor(y))
    t_loss.backward()
    np.testing.assert_allclose(loss.value, t_loss.item(), rtol=1e-12)
    for tp, p in zip(tparams, net.parameters()):
        np.testing.assert_allclose(p.grad.reshape(tp.shape), tp.grad.numpy(), rtol=1e-10, atol=1e-13)

    # and one Adam step later, the same weights
    vg.Adam(net.parameters(), lr=0.01).step()
    torch.optim.Adam(tparams, lr=0.01).step()
    for tp, p in zip(tparams, net.parameters()):
        np.testing.assert_allclose(p.value.reshape(tp.shape), tp.detach().numpy(), rtol=1e-10, atol=1e-13)


# ---- nonsensical sizes and settings: a ValueError (or TypeError) naming the module and the value, at
# construction, not a ZeroDivisionError from the initialisation or a NaN in training

@pytest.mark.parametrize("make,message", [
    (lambda: vg.Conv2d(3, 4, 0), "Conv2d: kernel_size must be at least 1, got 0"),
    (lambda: vg.Conv2d(3, 4, (3, 0)), "Conv2d: kernel_size must be at least 1, got (3, 0)"),
    (lambda: vg.Conv2d(3, 4, -1), "Conv2d: kernel_size must be at least 1, got -1"),
    (lambda: vg.Conv2d(3, 4, (1, 2, 3)), "Conv2d: kernel_size must be an int or a pair of ints, got (1, 2, 3)"),
    (lambda: vg.Conv2d(0, 4, 3), "Conv2d: in_channels must be at least 1, got 0"),
    (lambda: vg.Conv2d(3, 0, 3), "Conv2d: out_channels must be at least 1, got 0"),
    (lambda: vg.Conv2d(3, -4, 3), "Conv2d: out_channels must be at least 1, got -4"),
    (lambda: vg.Conv2d(3, 4, 3, stride=0), "Conv2d: stride must be at least 1, got 0"),
    (lambda: vg.Conv2d(3, 4, 3, stride=(1, 0)), "Conv2d: stride must be at least 1, got (1, 0)"),
    (lambda: vg.Conv2d(3, 4, 3, padding=-1), "Conv2d: padding must be at least 0, got -1"),
    (lambda: vg.MaxPool2d(0), "MaxPool2d: kernel_size must be at least 1, got 0"),
    (lambda: vg.MaxPool2d(2, stride=0), "MaxPool2d: stride must be at least 1, got 0"),
    (lambda: vg.AvgPool2d(0), "AvgPool2d: kernel_size must be at least 1, got 0"),
    (lambda: vg.AvgPool2d(2, stride=0), "AvgPool2d: stride must be at least 1, got 0"),
    (lambda: vg.AvgPool2d((2, -2)), "AvgPool2d: kernel_size must be at least 1, got (2, -2)"),
    (lambda: vg.Dropout(1.5), "Dropout: p must lie in [0, 1], got 1.5"),
    (lambda: vg.Dropout(-0.1), "Dropout: p must lie in [0, 1], got -0.1"),
    (lambda: vg.Dropout(float("nan")), "Dropout: p must lie in [0, 1], got nan"),
    (lambda: vg.BatchNorm1d(0), "BatchNorm1d: num_features must be at least 1, got 0"),
    (lambda: vg.BatchNorm2d(-3), "BatchNorm2d: num_features must be at least 1, got -3"),
    (lambda: vg.BatchNorm1d(3, eps=0), "BatchNorm1d: eps must be a finite number greater than 0, got 0"),
    (lambda: vg.BatchNorm2d(3, eps=-1e-5), "BatchNorm2d: eps must be a finite number greater than 0, got -1e-05"),
    (lambda: vg.BatchNorm1d(3, eps=float("inf")), "BatchNorm1d: eps must be a finite number greater than 0, got inf"),
    (lambda: vg.BatchNorm1d(3, momentum=1.5), "BatchNorm1d: momentum must lie in [0, 1], got 1.5"),
    (lambda: vg.BatchNorm1d(3, momentum=float("nan")), "BatchNorm1d: momentum must lie in [0, 1], got nan"),
])
def test_nonsensical_module_settings_are_refused_at_construction(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


@pytest.mark.parametrize("make,message", [
    (lambda: vg.Conv2d(3, 4, 2.5), "Conv2d: kernel_size must be an int, got 2.5"),
    (lambda: vg.Conv2d(3.0, 4, 3), "Conv2d: in_channels must be an int, got 3.0"),
    (lambda: vg.MaxPool2d("2"), "MaxPool2d: kernel_size must be an int, got '2'"),
    (lambda: vg.Dropout("0.5"), "Dropout: p must be a number, got '0.5'"),
    (lambda: vg.BatchNorm1d(3, momentum=None), "BatchNorm1d: momentum must be a number, got None"),
])
def test_settings_of_the_wrong_type_are_named(make, message):
    with pytest.raises(TypeError) as err:
        make()
    assert str(err.value) == message


def test_numpy_integers_are_sizes_too():
    conv = vg.Conv2d(np.int64(3), np.int64(4), np.int64(3), stride=np.int32(1))
    assert conv.w.value.shape == (4, 3, 3, 3)
    assert vg.MaxPool2d(np.int64(2))(vg.TensorNode(np.zeros((1, 1, 4, 4)))).value.shape == (1, 1, 2, 2)


def test_batch_norm_of_an_input_without_channels_is_refused():
    x = vg.TensorNode(np.zeros((4, 0)))
    with pytest.raises(ValueError, match=r"batch_norm: the input has no channels \(shape \(4, 0\)\)"):
        vg.batch_norm(x, np.zeros(0), np.ones(0), training=True)
    with pytest.raises(ValueError, match="batch_norm: eps must be a finite number greater than 0, got 0"):
        vg.batch_norm(vg.TensorNode(np.ones((4, 2))), None, None, training=True, eps=0)
    with pytest.raises(ValueError, match="batch_norm: momentum must lie in"):
        vg.batch_norm(vg.TensorNode(np.ones((4, 2))), np.zeros(2), np.ones(2), training=True, momentum=-1)


def test_dropout_of_everything_gives_zeros_as_in_pytorch(rng):
    # p = 1 is allowed, as in PyTorch: every element is dropped, and nothing is divided by 1 - p = 0
    x = vg.TensorNode(rng.standard_normal((3, 4)))
    y = vg.Dropout(1.0)(x)
    np.testing.assert_array_equal(y.value, np.zeros((3, 4)))
    vg.Sum.do_forward(y).backward()
    np.testing.assert_array_equal(x.grad, np.zeros((3, 4)))
