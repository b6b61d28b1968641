"""
The machine's GEMM peak, measured on the spot in a child process with the suite's thread setting: NumPy's
matmul of large square matrices, in float64 and float32. Also NumPy alone on the three big products of a
W2 step at their own shapes (x @ w1.T, g.T @ x, g @ w1): the most W2's matmuls could reach on this machine.
"""
import numpy as np

from benchmarks.measure import timed_repeats


def _gflops(flops, run, repeats, calls=1):
    """Best and median GFLOP/s of `calls` calls of run() (each doing `flops`), over `repeats` timings."""
    def many():
        for _ in range(calls):
            run()
    many()  # warm-up: first touch of the memory, thread pool start
    times = timed_repeats(many, repeats)['times']
    rates = sorted(flops * calls / t / 1e9 for t in times)
    return rates[-1], rates[len(rates) // 2]


def run(workload):
    n, repeats = workload.peak_size, workload.repeats
    batch, (n_in, n_hidden, _) = workload.batch, workload.sizes
    rng = np.random.default_rng(0)
    result = {}
    for dtype in ('float64', 'float32'):
        a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
        c = np.empty((n, n), dtype)
        result[f'peak_{dtype}'], result[f'peak_{dtype}_median'] = _gflops(
            2 * n ** 3, lambda: np.matmul(a, b, out=c), repeats)

        x = rng.standard_normal((batch, n_in)).astype(dtype)
        w = rng.standard_normal((n_hidden, n_in)).astype(dtype)
        g = rng.standard_normal((batch, n_hidden)).astype(dtype)

        def w2_products():
            np.matmul(x, w.T)
            np.matmul(g.T, x)
            np.matmul(g, w)
        result[f'w2_shapes_{dtype}'], result[f'w2_shapes_{dtype}_median'] = _gflops(
            3 * 2 * batch * n_in * n_hidden, w2_products, repeats, calls=5)
    result['size'] = n
    return {'times': [], 'values': [], 'gflops': result}
