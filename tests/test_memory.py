"""Memory: no reference leaks in any kernel (error paths included), graphs freed after clear(), a flat RSS
over 3,000 training steps, and absurd sizes refused with MemoryError/ValueError instead of an overflowed
allocation."""
import gc
import os
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import vgrad as vg
import vgrad._C as C
from op_table import BAD_ARRAYS, c_calls

CALLS = c_calls()


def refcounts(objs):
    """The reference counts of the objects that belong to the caller (small ints and None are shared by the
    whole interpreter, so their counts move with unrelated code)."""
    return [sys.getrefcount(o) for o in objs if not isinstance(o, (int, type(None)))]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_kernel_calls_leave_input_refcounts_unchanged(name):
    call = CALLS[name]
    fn = getattr(C, name)
    args = list(call.args)
    fn(*args)  # warm up: anything cached on first use (dtype objects, interned strings) is made now
    before = refcounts(args)
    for _ in range(300):
        out = fn(*args)
    del out
    assert refcounts(args) == before, f"{name} leaks references to its arguments"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_error_paths_leave_refcounts_unchanged(name):
    """Each way of failing (a bad dtype in any array position, too few arguments, a bad shape or int) many
    times over: the arguments' counts are unchanged and nothing accumulates in the traced heap."""
    call = CALLS[name]
    fn = getattr(C, name)
    cases = []
    for pos in call.arrays:
        for bad in ("complex", "object", "str", "ragged"):
            args = list(call.args)
            args[pos] = BAD_ARRAYS[bad](args[pos])
            cases.append(args)
    cases.append(list(call.args[:-1]))
    for pos in call.shapes:
        args = list(call.args)
        args[pos] = (-1, 3)
        cases.append(args)
    for pos in call.ints + call.indices:
        args = list(call.args)
        args[pos] = 2**70 if pos in call.ints else np.array([99] * np.size(args[pos]))
        cases.append(args)

    def fail_all(times):
        for args in cases:
            for _ in range(times):
                try:
                    fn(*args)
                except (TypeError, ValueError, IndexError):
                    pass
                else:
                    raise AssertionError(f"{name} accepted {args!r}")

    fail_all(2)
    before = [refcounts(args) for args in cases]
    tracemalloc.start()
    try:
        fail_all(100)  # anything allocated once (caches of the interpreter or of pytest) is allocated here
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        fail_all(500)  # a leak allocates again on every call: at least one object, 28 bytes or more
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert [refcounts(args) for args in cases] == before, f"{name} leaks references on an error path"
    if os.environ.get("PYTHONMALLOC"):
        return  # the sanitizer and valgrind runs: without pymalloc's pools the traced total drifts by itself
    calls = 500 * len(cases)
    assert grown < 8 * calls, f"{name}: {grown} bytes stayed allocated after {calls} failing calls"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_outputs_are_freed(name):
    """Results are owned by the caller alone: dropping them frees them (and nothing else stays behind)."""
    call = CALLS[name]
    fn = getattr(C, name)
    fn(*call.args)
    tracemalloc.start()
    try:
        for _ in range(500):
            fn(*call.args)
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            out = fn(*call.args)
            refs = [weakref.ref(o) for o in (out if isinstance(out, tuple) else (out,))
                    if isinstance(o, np.ndarray) and not any(o is a for a in call.args)]
            del out
            assert all(r() is None for r in refs), f"{name}: a result outlived its last reference"
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    if not os.environ.get("PYTHONMALLOC"):  # see test_error_paths_leave_refcounts_unchanged
        assert grown < 20_000, f"{name}: {grown} bytes stayed allocated after 500 calls"


# ------------------------------------------------------------------------------------------------
# Graphs
# ------------------------------------------------------------------------------------------------


def graph_objects(loss):
    """Every TensorNode and OpNode below loss except the leaves (which the caller holds)."""
    found, stack, seen = [], [loss], set()
    while stack:
        node = stack.pop()
        if id(node) in seen or node.source is None:
            continue
        seen.add(id(node))
        found += [node, node.source]
        stack.extend(node.source.inputs)
    return found


@pytest.mark.parametrize("collector", ["refcounting only", "with gc"])
def test_mlp_graph_is_freed_after_clear_and_del(collector, rng, np_random_state):
    np.random.seed(0)
    mlp = vg.MLP(input_size=5, output_size=3)
    x = vg.TensorNode(rng.standard_normal((16, 5)))
    loss = vg.logceloss(mlp(x), rng.integers(0, 3, 16))
    loss.backward()
    refs = [weakref.ref(o) for o in graph_objects(loss)]
    assert len(refs) >= 6
    params = mlp.parameters()
    if collector == "refcounting only":
        gc.disable()
    try:
        loss.clear()
        del loss
        if collector == "with gc":
            gc.collect()
        alive = [r() for r in refs if r() is not None]
        assert not alive, f"{len(alive)} graph objects survived clear() and del, e.g. {alive[:2]}"
    finally:
        gc.enable()
    assert all(p.grad.any() for p in params), "the parameters keep their gradients"
    assert x.source is None


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer keeps freed memory in quarantine, so the RSS grows by design")
def test_3000_training_steps_keep_rss_flat(np_random_state):
    """The course's loop (experiments/train_mlp.py) on synthetic data: after a warm-up, 2,700 more steps
    grow the resident set by less than 16 MB. A leak of one batch-sized array per step would be ~30 MB."""
    np.random.seed(1)
    (xtrain, ytrain), _, num_classes = vg.load_synth(num_train=1280, num_val=10)
    mlp = vg.MLP(input_size=xtrain.shape[1], output_size=num_classes)
    batch, lr = 128, 0.01

    def steps(n):
        for step in range(n):
            fr = (step * batch) % xtrain.shape[0]
            outputs = mlp(vg.TensorNode(value=xtrain[fr:fr + batch]))
            loss = vg.logceloss(outputs, ytrain[fr:fr + batch])
            loss.backward()
            for parm in mlp.parameters():
                parm.value -= lr * parm.grad
            loss.zero_grad()
            loss.clear()
        return float(loss.value)

    steps(300)
    gc.collect()
    before = rss_bytes()
    final = steps(2700)
    gc.collect()
    grown = rss_bytes() - before
    assert np.isfinite(final)
    assert grown < 16 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB over 2,700 steps"


# ------------------------------------------------------------------------------------------------
# Absurd sizes
# ------------------------------------------------------------------------------------------------

ONE, ROW = np.array(1.0), np.ones(2)
HUGE_CALLS = {
    # 2**40 float64 = 8 TiB: more than any machine has; 2**62 and more overflow the byte count
    "sum 8TiB": lambda: C.sum_backward(ONE, (2**40,)),
    "sum overflow": lambda: C.sum_backward(ONE, (2**62,)),
    "sum dims overflow": lambda: C.sum_backward(ONE, (2**32, 2**32)),
    "sum max intp": lambda: C.sum_backward(ONE, (2**63 - 1,)),
    "rowsum 8TiB": lambda: C.rowsum_backward(ROW, (2, 2**39)),
    "rowsum overflow": lambda: C.rowsum_backward(ROW, (2, 2**62)),
    "rowmax overflow": lambda: C.rowmax_backward(ROW, np.array([0, 0]), (2, 2**62)),
    "select overflow": lambda: C.select_backward(ROW, np.array([0, 0]), (2, 2**62)),
    "select 8TiB": lambda: C.select_backward(ROW, np.array([0, 0]), (2, 2**39)),
    "expand 8TiB": lambda: C.expand_forward(np.ones((1, 8)), 0, 2**37),
    "expand overflow": lambda: C.expand_forward(np.ones((1, 8)), 0, 2**62),
    "expand repeats": lambda: C.expand_forward(np.ones((1, 8)), 0, 2**63 - 1),
    "expand beyond intp": lambda: C.expand_forward(np.ones((1, 8)), 0, 2**64),
    "graph expand": lambda: vg.Expand.do_forward(vg.TensorNode(np.ones((1, 3))), dim=0, repeats=2**62),
}


@pytest.mark.parametrize("case", sorted(HUGE_CALLS))
def test_huge_sizes_are_refused(case):
    with pytest.raises((MemoryError, ValueError)) as info:
        HUGE_CALLS[case]()
    if isinstance(info.value, ValueError):
        assert any(op in str(info.value) for op in ("Sum", "RowSum", "RowMax", "Select", "Expand")), info.value


def test_huge_size_errors_leave_refcounts_unchanged():
    before = refcounts([ONE, ROW])
    for _ in range(50):
        for case in ("sum 8TiB", "sum overflow", "rowsum overflow", "select overflow"):
            with pytest.raises((MemoryError, ValueError)):
                HUGE_CALLS[case]()
    assert refcounts([ONE, ROW]) == before
