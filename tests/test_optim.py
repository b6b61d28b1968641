"""
vg.SGD and vg.Adam have torch.optim's semantics: the same parameters and gradients give torch's numbers step
after step (also when some parameters get no gradient, or first get one later), parameter groups, per-parameter
state, zero_grad(set_to_none), state_dict()/load_state_dict(), and torch's errors. The comparisons with PyTorch
skip without it; the semantics tests run anyway.
"""
import io
import pickle
import warnings

import numpy as np
import pytest

import vgrad as vg
from vgrad.optim import Optimizer

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

SHAPES = [(3, 4), (5,), (2, 1, 3), (4, 2)]


def every_step(step, i):
    return True


def sometimes(step, i):
    """Parameter 0 always has a gradient; 1 misses steps 4, 5 and 8; 2 has one only at even steps (it joins at
    step 2); 3 joins at step 5. (Steps counted from 1.)"""
    return {0: True, 1: step not in (3, 4, 7), 2: step % 2 == 1, 3: step >= 4}[i]


def assert_close(node, tensor):
    """Equal to ~1e-15 relative to the parameter's scale. (Not bit for bit: PyTorch's vectorised CPU kernels
    fuse multiply-adds (one rounding where NumPy has two), so results can differ in the last bit.)"""
    expected = tensor.detach().numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(node.value, expected, rtol=1e-15, atol=1e-15 * scale)


def run_both(make_vg, make_torch, rng, has_grad=every_step, steps=10, set_to_none=True, dtype=np.float64,
             close=assert_close):
    """Applies the same gradients to the same parameters under both optimizers and compares the parameters after
    every step. A parameter that gets no gradient at a step is given none in either (after zero_grad(set_to_none=
    False) it keeps its zeroed gradient in both)."""
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    nodes = [vg.TensorNode(v.copy()) for v in values]
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt, t_opt = make_vg(nodes), make_torch(tensors)
    for step in range(steps):
        for i, (n, t) in enumerate(zip(nodes, tensors)):
            if has_grad(step, i):
                g = rng.standard_normal(n.value.shape).astype(dtype)
                n.grad = g.copy()
                t.grad = torch.tensor(g)
        opt.step()
        t_opt.step()
        for n, t in zip(nodes, tensors):
            close(n, t)
        opt.zero_grad(set_to_none=set_to_none)
        t_opt.zero_grad(set_to_none=set_to_none)
        for n, t in zip(nodes, tensors):
            assert (n._grad is None) == (t.grad is None)
            assert n._grad is None or not n._grad.any()
    return opt, t_opt, nodes, tensors


def assert_same_state(opt, t_opt):
    """The state dicts agree: the same hyperparameters, parameter numbering and per-parameter state."""
    ours, theirs = opt.state_dict(), t_opt.state_dict()
    assert len(ours["param_groups"]) == len(theirs["param_groups"])
    for group, t_group in zip(ours["param_groups"], theirs["param_groups"]):
        assert group == {key: t_group[key] for key in group}
    assert ours["state"].keys() == theirs["state"].keys()
    for index, state in ours["state"].items():
        t_state = theirs["state"][index]
        assert state.keys() == t_state.keys()
        for key, value in state.items():
            if key == "step":
                assert value == t_state[key].item()
            else:
                np.testing.assert_allclose(value, t_state[key].numpy(), rtol=1e-14, atol=1e-15)


SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.5, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.02),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05),
]

ADAM_SETTINGS = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99)),
    dict(weight_decay=0.1, eps=1e-6),
    dict(lr=0.01, betas=(0.3, 0.9)),  # 1 - beta1 >= 0.5: torch's lerp takes its other formula
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.02, betas=(0.5, 0.95), weight_decay=0.05, amsgrad=True),
]


@needs_torch
@pytest.mark.parametrize("set_to_none", [True, False], ids=["set_to_none", "zero_filled"])
@pytest.mark.parametrize("has_grad", [every_step, sometimes])
@pytest.mark.parametrize("kwargs", SGD_SETTINGS, ids=str)
def test_sgd_matches_torch(kwargs, has_grad, set_to_none, rng):
    opt, t_opt, _, _ = run_both(lambda p: vg.SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs), rng,
                                has_grad, set_to_none=set_to_none)
    assert_same_state(opt, t_opt)


@needs_torch
@pytest.mark.parametrize("set_to_none", [True, False], ids=["set_to_none", "zero_filled"])
@pytest.mark.parametrize("has_grad", [every_step, sometimes])
@pytest.mark.parametrize("kwargs", ADAM_SETTINGS, ids=str)
def test_adam_matches_torch(kwargs, has_grad, set_to_none, rng):
    opt, t_opt, _, _ = run_both(lambda p: vg.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs), rng,
                                has_grad, set_to_none=set_to_none)
    assert_same_state(opt, t_opt)


@needs_torch
def test_parameter_groups_match_torch(rng):
    def sgd_groups(p):
        return [{"params": p[:2]}, {"params": p[2:3], "lr": 0.3, "nesterov": True},
                {"params": p[3:], "momentum": 0.0, "weight_decay": 0.1}]

    opt, t_opt, _, _ = run_both(lambda p: vg.SGD(sgd_groups(p), lr=0.1, momentum=0.9),
                                lambda p: torch.optim.SGD(sgd_groups(p), lr=0.1, momentum=0.9), rng, sometimes)
    assert_same_state(opt, t_opt)

    def adam_groups(p):
        return [{"params": p[:1], "betas": (0.7, 0.9)}, {"params": p[1:3], "amsgrad": True, "lr": 0.05},
                {"params": p[3:], "weight_decay": 0.1}]

    opt, t_opt, _, _ = run_both(lambda p: vg.Adam(adam_groups(p), lr=0.01),
                                lambda p: torch.optim.Adam(adam_groups(p), lr=0.01), rng, sometimes)
    assert_same_state(opt, t_opt)


@needs_torch
def test_added_group_and_changed_learning_rate_match_torch(rng):
    """add_param_group() at step 4 and a learning rate changed through param_groups at step 7, in both."""
    values = [rng.standard_normal(s) for s in SHAPES]
    nodes = [vg.TensorNode(v.copy()) for v in values]
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt = vg.Adam(nodes[:2], lr=0.01)
    t_opt = torch.optim.Adam(tensors[:2], lr=0.01)
    for step in range(10):
        if step == 3:
            opt.add_param_group({"params": nodes[2:], "lr": 0.05})
            t_opt.add_param_group({"params": tensors[2:], "lr": 0.05})
        if step == 6:
            opt.param_groups[0]["lr"] = t_opt.param_groups[0]["lr"] = 0.001
        for n, t in zip(nodes, tensors):
            g = rng.standard_normal(n.value.shape)
            n.grad, t.grad = g.copy(), torch.tensor(g)
        opt.step()
        t_opt.step()
        opt.zero_grad()
        t_opt.zero_grad()
    for n, t in zip(nodes, tensors):
        assert_close(n, t)
    assert_same_state(opt, t_opt)


@needs_torch
def test_float32_parameters_stay_float32_as_in_torch(rng):
    def close(n, t):
        assert n.value.dtype == np.float32
        np.testing.assert_allclose(n.value, t.detach().numpy(), rtol=1e-5, atol=1e-6)

    for make_vg, make_torch in [(lambda p: vg.Adam(p, amsgrad=True), lambda p: torch.optim.Adam(p, amsgrad=True)),
                                (lambda p: vg.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01))]:
        opt, _, _, _ = run_both(make_vg, make_torch, rng, sometimes, dtype=np.float32, close=close)
        for state in opt.state.values():
            assert all(v.dtype == np.float32 for v in state.values() if isinstance(v, np.ndarray))


@needs_torch
def test_gradients_from_backward_match_torch(rng):
    """End to end: an MLP with a second head used only at every third step. After zero_grad() the unused head's
    parameters have no gradient (backward never reaches them), and both libraries leave them alone."""
    class TwoHeads(vg.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head1, self.head2 = vg.Linear(3, 6), vg.Linear(6, 2), vg.Linear(6, 2)

        def forward(self, x, head):
            return (self.head1 if head == 1 else self.head2)(vg.relu(self.body(x)))

    np.random.seed(0)
    model = TwoHeads()
    params = model.parameters()
    tensors = [torch.tensor(p.value.copy(), requires_grad=True) for p in params]

    def t_forward(x, head):
        w0, b0, w1, b1, w2, b2 = tensors
        hidden = torch.relu(x @ w0.T + b0)
        return hidden @ w1.T + b1 if head == 1 else hidden @ w2.T + b2

    for make_vg, make_torch in [(lambda p: vg.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
                                (lambda p: vg.Adam(p, lr=0.01, weight_decay=0.01),
                                 lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01))]:
        opt, t_opt = make_vg(params), make_torch(tensors)
        for step in range(10):
            head = 2 if step % 3 == 1 else 1
            x, y = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
            loss = vg.cross_entropy(model(vg.TensorNode(x, requires_grad=False), head), y)
            loss.backward()
            t_loss = torch.nn.functional.cross_entropy(t_forward(torch.tensor(x), head), torch.tensor(y))
            t_loss.backward()
            for p, t in zip(params, tensors):
                assert (p._grad is None) == (t.grad is None)
            opt.step()
            t_opt.step()
            opt.zero_grad()
            t_opt.zero_grad()
            loss.clear()
            for p, t in zip(params, tensors):
                np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-13, atol=1e-15)
        assert_same_state(opt, t_opt)


# -- The semantics, without PyTorch ---------------------------------------------------------------------------

def nodes_with_grads(rng, with_grad=(True, True)):
    nodes = [vg.TensorNode(rng.standard_normal(3)) for _ in with_grad]
    for n, has in zip(nodes, with_grad):
        if has:
            n.grad = rng.standard_normal(3)
    return nodes


@pytest.mark.parametrize("make", [lambda p: vg.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda p: vg.Adam(p, lr=0.1, weight_decay=0.1, amsgrad=True)])
def test_parameters_without_a_gradient_are_skipped(make, rng):
    used, unused = nodes_with_grads(rng)
    opt = make([used, unused])
    opt.step()  # both have gradients: both move, both get state
    opt.zero_grad()
    assert used._grad is None and unused._grad is None
    used.grad = rng.standard_normal(3)
    before, state_before = unused.value.copy(), {k: np.copy(v) for k, v in opt.state[unused].items()}
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(unused.value, before)  # not moved by momentum or weight decay
    assert opt.state[unused].keys() == state_before.keys()
    for key, value in opt.state[unused].items():
        np.testing.assert_array_equal(value, state_before[key])

    never = vg.TensorNode(rng.standard_normal(3))
    opt.add_param_group({"params": [never]})
    opt.step()
    assert never not in opt.state and never._grad is None


def test_backward_that_does_not_reach_a_parameter_leaves_it_without_gradient(rng):
    used, unused = vg.TensorNode(rng.standard_normal((2, 3))), vg.TensorNode(rng.standard_normal((2, 3)))
    opt = vg.SGD([used, unused], lr=0.1, momentum=0.9, weight_decay=0.1)
    before = unused.value.copy()
    for _ in range(3):
        loss = vg.Sum.do_forward(used * used)
        loss.backward()
        assert unused._grad is None
        opt.step()
        opt.zero_grad()
        loss.clear()
    np.testing.assert_array_equal(unused.value, before)
    assert unused not in opt.state and "momentum_buffer" in opt.state[used]


def test_reading_grad_gives_a_zero_gradient_that_counts(rng):
    """.grad reads as zeros (vugrad's contract) and that array is then the gradient: weight decay moves it."""
    p = vg.TensorNode(np.ones(3))
    opt = vg.SGD([p], lr=0.5, weight_decay=1.0)
    assert p._grad is None
    assert not p.grad.any()
    opt.step()
    np.testing.assert_array_equal(p.value, np.full(3, 0.5))


def test_adam_counts_steps_per_parameter(rng):
    early, late = nodes_with_grads(rng, (True, False))
    opt = vg.Adam([early, late], lr=0.1)
    opt.step()
    opt.step()
    late.grad = g = rng.standard_normal(3)
    before = late.value.copy()
    opt.step()
    assert opt.state[early]["step"] == 3 and opt.state[late]["step"] == 1
    # Adam's first step for a parameter moves it by lr against the sign of its gradient (up to eps)
    np.testing.assert_allclose(late.value - before, -0.1 * np.sign(g), rtol=1e-6)


def test_zero_grad_set_to_none(rng):
    with_grad, without = nodes_with_grads(rng, (True, False))
    opt = vg.SGD([with_grad, without], lr=0.1)
    array = with_grad._grad
    opt.zero_grad(set_to_none=False)
    assert with_grad._grad is array and not array.any()  # filled in place
    assert without._grad is None  # not created
    opt.zero_grad()  # torch's default: set_to_none=True
    assert with_grad._grad is None and without._grad is None
    assert not with_grad.grad.any()  # .grad still reads as zeros


def test_parameters_may_come_from_any_iterable(rng):
    model = vg.MLP(3, 2)
    params = model.parameters()
    for given in [params, tuple(params), iter(params), (p for p in params)]:
        opt = vg.SGD(given, lr=0.1)
        assert opt.params == params and len(opt.param_groups) == 1
    group = vg.SGD([{"params": params[0]}], lr=0.1)  # a group's 'params' may be one node, as in torch
    assert group.params == params[:1]


@pytest.mark.parametrize("cls", [vg.SGD, vg.Adam])
def test_empty_parameter_list(cls):
    for empty in [[], (), iter([]), (p for p in [])]:
        with pytest.raises(ValueError, match=f"{cls.__name__}: optimizer got an empty parameter list"):
            cls(empty, lr=0.1)


@pytest.mark.parametrize("cls", [vg.SGD, vg.Adam])
def test_what_is_not_a_list_of_parameters_names_the_fix(cls, rng):
    model = vg.Sequential(vg.Linear(3, 2))  # a Sequential can be indexed, so it is iterable
    node = vg.TensorNode(np.zeros(3))
    for wrong, message in [(model, "got the module Sequential itself; pass model.parameters()"),
                           (vg.MLP(2, 2), "pass model.parameters()"),
                           ([model], "parameter 0 is a Sequential; pass model.parameters()"),
                           (np.zeros(3), "NumPy array.*pass model.parameters()"),
                           ([node, np.zeros(3)], "parameter 1 is a ndarray; pass model.parameters()"),
                           ([3.0], "parameter 0 is a float; pass model.parameters()"),
                           (node, r"got one TensorNode; pass a list, \[node\]"),
                           (model.parameters, "got a method; pass model.parameters()"),
                           ({node}, "ordered collections"),
                           ({"params": [node]}, "pass a list of parameter groups"),
                           ([node, {"params": []}], "either TensorNodes or parameter groups"),
                           ([{"params": [node]}, node], "either TensorNodes or parameter groups"),
                           ([vg.TensorNode(np.zeros(3, dtype=int))], "dtype int64.*floating point")]:
        with pytest.raises(TypeError, match=message):
            cls(wrong, lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf TensorNode: parameter 1 was computed by Add"):
        cls([node, node + node], lr=0.1)
    with pytest.raises(ValueError, match='needs the key "params"'):
        cls([{"lr": 0.1}])


@pytest.mark.parametrize("cls", [vg.SGD, vg.Adam])
def test_duplicate_parameters_are_refused(cls, rng):
    a, b = vg.TensorNode(np.zeros(3)), vg.TensorNode(np.zeros(3))
    with pytest.raises(ValueError, match="parameter 2 is the same TensorNode as parameter 0; list each parameter once"):
        cls([a, b, a], lr=0.1)
    with pytest.raises(ValueError, match="parameter group 1: some parameters appear in more than one parameter group"):
        cls([{"params": [a]}, {"params": [b, a]}], lr=0.1)
    opt = cls([a], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    assert len(opt.param_groups) == 1


@needs_torch
def test_torch_updates_duplicates_twice_which_vgrad_refuses():
    """What vgrad guards against: torch 2.13 only warns, then steps a listed-twice parameter twice."""
    t = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        t_opt = torch.optim.SGD([t, t], lr=0.1)
    t.grad = torch.ones(2, dtype=torch.float64)
    t_opt.step()
    assert t[0].item() == pytest.approx(-0.2)


nan, inf = float("nan"), float("inf")
INVALID = [
    (vg.SGD, dict(lr=-1), "Invalid learning rate: -1"),
    (vg.SGD, dict(lr=nan), "Invalid learning rate: nan"),
    (vg.SGD, dict(lr=inf), "Invalid learning rate: inf"),
    (vg.Adam, dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (vg.Adam, dict(lr=nan), "Invalid learning rate: nan"),
    (vg.Adam, dict(lr=inf), "Invalid learning rate: inf"),
    (vg.SGD, dict(lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    (vg.SGD, dict(lr=0.1, momentum=nan), "Invalid momentum value: nan"),
    (vg.SGD, dict(lr=0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
    (vg.SGD, dict(lr=0.1, weight_decay=inf), "Invalid weight_decay value: inf"),
    (vg.SGD, dict(lr=0.1, momentum=0.9, dampening=nan), "Invalid dampening value: nan"),
    (vg.SGD, dict(lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (vg.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (vg.Adam, dict(eps=-1), "Invalid epsilon value: -1"),
    (vg.Adam, dict(eps=nan), "Invalid epsilon value: nan"),
    (vg.Adam, dict(betas=(1.0, 0.9)), r"Invalid beta parameter at index 0: 1.0 \(it must lie in \[0, 1\)\)"),
    (vg.Adam, dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (vg.Adam, dict(betas=(-0.1, 0.9)), "Invalid beta parameter at index 0: -0.1"),
    (vg.Adam, dict(betas=(nan, 0.9)), "Invalid beta parameter at index 0: nan"),
    (vg.Adam, dict(betas=(0.9, 0.99, 0.9)), r"betas must be a pair \(beta1, beta2\)"),
    (vg.Adam, dict(betas=0.9), r"betas must be a pair \(beta1, beta2\)"),
    (vg.Adam, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (vg.Adam, dict(weight_decay=nan), "Invalid weight_decay value: nan"),
]


@pytest.mark.parametrize("cls,kwargs,message", INVALID, ids=[f"{c.__name__}-{k}" for c, k, _ in INVALID])
def test_invalid_hyperparameters(cls, kwargs, message):
    node = vg.TensorNode(np.zeros(3))
    with pytest.raises(ValueError, match=f"{cls.__name__}: {message}"):
        cls([node], **kwargs)
    # the same in a parameter group (its own values are checked), and when set later through opt.<name>
    with pytest.raises(ValueError, match=f"{cls.__name__}, parameter group 0: {message}"):
        cls([{"params": [node], **kwargs}])
    opt = cls([node], lr=0.1)
    *valid, (name, value) = kwargs.items()  # the last setting is the invalid one
    for valid_name, valid_value in valid:
        setattr(opt, valid_name, valid_value)
    before = opt.state_dict()["param_groups"]
    with pytest.raises(ValueError, match=message):
        setattr(opt, name, value)
    assert opt.state_dict()["param_groups"] == before


@needs_torch
@pytest.mark.parametrize("cls,kwargs,message", [case for case in INVALID if "nan" not in str(case[1])
                                                and "inf" not in str(case[1]) and "pair" not in case[2]])
def test_torch_refuses_them_too(cls, kwargs, message):
    with pytest.raises(ValueError, match=message.split(" (")[0].split(r" \(")[0]):
        getattr(torch.optim, cls.__name__)([torch.zeros(3, requires_grad=True)], **kwargs)


def test_hyperparameters_must_be_numbers():
    with pytest.raises(TypeError, match="SGD: the learning rate must be a number, got '0.1'"):
        vg.SGD([vg.TensorNode(np.zeros(3))], lr="0.1")


# -- state_dict and load_state_dict --------------------------------------------------------------------------

def train(model, opt, xs, ys, steps):
    for x, y in zip(xs[:steps], ys[:steps]):
        loss = vg.logceloss(model(vg.TensorNode(x, requires_grad=False)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.clear()


def save_load_pickle(state):
    return pickle.loads(pickle.dumps(state))


def save_load_npz(state):
    buffer = io.BytesIO()
    np.savez(buffer, optimizer=np.array(state, dtype=object))
    buffer.seek(0)
    return np.load(buffer, allow_pickle=True)["optimizer"].item()


OPTIMIZERS = [
    lambda p: vg.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    lambda p: vg.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    lambda p: vg.SGD(p, lr=0.05, momentum=0.9, dampening=0.2),
    lambda p: vg.Adam(p, lr=0.01, weight_decay=1e-3, amsgrad=True),
    lambda p: vg.Adam([{"params": p[:2], "lr": 0.02}, {"params": p[2:], "betas": (0.5, 0.9)}]),
]


@pytest.mark.parametrize("save_load", [save_load_pickle, save_load_npz], ids=["pickle", "npz"])
@pytest.mark.parametrize("make", OPTIMIZERS)
def test_loaded_optimizer_continues_exactly(make, save_load, rng, np_random_state):
    """3 steps, save model and optimizer, load both into new ones, 3 more steps: bit for bit 6 steps straight."""
    xs = [rng.standard_normal((16, 4)) for _ in range(6)]
    ys = [rng.integers(0, 3, 16) for _ in range(6)]
    np.random.seed(1)
    straight = vg.MLP(4, 3)
    np.random.seed(1)
    first = vg.MLP(4, 3)
    train(straight, make(straight.parameters()), xs, ys, 6)

    opt = make(first.parameters())
    train(first, opt, xs, ys, 3)
    weights = io.BytesIO()
    np.savez(weights, *[p.value for p in first.parameters()])
    saved = save_load(opt.state_dict())

    np.random.seed(2)
    second = vg.MLP(4, 3)  # other initial weights, replaced by the saved ones
    weights.seek(0)
    with np.load(weights) as arrays:
        for i, p in enumerate(second.parameters()):
            p.value[...] = arrays[f"arr_{i}"]
    opt2 = make(second.parameters())
    opt2.load_state_dict(saved)
    assert len(opt2.state) == len(second.parameters())
    train(second, opt2, xs[3:], ys[3:], 3)
    for a, b in zip(second.parameters(), straight.parameters()):
        np.testing.assert_array_equal(a.value, b.value)


def test_state_dict_layout_and_snapshot(rng):
    a, b, c = nodes_with_grads(rng, (True, False, True))
    opt = vg.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.1, "name": "head"}], lr=0.01, amsgrad=True)
    opt.step()
    state = opt.state_dict()
    assert state["param_groups"] == [
        {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": True, "params": [0, 1]},
        {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": True, "name": "head",
         "params": [2]}]
    assert list(state["state"]) == [0, 2]  # b has had no gradient, so no state
    assert state["state"][0].keys() == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["state"][0]["step"] == 1
    snapshot = state["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(state["state"][0]["exp_avg"], snapshot)  # a copy, not the live buffer

    opt2 = vg.Adam([{"params": [a, b]}, {"params": [c]}])
    opt2.load_state_dict(state)
    assert opt2.param_groups[1]["lr"] == 0.1 and opt2.param_groups[1]["name"] == "head"  # the saved settings
    assert opt2.state[a]["exp_avg"] is not state["state"][0]["exp_avg"]  # loading copies too
    assert b not in opt2.state


def test_load_state_dict_refuses_what_does_not_fit(rng):
    a, b = nodes_with_grads(rng)
    sgd = vg.SGD([a, b], lr=0.1, momentum=0.9)
    sgd.step()
    adam = vg.Adam([a, b])
    adam.step()
    good = sgd.state_dict()

    def refused(opt, state, message):
        before = opt.state_dict()
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(state)
        after = opt.state_dict()  # nothing changed
        assert after["param_groups"] == before["param_groups"] and after["state"].keys() == before["state"].keys()

    refused(vg.SGD([{"params": [a]}, {"params": [b]}], lr=0.1), good, "different number of parameter groups")
    refused(vg.SGD([a], lr=0.1), good, "doesn't match the size of optimizer's group")
    refused(vg.SGD([a, b], lr=0.1), adam.state_dict(), "lacks momentum, dampening, nesterov")
    wrong_shape = vg.SGD([a, vg.TensorNode(np.zeros(4))], lr=0.1)
    refused(wrong_shape, good, r"parameter 1: 'momentum_buffer' has shape \(3,\), but the parameter has shape \(4,\)")
    mixed = {"state": adam.state_dict()["state"], "param_groups": good["param_groups"]}
    refused(vg.SGD([a, b], lr=0.1), mixed, "unknown state exp_avg, exp_avg_sq, step")
    bad_lr = pickle.loads(pickle.dumps(good))
    bad_lr["param_groups"][0]["lr"] = -1.0
    refused(vg.SGD([a, b], lr=0.1), bad_lr, "Invalid learning rate: -1.0")
    stray = pickle.loads(pickle.dumps(good))
    stray["state"][7] = {}
    refused(vg.SGD([a, b], lr=0.1), stray, "an entry for parameter 7, which no parameter group lists")
    refused(vg.SGD([a, b], lr=0.1), [1, 2], "expected a dict with 'state' and 'param_groups'")


# -- vgrad's first API keeps working ------------------------------------------------------------------------

def test_updates_values_in_place_so_modules_see_them(rng):
    lin = vg.Linear(3, 2)
    w = lin.w.value
    opt = vg.SGD(lin.parameters(), lr=1.0)
    lin.w.grad[...] = 1.0
    before = w.copy()
    opt.step()
    assert lin.w.value is w
    np.testing.assert_array_equal(w, before - 1.0)


def test_settings_as_attributes(rng):
    a, b = nodes_with_grads(rng)
    opt = vg.SGD([a, b], 0.1, 0.9, 0.01)  # positionally: lr, momentum, weight_decay (vgrad's order)
    assert (opt.lr, opt.momentum, opt.weight_decay, opt.dampening, opt.nesterov) == (0.1, 0.9, 0.01, 0.0, False)
    assert opt.params == [a, b]
    opt.lr = 0.5
    assert opt.param_groups[0]["lr"] == 0.5
    opt.add_param_group({"params": [vg.TensorNode(np.zeros(2))], "lr": 0.2})
    with pytest.raises(AttributeError, match="different values"):
        opt.lr
    opt.lr = 0.3  # sets every group
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.3]
    adam = vg.Adam([a], 0.01, (0.8, 0.9), 1e-7, 0.1, True)  # torch's positional order
    assert (adam.lr, adam.betas, adam.eps, adam.weight_decay, adam.amsgrad) == (0.01, (0.8, 0.9), 1e-7, 0.1, True)
    with pytest.raises(TypeError):
        vg.SGD([a], 0.1, 0.9, 0.0, 0.01)  # torch's (..., dampening, weight_decay) by position: refused
    assert "SGD({2 parameters, lr=0.1, momentum=0.9" in repr(vg.SGD([a, b], 0.1, 0.9))


def test_a_subclass_of_the_first_optimizer_api_works(rng):
    """vgrad's first Optimizer took (params, lr) and offered self.params and self.lr."""
    class Plain(Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, lr)

        def step(self):
            for p in self.params:
                p.value -= self.lr * p.grad

    a, = nodes_with_grads(rng, (True,))
    expected = a.value - 0.1 * a.grad
    Plain([a], 0.1).step()
    np.testing.assert_array_equal(a.value, expected)
    with pytest.raises(ValueError, match="Plain: Invalid learning rate: -1"):
        Plain([a], -1)


def test_step_calls_the_closure(rng):
    a, = nodes_with_grads(rng, (True,))
    opt = vg.SGD([a], lr=0.1)
    assert opt.step(lambda: 42.0) == 42.0
    assert opt.step() is None


def test_gradient_of_the_wrong_shape(rng):
    a = vg.TensorNode(np.zeros(3))
    a.grad = np.ones(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"shape \(3,\) has a gradient of shape \(4,\)"):
            vg.Adam([a]).step()
