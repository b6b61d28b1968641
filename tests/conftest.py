"""Fixtures shared by the vgrad tests. Shared helper functions live in tests/op_table.py."""
import socket
import zlib

import numpy as np
import pytest

from vgrad import data


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


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once, like an offline machine's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """For the data loaders: an empty $VGRAD_DATA and working directory (so no stray mnist.pkl is read), no
    system Fashion-MNIST, and every download mirror offline (so a missing file is never fetched for real)."""
    monkeypatch.setenv("VGRAD_DATA", str(tmp_path / "data"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", str(tmp_path / "no-system-dir"))
    for variable, _ in data.MIRRORS.values():
        monkeypatch.setenv(variable, closed_port_url())
    return tmp_path
