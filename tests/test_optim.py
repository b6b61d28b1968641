"""vg.SGD and vg.Adam give torch.optim's numbers: the same parameters and gradients, step after step."""
import numpy as np
import pytest

import vgrad as vg

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), (2, 1, 3)]


def run_both(make_vg, make_torch, rng, steps=6, dtype=np.float64):
    """Applies the same sequence of random gradients to the same parameters under both optimizers."""
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    nodes = [vg.TensorNode(v.copy()) for v in values]
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt, t_opt = make_vg(nodes), make_torch(tensors)
    for _ in range(steps):
        for n, t in zip(nodes, tensors):
            g = rng.standard_normal(n.value.shape).astype(dtype)
            n.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        t_opt.step()
        opt.zero_grad()
        for n in nodes:
            assert not n.grad.any()
    return nodes, tensors


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.01), (0.0, 0.1)])
def test_sgd_matches_torch(momentum, weight_decay, rng):
    nodes, tensors = run_both(lambda p: vg.SGD(p, lr=0.1, momentum=momentum, weight_decay=weight_decay),
                              lambda p: torch.optim.SGD(p, lr=0.1, momentum=momentum, weight_decay=weight_decay),
                              rng)
    for n, t in zip(nodes, tensors):
        np.testing.assert_allclose(n.value, t.detach().numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kwargs", [{}, {"lr": 0.01, "betas": (0.8, 0.99)}, {"weight_decay": 0.1, "eps": 1e-6}])
def test_adam_matches_torch(kwargs, rng):
    nodes, tensors = run_both(lambda p: vg.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs), rng, steps=10)
    for n, t in zip(nodes, tensors):
        np.testing.assert_allclose(n.value, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_float32_parameters_stay_float32(rng):
    nodes, tensors = run_both(lambda p: vg.Adam(p), lambda p: torch.optim.Adam(p), rng, dtype=np.float32)
    for n, t in zip(nodes, tensors):
        assert n.value.dtype == np.float32
        np.testing.assert_allclose(n.value, t.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_updates_values_in_place_so_modules_see_them(rng):
    lin = vg.Linear(3, 2)
    w = lin.w.value
    opt = vg.SGD(lin.parameters(), lr=1.0)
    lin.w.grad[...] = 1.0
    before = w.copy()
    opt.step()
    assert lin.w.value is w
    np.testing.assert_array_equal(w, before - 1.0)


def test_bad_arguments():
    with pytest.raises(TypeError, match="SGD"):
        vg.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="Adam"):
        vg.Adam([vg.TensorNode(np.zeros(3))], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="SGD"):
        vg.SGD([vg.TensorNode(np.zeros(3))], lr=-1)
