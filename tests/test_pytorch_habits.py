"""What PyTorch users reach for, in vgrad: print(model), named_parameters(), state_dict()/load_state_dict(),
vg.save/vg.load, loss.item(), float(loss), node.shape, op layers (vg.ReLU()) in Sequential, model.to(dtype),
@vg.no_grad, and Linear's weight/bias. Each is checked against PyTorch's behaviour where PyTorch has one (those
tests skip without torch)."""
import io
import os
import re

import numpy as np
import pytest

import vgrad as vg


def torch_or_skip():
    return pytest.importorskip("torch")


class MLP(vg.Module):
    """A module with two named layers, as the course's MLP (and a class of the same name in PyTorch below)."""

    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.layer1 = vg.Linear(n_in, n_hidden)
        self.layer2 = vg.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.layer2(vg.sigmoid(self.layer1(x)))


def torch_mlp(torch, n_in, n_hidden, n_out):
    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer1 = torch.nn.Linear(n_in, n_hidden)
            self.layer2 = torch.nn.Linear(n_hidden, n_out)

    return MLP()


# ---------------------------------------------------------------- print(model)

def test_print_model_reads_as_in_pytorch():
    torch = torch_or_skip()
    tnn = torch.nn
    pairs = [
        (MLP(784, 3136, 10), torch_mlp(torch, 784, 3136, 10)),
        (vg.Sequential(vg.Linear(4, 8), vg.ReLU(), vg.Linear(8, 3), vg.Sigmoid()),
         tnn.Sequential(tnn.Linear(4, 8), tnn.ReLU(), tnn.Linear(8, 3), tnn.Sigmoid())),
        (vg.Sequential(vg.Conv2d(3, 6, 5), vg.ReLU(), vg.Conv2d(6, 16, 3, stride=2, padding=1, bias=False),
                       vg.Conv2d(16, 4, (3, 1), stride=(2, 1), padding=(0, 1))),
         tnn.Sequential(tnn.Conv2d(3, 6, 5), tnn.ReLU(), tnn.Conv2d(6, 16, 3, stride=2, padding=1, bias=False),
                        tnn.Conv2d(16, 4, (3, 1), stride=(2, 1), padding=(0, 1)))),
        (vg.Sequential(MLP(2, 4, 3), vg.Sequential(vg.Linear(3, 3))),
         tnn.Sequential(torch_mlp(torch, 2, 4, 3), tnn.Sequential(tnn.Linear(3, 3)))),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
    assert str(vg.Linear(2, 3)) == "Linear(in_features=2, out_features=3, bias=True)"
    assert repr(vg.MLP(2, 3)) == ("MLP(\n  (layer1): Linear(in_features=2, out_features=8, bias=True)\n"
                                  "  (layer2): Linear(in_features=8, out_features=3, bias=True)\n)")


def test_print_model_shows_vgrad_layers_and_functions():
    net = vg.Sequential(vg.MaxPool2d(2), vg.AvgPool2d(3, stride=1), vg.Flatten(), vg.Dropout(0.25),
                        vg.BatchNorm1d(4), vg.relu)
    assert repr(net) == ("Sequential(\n"
                         "  (0): MaxPool2d(kernel_size=2, stride=2)\n"
                         "  (1): AvgPool2d(kernel_size=3, stride=1)\n"
                         "  (2): Flatten()\n"
                         "  (3): Dropout(p=0.25)\n"
                         "  (4): BatchNorm1d(4, eps=1e-05, momentum=0.1)\n"
                         "  (5): relu\n"
                         ")")

    class Empty(vg.Module):
        def forward(self, x):
            return x

    assert repr(Empty()) == "Empty()"


# ---------------------------------------------------------------- names of parameters, state dicts

def test_names_are_pytorchs():
    torch = torch_or_skip()
    tnn = torch.nn

    class Stack(vg.Module):
        def __init__(self):
            super().__init__()
            self.layers = [vg.Linear(2, 3), vg.Linear(3, 3)]
            self.norm = vg.BatchNorm1d(3)

    class TorchStack(tnn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tnn.ModuleList([tnn.Linear(2, 3), tnn.Linear(3, 3)])
            self.norm = tnn.BatchNorm1d(3)

    pairs = [(MLP(2, 4, 3), torch_mlp(torch, 2, 4, 3)),
             (vg.Sequential(vg.Conv2d(1, 2, 3), vg.ReLU(), vg.Conv2d(2, 2, 3, bias=False), vg.Flatten(),
                            vg.Linear(2, 2)),
              tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.ReLU(), tnn.Conv2d(2, 2, 3, bias=False), tnn.Flatten(),
                             tnn.Linear(2, 2))),
             (Stack(), TorchStack())]
    for ours, theirs in pairs:
        assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
        torch_keys = [k for k in theirs.state_dict() if not k.endswith("num_batches_tracked")]
        assert list(ours.state_dict()) == torch_keys
        # (a plain list of modules is named item by item, where torch's ModuleList is a module of its own)
        expected = [child for name, _ in theirs.named_children()
                    for child in (["layers.0", "layers.1"] if name == "layers" else [name])]
        assert [name for name, _ in ours.named_children()] == expected
        if not isinstance(ours, Stack):  # (torch lists its ModuleList 'layers' as a module of its own)
            assert [name for name, _ in ours.named_modules()] == [name for name, _ in theirs.named_modules()]
    # named_modules: every module, each once, with its path
    assert [name for name, _ in Stack().named_modules()] == ["", "layers.0", "layers.1", "norm"]


def test_named_parameters_are_the_parameters_in_order():
    for model in (vg.MLP(2, 3), MLP(2, 4, 3), vg.Sequential(vg.Conv2d(1, 2, 3), vg.ReLU(), vg.BatchNorm2d(2))):
        assert [p for _, p in model.named_parameters()] == model.parameters()


def test_linear_weight_and_bias_are_w_and_b():
    lin = vg.Linear(3, 2)
    assert lin.weight is lin.w and lin.bias is lin.b
    assert lin.weight.value.shape == (2, 3) and lin.bias.value.shape == (1, 2)
    new = vg.TensorNode(np.ones((2, 3)))
    lin.weight = new
    assert lin.w is new and lin.parameters()[0] is new
    conv = vg.Conv2d(1, 2, 3, bias=False)
    assert conv.weight is conv.w and conv.bias is None
    assert list(lin.state_dict()) == ["weight", "bias"]  # PyTorch's names, for w and b alike


def test_state_dict_is_a_snapshot_of_arrays():
    model = MLP(2, 4, 3)
    state = model.state_dict()
    assert type(state).__name__ == "OrderedDict"
    assert all(type(v) is np.ndarray for v in state.values())
    np.testing.assert_array_equal(state["layer1.weight"], model.layer1.w.value)
    model.layer1.w.value += 1  # training goes on...
    assert not np.array_equal(state["layer1.weight"], model.layer1.w.value)  # ...the snapshot stays


def test_load_state_dict_restores_the_outputs_in_place(np_random_state):
    np.random.seed(0)
    trained, fresh = MLP(2, 4, 3), MLP(2, 4, 3)
    bn = vg.BatchNorm1d(3)
    bn(vg.TensorNode(np.random.standard_normal((8, 3))))
    x = vg.TensorNode(np.random.standard_normal((5, 2)))
    nodes, arrays = fresh.parameters(), [p.value for p in fresh.parameters()]
    assert repr(fresh.load_state_dict(trained.state_dict())) == "<All keys matched successfully>"
    np.testing.assert_array_equal(fresh(x).value, trained(x).value)
    assert fresh.parameters() == nodes and all(p.value is a for p, a in zip(nodes, arrays))  # copied in place
    bn2 = vg.BatchNorm1d(3)
    bn2.load_state_dict(bn.state_dict())
    np.testing.assert_array_equal(bn2.running_mean, bn.running_mean)
    np.testing.assert_array_equal(bn2.running_var, bn.running_var)
    assert bn.running_mean.any()


def test_load_state_dict_casts_to_the_models_dtype():
    model = MLP(2, 4, 3).to(np.float32)
    model.load_state_dict(MLP(2, 4, 3).state_dict())
    assert all(p.value.dtype == np.float32 for p in model.parameters())


def _torch_message(text):
    return re.sub(r"torch\.Size\(\[([^\]]*)\]\)", lambda m: str(tuple(int(d) for d in m.group(1).split(", "))),
                  text)


def test_load_state_dict_errors_are_pytorchs():
    torch = torch_or_skip()
    ours, theirs = MLP(4, 16, 3), torch_mlp(torch, 4, 16, 3)
    for change in (lambda sd: sd.pop("layer2.bias"),
                   lambda sd: sd.update(extra=sd["layer1.bias"]),
                   lambda sd: sd.update({"layer1.weight": sd["layer2.weight"]}),
                   lambda sd: (sd.pop("layer2.bias"), sd.update(extra=sd["layer1.bias"], more=sd["layer1.bias"]),
                               sd.update({"layer1.weight": sd["layer2.weight"]}))):
        mine, torchs = ours.state_dict(), theirs.state_dict()
        change(mine)
        change(torchs)
        if "layer1.weight" in mine and mine["layer1.weight"].shape != (16, 4):
            mine["layer1.weight"] = np.ones(tuple(torchs["layer1.weight"].shape))
        with pytest.raises(RuntimeError) as torch_err:
            theirs.load_state_dict(torchs)
        with pytest.raises(RuntimeError) as err:
            ours.load_state_dict(mine)
        assert str(err.value) == _torch_message(str(torch_err.value))
    with pytest.raises(TypeError, match=re.escape("Expected state_dict to be dict-like, got <class 'list'>.")):
        ours.load_state_dict([1, 2])
    with pytest.raises(TypeError, match=re.escape("Expected state_dict to be dict-like, got <class 'list'>.")):
        theirs.load_state_dict([1, 2])


def test_load_state_dict_not_strict_returns_what_did_not_match():
    torch = torch_or_skip()
    ours, theirs = MLP(4, 16, 3), torch_mlp(torch, 4, 16, 3)
    mine, torchs = ours.state_dict(), theirs.state_dict()
    for sd in (mine, torchs):
        sd.pop("layer2.bias")
        sd["extra"] = sd["layer1.bias"]
    result, torch_result = ours.load_state_dict(mine, strict=False), theirs.load_state_dict(torchs, strict=False)
    assert result.missing_keys == torch_result.missing_keys == ["layer2.bias"]
    assert result.unexpected_keys == torch_result.unexpected_keys == ["extra"]


def test_load_state_dict_changes_nothing_when_it_fails():
    model = MLP(2, 4, 3)
    before = model.state_dict()
    bad = MLP(2, 4, 3).state_dict()
    bad["layer2.weight"] = np.ones((5, 5))
    with pytest.raises(RuntimeError, match=re.escape("size mismatch for layer2.weight: copying a param with shape "
                                                     "(5, 5) from checkpoint, the shape in current model is (3, 4).")):
        model.load_state_dict(bad)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


# ---------------------------------------------------------------- saving and loading

def test_save_and_load_a_model_and_an_optimizer(tmp_path, np_random_state):
    np.random.seed(1)
    x, y = np.random.standard_normal((16, 2)), np.random.randint(0, 3, 16)

    def step(model, opt):
        loss = vg.logceloss(vg.logsoftmax(model(vg.TensorNode(x))), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.clear()
        return loss.item()

    model = MLP(2, 4, 3)
    opt = vg.Adam(model.parameters(), lr=0.01)
    step(model, opt)
    path = tmp_path / "checkpoint.pt"  # written as named: no .npz appended
    vg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, path)
    assert os.listdir(tmp_path) == ["checkpoint.pt"]

    checkpoint = vg.load(path)
    assert checkpoint["epoch"] == 1
    copy = MLP(2, 4, 3)
    copy.load_state_dict(checkpoint["model"])
    copy_opt = vg.Adam(copy.parameters(), lr=0.5)
    copy_opt.load_state_dict(checkpoint["optimizer"])
    assert copy_opt.param_groups[0]["betas"] == (0.9, 0.999)  # tuples stay tuples, int keys int keys
    assert sorted(copy_opt.state_dict()["state"]) == [0, 1, 2, 3]
    for _ in range(3):  # the copy continues exactly as the original
        assert step(copy, copy_opt) == step(model, opt)


def test_save_to_a_file_object_and_numpy_savez_files_load_too(tmp_path):
    model = MLP(2, 4, 3)
    buffer = io.BytesIO()
    vg.save(model.state_dict(), buffer)
    buffer.seek(0)
    assert list(vg.load(buffer)) == list(model.state_dict())
    np.savez(tmp_path / "plain.npz", **model.state_dict())
    for loaded in (np.load(tmp_path / "plain.npz"), vg.load(tmp_path / "plain.npz")):
        MLP(2, 4, 3).load_state_dict(loaded)
    values = {"a": np.float32(1.5), "b": [1, "two", None, True, 2.5], (1, 2): np.arange(3)}
    vg.save(values, tmp_path / "values")
    loaded = vg.load(tmp_path / "values")
    assert loaded["a"] == np.float32(1.5) and type(loaded["a"]) is np.float32
    assert loaded["b"] == [1, "two", None, True, 2.5]
    np.testing.assert_array_equal(loaded[(1, 2)], np.arange(3))


def test_save_refuses_what_it_cannot_load_safely(tmp_path):
    with pytest.raises(TypeError, match=re.escape("vg.save(model.state_dict(), path)")):
        vg.save(vg.MLP(2, 3), tmp_path / "model")
    with pytest.raises(TypeError, match="state_dict()"):
        vg.save({"opt": vg.SGD(vg.MLP(2, 3).parameters(), lr=0.1)}, tmp_path / "opt")
    with pytest.raises(TypeError, match="Python objects"):
        vg.save({"x": np.array([object()])}, tmp_path / "objects")
    assert not os.listdir(tmp_path)
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))  # a pickle inside
    with pytest.raises(ValueError, match="allow_pickle"):
        vg.load(tmp_path / "pickled.npz")


# ---------------------------------------------------------------- numbers out of nodes

def test_item_float_and_format_as_in_pytorch():
    torch = torch_or_skip()
    for array in (np.array(2.5), np.array([[0.1]]), np.array([3.0], dtype=np.float32), np.array(7)):
        node, tensor = vg.TensorNode(array), torch.tensor(array)
        assert node.item() == tensor.item() and type(node.item()) is type(tensor.item())
        assert float(node) == float(tensor)
        if array.ndim == 0:
            assert f"{node}" == f"{tensor}" and f"{node:.3f}" == f"{tensor:.3f}"
    big, big_tensor = vg.TensorNode(np.ones((3, 2))), torch.ones(3, 2)
    with pytest.raises(ValueError, match=re.escape("item(): a node with 6 elements (shape (3, 2))")):
        big.item()
    with pytest.raises(RuntimeError):
        big_tensor.item()  # (PyTorch's is a RuntimeError; NumPy's and vgrad's a ValueError)
    with pytest.raises(ValueError, match=re.escape("shape (3, 2)")):
        float(big)
    with pytest.raises(ValueError):
        float(big_tensor)
    with pytest.raises(TypeError, match="format node.value"):
        f"{big:.2f}"
    assert f"{big}" == str(big)


def test_loss_item_in_a_training_loop():
    model = vg.MLP(2, 3)
    total = 0.0
    for _ in range(2):
        loss = vg.logceloss(model(vg.TensorNode(np.ones((4, 2)))), np.zeros(4, dtype=int))
        total += loss.item()
        loss.backward()
        loss.zero_grad()
        loss.clear()
    assert type(total) is float and total > 0


def test_shape_ndim_dtype():
    torch = torch_or_skip()
    array = np.ones((2, 3), dtype=np.float32)
    node, tensor = vg.TensorNode(array), torch.tensor(array)
    assert node.shape == tuple(tensor.shape) == node.size() and node.ndim == tensor.ndim == 2
    assert node.dtype == np.float32 and str(tensor.dtype) == "torch.float32"


# ---------------------------------------------------------------- layers, dtypes, no_grad

def test_relu_and_sigmoid_layers_in_sequential_as_in_pytorch():
    torch = torch_or_skip()
    net = vg.Sequential(vg.Linear(3, 4), vg.ReLU(), vg.Linear(4, 2), vg.Sigmoid())
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2),
                               torch.nn.Sigmoid()).double()
    with torch.no_grad():
        for tp, p in zip(tnet.parameters(), net.parameters()):
            tp.copy_(torch.tensor(p.value.reshape(tp.shape)))
    x = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(net(vg.TensorNode(x)).value, tnet(torch.tensor(x)).detach().numpy(), rtol=1e-12)
    assert net(vg.TensorNode(x)).source.op is vg.Sigmoid
    assert len(net.parameters()) == 4


def test_model_to_dtype_returns_the_model():
    torch = torch_or_skip()
    model = vg.MLP(2, 3)
    assert model.to(np.float32) is model
    assert all(p.value.dtype == np.float32 for p in model.parameters())
    assert model.double() is model and model.layer1.w.value.dtype == np.float64
    assert model.float() is model and model.layer1.w.value.dtype == np.float32
    assert model.to("cpu") is model
    out = model(vg.TensorNode(np.ones((2, 2), dtype=np.float32)))
    assert out.value.dtype == np.float32
    with pytest.raises(TypeError, match=re.escape("MLP.to only accepts floating point dtypes, but got desired "
                                                  "dtype=int64")):
        model.to(np.int64)
    with pytest.raises(TypeError, match="only accepts floating point"):
        torch.nn.Linear(2, 3).to(torch.int64)
    with pytest.raises(ValueError, match="CPU only"):
        model.to("cuda")


def test_model_zero_grad():
    model = vg.MLP(2, 3)
    vg.logceloss(model(vg.TensorNode(np.ones((4, 2)))), np.zeros(4, dtype=int)).backward()
    assert any(p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert all(p._grad is None and not p.grad.any() for p in model.parameters())


def test_no_grad_as_a_decorator_with_and_without_parentheses_as_in_pytorch():
    torch = torch_or_skip()
    model, tmodel = vg.Linear(2, 3), torch.nn.Linear(2, 3)

    @vg.no_grad
    def bare(x):
        """docstring"""
        return model(x)

    @vg.no_grad()
    def called(x):
        return model(x)

    @torch.no_grad
    def torch_bare(x):
        return tmodel(x)

    @torch.no_grad()
    def torch_called(x):
        return tmodel(x)

    x = vg.TensorNode(np.ones((1, 2)))
    assert not bare(x).requires_grad and not called(x).requires_grad
    assert not torch_bare(torch.ones(1, 2)).requires_grad and not torch_called(torch.ones(1, 2)).requires_grad
    assert bare.__name__ == "bare" and bare.__doc__ == "docstring"
    assert model(x).requires_grad  # outside, graphs again
    with vg.no_grad():
        assert not model(x).requires_grad
    block = vg.no_grad()
    with block:
        with block:  # one instance, entered twice
            assert not model(x).requires_grad
        assert not model(x).requires_grad
    assert model(x).requires_grad
    with pytest.raises(TypeError, match="no_grad"):
        vg.no_grad(3)
