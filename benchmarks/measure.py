"""
Measuring inside a child process: repeated timings, peak memory, and which thread pools are loaded with
how many threads. Also the environment variables that fix those thread counts before a child starts.
"""
import os
import resource
import sys
import time

# Read by OpenBLAS, MKL, OpenMP (PyTorch's intra-op pool) and Apple's Accelerate when they load: set in
# the child's environment so every library uses the same number of threads and none oversubscribes.
THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'VECLIB_MAXIMUM_THREADS',
               'NUMEXPR_NUM_THREADS')


class NotAvailable(Exception):
    """The library lacks what a row needs (e.g. vgrad without no_grad yet): the row is reported as n/a."""


def thread_env(threads):
    return {name: str(threads) for name in THREAD_VARS}


def timed_repeats(run, repeats, reset=None):
    """
    Calls reset() (untimed) then run() (timed) `repeats` times. Returns {'times': wall seconds per repeat,
    'cpu_times': CPU seconds of the whole process (all threads) per repeat, 'minor_faults': the process's
    minor page faults per repeat, 'values': what the first run returned}. On a shared machine wall time grows when other work takes the cores; CPU time shows it
    (wall well above CPU time / threads used means the job waited for a core).
    """
    times, cpu_times, faults, first = [], [], [], None
    for i in range(repeats):
        if reset is not None:
            reset()
        minflt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu, start = time.process_time(), time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - minflt)
        if i == 0:
            first = out
    return {'times': times, 'cpu_times': cpu_times, 'minor_faults': faults, 'values': first}


def churn_allocator(seed=0):
    """
    Leaves the process's allocator as a long session leaves it: 200 large arrays (0.8 to 32 MB) allocated,
    written and freed one after the other, with a small array kept now and then. glibc adapts to such a
    history (it raises its threshold for serving large blocks with mmap, and heap memory stays in use), so
    what a training step costs afterwards can differ from a fresh process's: the rows marked "churned".
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    kept = []
    for i in range(200):
        block = np.empty(int(rng.integers(1, 41)) * 100_000)
        block.fill(1.0)
        if i % 7 == 0:
            kept.append(np.ones(1000))
        del block
    return kept


def peak_rss_kb():
    """
    The process's peak resident set size so far, in KiB. On Linux from VmHWM in /proc/self/status:
    getrusage's ru_maxrss is preserved across execve, so a child started by a parent that once held the
    whole data set would report the parent's peak. Elsewhere ru_maxrss (bytes on macOS, KiB otherwise).
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == 'darwin' else peak


def thread_info():
    """The BLAS/OpenMP pools loaded in this process and their thread counts (threadpoolctl if installed)."""
    info = {'env': {name: os.environ.get(name) for name in THREAD_VARS}}
    try:
        import threadpoolctl
    except ImportError:
        info['pools'] = None
    else:
        info['pools'] = [{key: pool.get(key) for key in ('user_api', 'internal_api', 'num_threads', 'version',
                                                         'threading_layer', 'architecture', 'filepath')}
                         for pool in threadpoolctl.threadpool_info()]
    if 'torch' in sys.modules:
        torch = sys.modules['torch']
        info['torch_threads'] = torch.get_num_threads()
        info['torch_interop_threads'] = torch.get_num_interop_threads()
    return info
