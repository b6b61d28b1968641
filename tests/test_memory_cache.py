"""The cache of large buffers (csrc/alloc.c, vgrad/memory.py): blocks freed by one training step are reused
by the next, the limit holds, empty_cache gives them back, results do not change, frees from several threads
keep the books right, and arrays outlive whatever happens to the cache."""
import gc
import threading

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name

import vgrad as vg
import vgrad._C as C

MIN = vg.cache_info()["min_bytes"]
LARGE = (MIN // 8 // 64 + 1, 64)  # the smallest float64 matrix of 64 columns the cache takes


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with an empty cache under a known limit, and leaves the process's limit as it was."""
    gc.collect()  # graphs of earlier tests (cycles of nodes) die now, not in the middle of this test's counts
    previous = vg.set_cache_limit(1 << 30)
    vg.empty_cache()
    yield
    vg.empty_cache()
    vg.set_cache_limit(previous)


def owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def mlp_step(l1, l2, x, y):
    """One op-by-op step of a small MLP whose activations and gradients are all above the cache's threshold."""
    with vg.unfused():
        h = vg.Sigmoid.do_forward(vg.BatchMM.do_forward(l1.w, x) + vg.Expand.do_forward(l1.b, dim=0, repeats=len(y)))
        o = vg.BatchMM.do_forward(l2.w, h) + vg.Expand.do_forward(l2.b, dim=0, repeats=len(y))
        loss = vg.logceloss(vg.logsoftmax(o), y)
        loss.backward()
    for p in (l1.w, l1.b, l2.w, l2.b):
        p.value -= 0.01 * p.grad
    value = float(loss.value)
    loss.zero_grad()
    loss.clear()
    return value


def make_mlp(seed=0):
    np.random.seed(seed)
    l1, l2 = vg.Linear(200, 512), vg.Linear(512, 10)
    rng = np.random.default_rng(seed)
    x = vg.TensorNode(rng.standard_normal((128, 200)), requires_grad=False)
    y = rng.integers(0, 10, 128)
    return l1, l2, x, y


def test_second_step_reuses_the_first_steps_blocks():
    l1, l2, x, y = make_mlp()
    mlp_step(l1, l2, x, y)
    first = vg.cache_info()
    assert first["misses"] > 0 and first["held_bytes"] > 0
    mlp_step(l1, l2, x, y)
    second = vg.cache_info()
    # Every large block of the second step is one the first step freed: the same sizes, no new memory.
    assert second["hits"] - first["hits"] >= 8  # activations, saved results and gradients of 128 x 512
    assert second["misses"] == first["misses"]
    assert second["held_bytes"] == first["held_bytes"]


def test_large_results_come_from_the_cache_and_small_ones_do_not():
    big = C.sigmoid_forward(np.ones(LARGE))
    small = C.sigmoid_forward(np.ones((4, 4)))
    assert get_handler_name(big) == "vgrad_cache"
    assert get_handler_name(small) == "default_allocator"
    # The handler is set only around vgrad's own allocation: NumPy's own arrays afterwards are NumPy's.
    assert get_handler_name() == "default_allocator"
    assert get_handler_name(np.ones(LARGE)) == "default_allocator"


def test_gradients_come_from_the_cache():
    l1, l2, x, y = make_mlp()
    with vg.unfused():
        loss = vg.logceloss(vg.logsoftmax(l2(vg.sigmoid(l1(x)))), y)
        loss.backward()
    assert get_handler_name(owner(l1.w.grad)) == "vgrad_cache"
    assert get_handler_name(owner(vg.TensorNode(np.ones(LARGE)).grad)) == "vgrad_cache"  # zeros until backward


def test_results_identical_with_the_cache_on_and_off():
    runs = []
    for limit in (1 << 30, 0):
        vg.set_cache_limit(limit)
        l1, l2, x, y = make_mlp()
        losses = [mlp_step(l1, l2, x, y) for _ in range(4)]
        runs.append((losses, [p.value.copy() for p in (l1.w, l1.b, l2.w, l2.b)]))
    assert vg.cache_info()["held_bytes"] == 0  # off: nothing held
    (losses_on, params_on), (losses_off, params_off) = runs
    assert losses_on == losses_off
    for on, off in zip(params_on, params_off):
        np.testing.assert_array_equal(on, off)


def test_reused_blocks_are_zeroed_where_zeros_are_asked_for():
    dirty = C.cached_empty(LARGE, np.float64)
    dirty.fill(np.nan)
    del dirty
    hits = vg.cache_info()["hits"]
    zeros = C.cached_zeros(LARGE, np.float64)
    assert vg.cache_info()["hits"] == hits + 1
    assert not zeros.any()
    # A kernel that starts from zeros (RowMax backward scatters into them) gets zeros from a dirty block too.
    rows, cols = LARGE
    dirty = C.cached_empty(LARGE, np.float64)
    dirty.fill(7.0)
    del dirty, zeros
    go, idx = np.ones(rows), np.zeros(rows, dtype=np.intp)
    g = C.rowmax_backward(go, idx, LARGE)
    assert g[:, 0].sum() == rows and not g[:, 1:].any()


def test_the_limit_holds():
    limit = 3 * MIN
    vg.set_cache_limit(limit)
    arrays = [C.cached_empty((MIN // 8 + 64 * k,), np.float64) for k in range(6)]  # six distinct sizes
    sizes = [a.nbytes for a in arrays]
    not_held = vg.cache_info()["not_held"]
    while arrays:
        arrays.pop(0)  # freed in order of size
    info = vg.cache_info()
    assert info["held_bytes"] <= limit
    assert info["held_bytes"] == sum(sizes[:info["held_blocks"]])  # the first freed that fitted are held
    assert info["not_held"] - not_held == 6 - info["held_blocks"] > 0


def test_lowering_the_limit_frees_what_is_above_it():
    a = [C.cached_empty(LARGE, np.float64) for _ in range(4)]
    del a
    assert vg.cache_info()["held_blocks"] == 4
    assert vg.set_cache_limit(MIN) == 1 << 30
    assert vg.cache_info()["held_bytes"] <= MIN


def test_empty_cache_releases_every_block():
    a = [C.cached_empty((MIN // 8 + k,), np.float64) for k in range(5)]
    del a
    assert vg.cache_info()["held_blocks"] == 5
    vg.empty_cache()
    info = vg.cache_info()
    assert info["held_bytes"] == 0 and info["held_blocks"] == 0 and info["held_sizes"] == 0


def test_arrays_outlive_empty_cache_and_a_limit_of_zero():
    kept = C.cached_zeros(LARGE, np.float64)
    view = kept[1:, ::2]
    kept += 3.0
    vg.empty_cache()
    vg.set_cache_limit(0)
    assert (kept == 3.0).all()
    view[:] = 5.0
    assert kept[1:, ::2].sum() == 5.0 * view.size
    del kept
    assert (view == 5.0).all()  # the view keeps its base, whose block is freed through the handler later
    del view
    assert vg.cache_info()["held_bytes"] == 0  # a limit of 0: freed blocks are not held


def test_threads_freeing_concurrently_keep_the_books():
    n_threads, per_thread = 4, 25
    arrays = [[C.cached_empty(LARGE, np.float64) for _ in range(per_thread)] for _ in range(n_threads)]
    nbytes = arrays[0][0].nbytes
    start = threading.Barrier(n_threads)

    def work(mine):
        start.wait()
        for _ in range(per_thread):
            mine.pop().fill(1.0)  # freed on this thread
            again = C.sigmoid_forward(np.zeros(LARGE))  # allocated (and then freed) on this thread
            assert (again == 0.5).all()

    threads = [threading.Thread(target=work, args=(arrays[i],)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = vg.cache_info()
    assert info["held_blocks"] == n_threads * per_thread
    assert info["held_bytes"] == info["held_blocks"] * nbytes


def test_cached_allocators_are_numpys():
    for dtype in (np.float32, np.float64, np.int8, np.complex128):
        e = C.cached_empty((3, 70000), dtype)
        z = C.cached_zeros((3, 70000), dtype)
        assert e.dtype == z.dtype == dtype and e.shape == z.shape == (3, 70000) and e.flags.c_contiguous
        assert not z.any()
    src = np.arange(300 * 100, dtype=np.float32).reshape(300, 100).T
    copy = C.cached_copy(src, np.float64)
    assert copy.flags.c_contiguous and copy.dtype == np.float64 and copy is not src
    np.testing.assert_array_equal(copy, np.array(src, dtype=np.float64, order="C"))


@pytest.mark.parametrize("call, exc, words", [
    (lambda: vg.set_cache_limit(-1), ValueError, "set_cache_limit"),
    (lambda: vg.set_cache_limit("1 GiB"), TypeError, "set_cache_limit"),
    (lambda: vg.set_cache_limit(2**70), ValueError, "set_cache_limit"),
    (lambda: C._set_cache_limit(), TypeError, "set_cache_limit"),
    (lambda: C._empty_cache(1), TypeError, "empty_cache"),
    (lambda: C._cache_info(None), TypeError, "cache_info"),
    (lambda: C.cached_zeros((-1, 3), np.float64), ValueError, "cached_zeros"),
    (lambda: C.cached_empty((2**40, 2**40), np.float64), ValueError, "cached_empty"),
    (lambda: C.cached_empty((3,), "no such dtype"), TypeError, "cached_empty"),
    (lambda: C.cached_copy([1, 2], np.float64), TypeError, "cached_copy"),
])
def test_bad_arguments_name_the_function(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_a_miss_releases_held_blocks_of_other_sizes():
    """The memory kept (in use and held) stays within the peak of the blocks in use plus an eighth: a block of
    a new size that would take it past that is made only after held blocks of other sizes were given back."""
    unit = 8 * (vg.cache_info()["in_use_bytes"] + MIN)  # large beside what other tests keep alive
    a = C.cached_empty((unit // 8,), np.float64)
    del a
    assert vg.cache_info()["held_bytes"] == unit
    b = C.cached_empty((unit // 8 * 9 // 8,), np.float64)  # a held and b in use: 2.125 units, past the peak's 1.125
    assert vg.cache_info()["held_bytes"] == 0
    del b
    assert vg.cache_info()["held_bytes"] == unit // 8 * 9 // 8 * 8


def test_numpys_allocations_inside_cached_use_the_cache_and_the_handler_comes_back():
    with vg.memory.cached():
        inside = np.ones(LARGE)
        small = np.ones(3)
    assert get_handler_name(inside) == get_handler_name(small) == "vgrad_cache"
    assert get_handler_name() == "default_allocator"
    with pytest.raises(ZeroDivisionError):
        with vg.memory.cached():
            1 / 0
    assert get_handler_name() == "default_allocator"
    assert get_handler_name(np.ones(LARGE)) == "default_allocator"
    del inside, small  # freed through the cache's handler, outside the block
    assert vg.cache_info()["held_bytes"] == int(np.prod(LARGE)) * 8


def test_the_handler_of_one_thread_is_not_another_threads():
    seen = []
    with vg.memory.cached():
        t = threading.Thread(target=lambda: seen.append(get_handler_name(np.ones(LARGE))))
        t.start()
        t.join()
    assert seen == ["default_allocator"]


@pytest.mark.parametrize("make", [lambda ps: vg.SGD(ps, lr=0.1, momentum=0.9), lambda ps: vg.Adam(ps, lr=0.01)],
                         ids=["SGD-momentum", "Adam"])
def test_optimizer_temporaries_reuse_blocks(make):
    rng = np.random.default_rng(1)
    p = vg.TensorNode(rng.standard_normal(LARGE))
    grads = [rng.standard_normal(LARGE) for _ in range(3)]
    expected = None
    for limit in (0, 1 << 30):
        vg.set_cache_limit(limit)
        start = np.random.default_rng(2).standard_normal(LARGE)
        p.value = start.copy()
        opt = make([p])
        misses, hits = [], []
        for g in grads:
            p.grad = g.copy()
            opt.step()
            misses.append(vg.cache_info()["misses"])
            hits.append(vg.cache_info()["hits"])
        if expected is None:
            expected = p.value.copy()
        else:
            np.testing.assert_array_equal(p.value, expected)  # the same numbers with the cache on and off
            assert misses[2] == misses[1] and hits[2] > hits[1]  # the third step's temporaries reuse blocks
        assert not np.array_equal(p.value, start)  # it moved


def test_a_miss_within_the_peak_keeps_the_held_blocks():
    """The optimizer's pattern: a block of another size made while the step's blocks are in use raises the
    peak, so next step, with all of them held, nothing needs to go and every allocation is a hit."""
    before = vg.cache_info()["in_use_bytes"]  # arrays of other tests that are still alive
    for step in range(3):
        graph = [C.cached_empty(LARGE, np.float64) for _ in range(3)]
        update = C.cached_empty((MIN // 8 * 3,), np.float64)  # another size, while the graph's are in use
        del graph, update
        info = vg.cache_info()
        if step == 0:
            first = info
    assert info["misses"] == first["misses"]  # steps 2 and 3 allocated nothing new
    assert info["held_bytes"] == info["peak_in_use_bytes"] - before == 3 * LARGE[0] * LARGE[1] * 8 + 3 * MIN
    assert info["in_use_bytes"] == before


@pytest.mark.parametrize("value, warns", [("256 MiB", True), ("-1", True), ("268435456", False), ("0", False)])
def test_an_unreadable_cache_limit_in_the_environment_is_reported(value, warns):
    import os
    import subprocess
    import sys
    env = dict(os.environ, VGRAD_CACHE_BYTES=value)
    run = subprocess.run([sys.executable, "-W", "always", "-c", "import vgrad"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert ("VGRAD_CACHE_BYTES" in run.stderr) == warns, run.stderr
