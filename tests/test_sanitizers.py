"""The test suite under AddressSanitizer + UndefinedBehaviorSanitizer, run by CI through this test.

.ci/sanitize.sh builds vgrad._C with -fsanitize=address,undefined in a temporary copy of the repository and
runs the tests against that build with the ASan runtime preloaded; it fails on a test failure or on any
sanitizer report. Here it runs in a subprocess (the whole suite but this file and the PyTorch comparisons,
with a smaller hypothesis budget), so a memory error in a kernel fails CI even when it does not crash the
normal build. Skipped where gcc's ASan runtime is missing (the script needs gcc and Linux).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "sanitize.sh"


def _asan_runtime():
    if not sys.platform.startswith("linux") or shutil.which("gcc") is None:
        return None
    path = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.skipif(_asan_runtime() is None, reason="needs gcc with AddressSanitizer on Linux")
def test_suite_is_clean_under_address_and_undefined_sanitizers():
    env = dict(os.environ, VGRAD_HYPOTHESIS_EXAMPLES="12")
    res = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    tail = out[-6000:]
    for report in ("ERROR: AddressSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
        assert report not in out, f"sanitizer report:\n{tail}"
    assert res.returncode == 0, f"sanitize.sh failed with status {res.returncode}:\n{tail}"
    assert " passed" in out and "no tests ran" not in out, tail
