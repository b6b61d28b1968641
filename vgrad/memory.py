"""
The cache of large buffers (csrc/alloc.c): vgrad's own arrays of 128 KiB and more (activations,
gradients, what ops keep for backward) take their memory from blocks that earlier arrays of the same size
freed, instead of asking the system for it again every training step. This removes the page faults of
mapping fresh memory, which otherwise make a step's speed depend on what the process allocated before.

    vg.cache_info()           # bytes and blocks held, hits and misses so far
    vg.empty_cache()          # give every held block back (as torch.cuda.empty_cache())
    vg.set_cache_limit(n)     # hold at most n bytes of freed blocks; 0 turns the cache off

The limit defaults to an eighth of the machine's memory, at most 1 GiB, or to the environment variable
VGRAD_CACHE_BYTES. Held blocks are memory the process keeps (it shows in its RSS) but no array uses.
Only arrays vgrad allocates are cached, and NumPy's inside `with vg.memory.cached():` (vgrad's optimizers
run their updates in it); NumPy's other allocations (your own `p.value -= lr * p.grad`) are not.
"""
import contextlib
import os
import warnings

from . import _C


def _check_environment():
    """csrc/alloc.c reads VGRAD_CACHE_BYTES when the first large array is made, where it cannot complain;
    a value it cannot read would silently mean the default, so say so here, once, at import."""
    value = os.environ.get('VGRAD_CACHE_BYTES', '')
    if value and not value.isdigit():
        warnings.warn(f'VGRAD_CACHE_BYTES={value!r} is not a number of bytes (e.g. 0 turns the cache off, '
                      f'268435456 holds at most 256 MiB): using the default limit', RuntimeWarning, stacklevel=3)


_check_environment()


def cache_info():
    """
    The state of the buffer cache, as a dict: held_bytes and held_blocks (freed blocks kept for reuse),
    in_use_bytes and peak_in_use_bytes (the large blocks in arrays now, and the most since empty_cache()),
    held_sizes (how many distinct sizes), limit_bytes (the cap on held_bytes), hits and misses (allocations
    served from a held block, and those that were not, since the process started), not_held (freed blocks
    given back at once, as the cap or the number of sizes was reached) and min_bytes (smaller arrays are not
    cached).
    """
    return _C._cache_info()


def empty_cache():
    """Free every block the buffer cache holds, and start its peak afresh (the cache keeps at most the peak
    of its blocks in use, counted from here). Arrays in use are not affected."""
    _C._empty_cache()


def set_cache_limit(nbytes):
    """Hold at most `nbytes` bytes of freed blocks (0 turns the cache off); returns the previous limit.
    Blocks held beyond the new limit are freed at once."""
    return _C._set_cache_limit(nbytes)


@contextlib.contextmanager
def cached():
    """
    Inside the block, every array NumPy allocates in this thread takes its memory from the cache (the large
    ones reuse held blocks; small ones are plain malloc), as vgrad's own arrays always do:

        with vg.memory.cached():
            for p in params:
                p.value -= lr * p.grad    # the temporary lr * p.grad reuses last step's block

    Arrays made inside may live on after it; they are freed correctly whenever they go.
    """
    previous = _C._swap_data_handler(None)
    try:
        yield
    finally:
        _C._swap_data_handler(previous)
