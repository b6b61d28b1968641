"""vgrad against vugrad itself, side by side in one process: the course's MLP (experiments/train_mlp.py) trained
for 60 steps prints the same loss at every step, bit for bit (float.hex), and ends with the same parameters, both
with vgrad's fused ops (the default) and inside vg.unfused(); on the synthetic data and on raw 0-255 uint8
MNIST-shaped pixels (Fashion-MNIST when Debian's dataset-fashion-mnist is installed, random pixels otherwise),
where a 1-ulp difference grows into a different printed loss within tens of steps.

vugrad is imported from a work tree of dlvu/vugrad named by the environment variable VGRAD_VUGRAD_DIR (the tests
skip without it); it is never part of this repository.
"""
import contextlib
import gzip
import os

import numpy as np
import pytest

import vgrad as vg
import vgrad.core as core
from vugrad_tree import VUGRAD_DIR, imported_vugrad

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FASHION_LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
STEPS, BATCH = 60, 128

pytestmark = pytest.mark.skipif(not VUGRAD_DIR, reason="set VGRAD_VUGRAD_DIR to a work tree of dlvu/vugrad")


@pytest.fixture(scope="module")
def vugrad():
    """The package vugrad of VGRAD_VUGRAD_DIR, imported for this module only (sys.modules is restored)."""
    with imported_vugrad(VUGRAD_DIR) as vu:
        yield vu


def mlp_class(lib):
    """The course script's MLP, written against `lib` (vugrad or vgrad) as a student writes it."""

    class MLP(lib.Module):
        def __init__(self, input_size, output_size, hidden_mult=4):
            super().__init__()
            hidden_size = hidden_mult * input_size
            self.layer1 = lib.Linear(input_size, hidden_size)
            self.layer2 = lib.Linear(hidden_size, output_size)

        def forward(self, input):
            hidden = self.layer1(input)
            hidden = lib.sigmoid(hidden)
            output = self.layer2(hidden)
            return lib.logsoftmax(output)

        def parameters(self):
            return self.layer1.parameters() + self.layer2.parameters()

    return MLP


def train(lib, xtrain, ytrain, lr, seed=0):
    """The course script's training loop for STEPS batches: (the losses as float.hex, the final parameters)."""
    np.random.seed(seed)  # Linear draws its weights from np.random, in vugrad's order
    mlp = mlp_class(lib)(input_size=xtrain.shape[1], output_size=int(ytrain.max()) + 1)
    losses = []
    for fr in range(0, STEPS * BATCH, BATCH):
        batch, targets = xtrain[fr:fr + BATCH, :], ytrain[fr:fr + BATCH]
        batch = lib.TensorNode(value=batch)
        outputs = mlp(batch)
        loss = lib.logceloss(outputs, targets)
        losses.append(float(loss.value).hex())
        loss.backward()
        for parm in mlp.parameters():
            parm.value -= lr * parm.grad
        loss.zero_grad()
        loss.clear()
    return losses, [p.value.copy() for p in mlp.parameters()]


def synth_data(vu):
    np.random.seed(1)
    (xtrain, ytrain), _, _ = vu.load_synth(num_train=STEPS * BATCH, num_val=10)
    return xtrain, ytrain


def pixel_data():
    """STEPS * BATCH images of 784 uint8 pixels (0-255) and their labels."""
    n = STEPS * BATCH
    if os.path.exists(FASHION) and os.path.exists(FASHION_LABELS):
        with gzip.open(FASHION) as f:
            x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)[:n].copy()
        with gzip.open(FASHION_LABELS) as f:
            y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n].astype(np.int64)
        return x, y
    rng = np.random.default_rng(2)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


MODES = {"fused": contextlib.nullcontext, "unfused": vg.unfused}


_VUGRAD_RUNS = {}


def check_parity(vu, data, xtrain, ytrain, lr, mode):
    if data not in _VUGRAD_RUNS:  # vugrad's run, once per data set
        _VUGRAD_RUNS[data] = train(vu, xtrain, ytrain, lr)
    want_losses, want_params = _VUGRAD_RUNS[data]
    with MODES[mode]():
        losses, params = train(vg, xtrain, ytrain, lr)
    for step, (got, want) in enumerate(zip(losses, want_losses)):
        assert got == want, f"step {step}: vgrad's loss {float.fromhex(got)!r} != vugrad's {float.fromhex(want)!r}"
    assert len(losses) == len(want_losses) == STEPS
    for k, (p, q) in enumerate(zip(params, want_params)):
        assert p.dtype == q.dtype and np.array_equal(p, q), f"parameter {k} differs after {STEPS} steps"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_synth_mlp_matches_vugrad_bit_for_bit(vugrad, mode, np_random_state):
    xtrain, ytrain = synth_data(vugrad)
    check_parity(vugrad, "synth", xtrain, ytrain, 0.1, mode)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pixel_mlp_matches_vugrad_bit_for_bit(vugrad, mode, np_random_state):
    xtrain, ytrain = pixel_data()
    check_parity(vugrad, "pixels", xtrain, ytrain, 0.0001, mode)
