"""Fixtures shared by the vgrad tests, and the hypothesis profiles. Shared helper functions live in
tests/op_table.py."""
import socket
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from vgrad import data

# ------------------------------------------------------------------------------------------------
# Hypothesis: the one place where the property tests' budget is set. Every run uses a profile: `ci` unless
# `--hypothesis-profile NAME` says otherwise. CI, `python -m pytest`, .ci/sanitize.sh and .ci/valgrind.sh
# all run `ci`, so a property test draws the same examples in each of them. Test files take their settings from the
# loaded profile (a bare @settings() or none, which read it when the test file is imported, after the profile is
# loaded) and never set max_examples themselves.
#   ci        derandomized (the same examples on every run and machine), 80 examples per test
#   quick     derandomized, 10 examples: for trying a change
#   thorough  random (a new search on each run), 2000 examples: for hunting, not for CI
# Why derandomized with no database: a run's outcome depends on the code only, never on what an earlier run
# found. Why no deadline: the sanitizer and valgrind builds are 2-50 times slower.
# ------------------------------------------------------------------------------------------------
_COMMON = dict(deadline=None, database=None, print_blob=False, suppress_health_check=list(HealthCheck))
settings.register_profile("ci", max_examples=80, derandomize=True, **_COMMON)
settings.register_profile("quick", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=2000, derandomize=False, **_COMMON)
settings.load_profile("ci")

# The tests that take minutes rather than seconds, marked `slow` here in one list so that
# `python -m pytest -m "not slow"` gives contributors a quick run (CI runs everything): whole files, or the
# tests of a file whose names contain one of the given words.
SLOW = {
    "test_notebooks.py": None,               # every notebook, executed
    "test_suggested_commands.py": None,      # every training command the README and notebooks suggest
    "test_sanitizers.py": None,              # builds with sanitizers
    "test_memcheck.py": None,                # valgrind
    "test_overlay.py": None,                 # course scripts run twice in subprocesses
    "test_vugrad_parity.py": None,           # 60 training steps in vgrad and in vugrad
    "test_train_cli.py": None,               # training runs
    "test_train_cnn.py": None,
    "test_train_script.py": None,
    "test_graph_engine.py": ("run_as_python",),   # the graph tests again, with core.py as Python
    "test_graph_scale.py": ("100000", "10000"),   # the 100,000-deep and 10,000-wide graphs
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        words = SLOW.get(item.path.name, ())
        if words is None or any(word in item.name for word in words):
            item.add_marker(pytest.mark.slow)


def pytest_report_header(config):
    s = settings.default
    return (f"hypothesis profile {settings.get_current_profile_name()!r}: max_examples={s.max_examples}, "
            f"derandomize={s.derandomize}")


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
