"""Threads: results under concurrency are exactly the results of running one thing after the other.

The kernels release the GIL on large arrays (NPY_BEGIN_THREADS_THRESHOLDED), so two threads really run
kernels at the same time; what must hold then is correctness, which is asserted here. How much faster it
is gets measured and printed (`pytest -s`), never asserted: the machine is shared.
"""
import threading
import time

import numpy as np
import pytest

import vgrad as vg
import vgrad._C as C


def train(model, data, steps=40, lr=0.05):
    """The course loop on one model; returns the losses and the final parameter values."""
    (x, y) = data
    losses = []
    for step in range(steps):
        fr = (step * 64) % x.shape[0]
        out = model(vg.TensorNode(x[fr:fr + 64]))
        loss = vg.logceloss(out, y[fr:fr + 64])
        loss.backward()
        for p in model.parameters():
            p.value -= lr * p.grad
        losses.append(float(loss.value))
        loss.zero_grad()
        loss.clear()
    return losses, [p.value.copy() for p in model.parameters()]


def make(seed):
    """A model (drawn from np.random, as vugrad does) and its data, both from `seed`."""
    np.random.seed(seed)
    model = vg.MLP(input_size=24, output_size=5, hidden_mult=8)  # 24 -> 192 -> 5: hidden layers of 64x192
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((640, 24)), rng.integers(0, 5, 640)
    return model, data


def run_threads(fns):
    results, errors = [None] * len(fns), []

    def target(i):
        try:
            results[i] = fns[i]()
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_models_trained_in_two_threads_match_sequential(np_random_state):
    sequential = [train(*make(seed)) for seed in (1, 2)]
    models = [make(seed) for seed in (1, 2)]  # drawn in the main thread: np.random is shared state
    concurrent = run_threads([lambda m=m: train(*m) for m in models])
    for (losses, params), (c_losses, c_params) in zip(sequential, concurrent):
        assert c_losses == losses, "the losses differ from the sequential run"
        for p, c in zip(params, c_params):
            np.testing.assert_array_equal(c, p)


def test_many_threads_share_inputs_without_interference(rng):
    """Eight threads call every kind of kernel on the same (read-only) inputs at once."""
    a = rng.standard_normal((300, 400))
    a.setflags(write=False)
    b = rng.standard_normal((400, 200))
    idx = rng.integers(0, 400, 300)

    def work():
        out = []
        for _ in range(5):
            out = [C.exp_forward(a), C.sigmoid_backward(a, a), C.rowsum_forward(a), C.rowmax_forward(a)[1],
                   C.normalize_forward(np.abs(a))[0], C.matmul_forward(a, b), C.select_forward(a, idx),
                   C.expand_backward(a, 0), C.sum_forward(a)]
        return out

    want = work()
    for got in run_threads([work] * 8):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_gil_is_released_on_large_arrays_measurement(rng):
    """Not an assertion on time: prints how long two big kernels take in two threads against one after the
    other. With the GIL released the ratio is near 0.5 on an idle two-core machine; near 1 if it were held.
    What is asserted is that the results are right."""
    x = rng.standard_normal(4_000_000)

    def job():
        return C.exp_forward(x)

    t0 = time.perf_counter()
    one = job()
    job()
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    both = run_threads([job, job])
    concurrent = time.perf_counter() - t0
    print(f"\nexp of 4e6 float64: two in a row {sequential * 1e3:.1f} ms, in two threads {concurrent * 1e3:.1f} ms "
          f"(ratio {concurrent / sequential:.2f})")
    for r in both:
        np.testing.assert_array_equal(r, one)


@pytest.mark.parametrize("source", ["convert.c", "elementwise.c", "reduce.c", "select.c", "shape.c", "matmul.c"])
def test_no_mutable_globals_in_kernel_files(source):
    """No file-scope variable that could be shared between threads: every file-scope `static` is a function
    or const."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "csrc" / source).read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    depth, offenders = 0, []
    for line in text.splitlines():
        if depth == 0 and re.match(r"\s*static\b", line) and "(" not in line.split("=")[0] and "const" not in line:
            offenders.append(line.strip())
        depth += line.count("{") - line.count("}")
    assert not offenders, f"{source}: file-scope mutable state: {offenders}"
