"""Fixtures shared by the vgrad tests. Shared helper functions live in tests/op_table.py."""
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A random generator seeded from the test's id: every test draws the same numbers on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def np_random_state():
    """For tests that seed NumPy's global generator (as vugrad's Linear and load_synth use it): restores it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)
