"""The sanitizer check (.ci/sanitize.sh through .ci/sanitizers.py) fails on every report and only on those.

CI runs .ci/sanitize.sh itself, after the test suite (.ci/run); these tests check the part that decides:
.ci/sanitizers.py, on canned report files, and live on a throwaway extension built with
-fsanitize=address,undefined as sanitize.sh builds vgrad._C, with a heap overflow, the signed overflow of a
size computed from user input (size + 2 * padding), and an absurd allocation that must stay a MemoryError and
a tolerated warning. Skipped where gcc's sanitizer runtimes are missing (the script needs gcc and Linux).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_memcheck import build_extension

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sanitizers", REPO / ".ci" / "sanitizers.py")
sanitizers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sanitizers)


def _runtimes_present():
    if not sys.platform.startswith("linux") or shutil.which("gcc") is None:
        return False
    try:
        sanitizers.runtimes()
    except SystemExit:
        return False
    return True


needs_runtimes = pytest.mark.skipif(not _runtimes_present(), reason="needs gcc with AddressSanitizer on Linux")

REFUSED = "==1234==WARNING: AddressSanitizer failed to allocate 0x80000000000 bytes\n"
HEAP_OVERFLOW = """\
=================================================================
==1234==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000030 at pc 0x7f0 bp 0x7ff sp 0x7fe
WRITE of size 8 at 0x602000000030 thread T0
    #0 0x7f0a1b2c3d4e in im2col_f64 csrc/conv.c:128
SUMMARY: AddressSanitizer: heap-buffer-overflow csrc/conv.c:128 in im2col_f64
"""
SIGNED_OVERFLOW = """\
csrc/nn.h:31:29: runtime error: signed integer overflow: 9223372036854775807 * 2 cannot be represented in type 'long int'
    #0 0x7f0a1b2c3d4e in vg_window_count csrc/nn.h:31
"""


def test_refused_allocations_are_tolerated(tmp_path, capsys):
    (tmp_path / "report.100").write_text(REFUSED * 3)
    (tmp_path / "report.101").write_text(REFUSED + "\n")
    assert sanitizers.judge(tmp_path) == (0, 4)
    assert sanitizers.judge(tmp_path / "no-reports-at-all") == (0, 0)


@pytest.mark.parametrize("report", [HEAP_OVERFLOW, SIGNED_OVERFLOW, "==1234==WARNING: ASan is ignoring a request\n"])
def test_any_other_report_fails(tmp_path, report, capsys):
    (tmp_path / "report.100").write_text(REFUSED)
    (tmp_path / "report.101").write_text(REFUSED + report)  # the same process refused an allocation first
    assert sanitizers.judge(tmp_path) == (1, 2)
    assert report.splitlines()[1 if report.startswith("===") else 0] in capsys.readouterr().out


def test_a_report_in_the_output_fails(tmp_path):
    assert sanitizers.judge(tmp_path, "tests/test_x.py ..\n" + SIGNED_OVERFLOW)[0] == 1
    assert sanitizers.judge(tmp_path, "tests/test_x.py ..\n3 passed\n") == (0, 0)


# ------------------------------------------------------------------------------------------------
# Live: a throwaway extension built with the sanitizers, run in sanitizers.py's environment
# ------------------------------------------------------------------------------------------------

BAD_C = r"""
#include <Python.h>
#include <stdlib.h>

static PyObject *heap_overflow(PyObject *self, PyObject *unused)
{
    double *buf = malloc(4 * sizeof(double));
    if (buf == NULL)
        return PyErr_NoMemory();
    for (int i = 0; i <= 4; i++)
        buf[i] = 1.0;
    free(buf);
    Py_RETURN_NONE;
}

/* The number of window positions over size + 2 pad elements, as a kernel that trusts its inputs has it. */
static PyObject *window_count(PyObject *self, PyObject *args)
{
    Py_ssize_t size, pad;
    if (!PyArg_ParseTuple(args, "nn", &size, &pad))
        return NULL;
    Py_ssize_t span = size + 2 * pad;
    return PyLong_FromSsize_t(span);
}

static PyObject *huge(PyObject *self, PyObject *unused)
{
    void *p = malloc((size_t)1 << 43);  /* 8 TiB: refused, and the caller gets MemoryError */
    if (p == NULL)
        return PyErr_NoMemory();
    free(p);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"heap_overflow", heap_overflow, METH_NOARGS, NULL},
    {"window_count", window_count, METH_VARARGS, NULL},
    {"huge", huge, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&def); }
"""

# The build flags of .ci/sanitize.sh (setup.py's VGRAD_SANITIZE and its CFLAGS).
FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1", "-fno-sanitize-recover=undefined"]


@pytest.fixture(scope="module")
def bad_extension(tmp_path_factory):
    root = tmp_path_factory.mktemp("sanitized")
    build_extension(root, BAD_C, FLAGS)
    return root


def _run(root, tmp_path, code):
    script = f"import sys; sys.path.insert(0, {str(root)!r})\nfrom vgrad import _C\n{code}\nprint('finished')\n"
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        status = sanitizers.run([sys.executable, "-c", script], tmp_path / "reports", out=f)
    return status, out.read_text()


@needs_runtimes
def test_live_heap_overflow_fails(bad_extension, tmp_path):
    status, out = _run(bad_extension, tmp_path, "_C.heap_overflow()")
    assert status != 0, out
    # UBSan's object-size check or ASan, whichever sees it first
    assert ("heap-buffer-overflow" in out or "insufficient space" in out) and "finished" not in out, out


@needs_runtimes
def test_live_signed_overflow_in_a_size_fails(bad_extension, tmp_path):
    status, out = _run(bad_extension, tmp_path, "print(_C.window_count(5, 2))\n_C.window_count(5, 2**63 - 1)")
    assert status != 0, out
    assert "signed integer overflow" in out and "finished" not in out, out
    assert "9" in out.splitlines()  # the valid call ran before


@needs_runtimes
def test_live_refused_allocation_is_a_memory_error_and_passes(bad_extension, tmp_path):
    status, out = _run(bad_extension, tmp_path, "try:\n    _C.huge()\nexcept MemoryError:\n    print('MemoryError')")
    assert status == 0, out
    assert "MemoryError" in out and "finished" in out, out
    assert "1 refused-allocation warnings" in out, out


def test_ci_runs_the_documented_commands():
    """CI runs the checks as the README documents them: the scripts, with no arguments, so that what they run
    is defined in the scripts alone (and the hypothesis budget in tests/conftest.py alone)."""
    run = (REPO / ".ci" / "run").read_text()
    for script in ("sanitize.sh", "valgrind.sh"):
        assert f"bash .ci/{script}\n" in run or f"bash .ci/{script}\"" in run or f"bash .ci/{script}'" in run, script
        assert "--hypothesis-profile=ci" in (REPO / ".ci" / script).read_text(), script
    assert "VGRAD_HYPOTHESIS_EXAMPLES" not in run and "max_examples" not in run
