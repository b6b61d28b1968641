"""
How many threads vgrad's own parallel loops use (the CNN kernels' loops over images, pooling planes, batch
norm's channels, dropout's values and the cross-entropy's rows; csrc/threads.c), with PyTorch's names. The
default is VGRAD_NUM_THREADS, else OMP_NUM_THREADS, else the number of CPUs. Results are the same bits
whatever the count: each thread writes its own outputs and sums are added in a fixed order.
Matrix products run in NumPy's BLAS, whose threads are its own (OPENBLAS_NUM_THREADS and the like).
"""
from . import _C


def get_num_threads():
    """The number of threads vgrad's parallel loops use (as torch.get_num_threads())."""
    return _C.num_threads(0)


def set_num_threads(n):
    """Use n >= 1 threads in vgrad's parallel loops from now on (as torch.set_num_threads(n))."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'set_num_threads: the number of threads must be an int of at least 1, got {n!r}')
    _C.num_threads(n)
