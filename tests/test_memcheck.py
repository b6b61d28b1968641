"""The valgrind check (.ci/valgrind.sh through .ci/memcheck.py) knows vgrad's errors from everyone else's.

memcheck.py decides which of memcheck's reports are vgrad's (a frame in vgrad's extension object, in a file
of csrc/, or in one of the extension's functions); those fail the run. Tested on a canned log with reports of
every kind, and live: a throwaway extension that writes out of bounds and reads uninitialised memory, run
under valgrind with the options of the real run, must fail it, while errors only in libc and CPython (which
every Python run has) must not. The test suite itself runs under valgrind in CI by .ci/valgrind.sh.
"""
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("memcheck", REPO / ".ci" / "memcheck.py")
memcheck = importlib.util.module_from_spec(spec)
sys.modules["memcheck"] = memcheck  # dataclasses look their module up
spec.loader.exec_module(memcheck)

# A memcheck log as valgrind 3.19 prints it (stacks shortened), with one report of each kind that matters.
# Source files appear as valgrind prints them by default (conv.c) and as .ci/valgrind.sh has it print them
# (csrc/elementwise.c, with everyone else's as full paths).
CANNED = """\
==4242== Memcheck, a memory error detector
==4242== Copyright (C) 2002-2022, and GNU GPL'd, by Julian Seward et al.
==4242== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==4242== Command: /usr/bin/python3.11 -m pytest tests/test_cnn_ops.py
==4242== Parent PID: 4241
==4242== 
==4242== Conditional jump or move depends on uninitialised value(s)
==4242==    at 0x49E04DA: maybe_small_long (longobject.c:71)
==4242==    by 0x49E04DA: _PyLong_FromByteArray (longobject.c:922)
==4242==    by 0x49E075F: int_from_bytes_impl (longobject.c:5946)
==4242==    by 0x4E3C249: (below main) (libc_start_call_main.h:58)
==4242==  Uninitialised value was created by a heap allocation
==4242==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==4242==    by 0x49D80C0: _PyLong_New (longobject.c:161)
==4242== 
==4242== Conditional jump or move depends on uninitialised value(s)
==4242==    at 0x4022C4B: strncmp (strcmp.S:165)
==4242==    by 0x400671D: is_dst (dl-load.c:216)
==4242==    by 0x4009A2E: _dl_map_object (dl-load.c:2256)
==4242==    by 0x4B8E0F3: _PyImport_FindSharedFuncptr (dynload_shlib.c:93)
==4242== 
==4242== Invalid write of size 8
==4242==    at 0x6E1F1B5: im2col_f64 (conv.c:128)
==4242==    by 0x6E20208: vg_conv2d_forward (conv.c:228)
==4242==    by 0x49F95A1: cfunction_vectorcall_FASTCALL (methodobject.c:430)
==4242==  Address 0x65835f0 is 0 bytes after a block of size 32 alloc'd
==4242==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==4242==    by 0x4F10C3A: PyDataMem_UserNEW (in /usr/lib/python3/dist-packages/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so)
==4242==    by 0x6E1A0E5: vg_empty (module.c:201)
==4242== 
==4242== Invalid read of size 8
==4242==    at 0x6E2A1B0: ??? (in /tmp/vgrad-valgrind.Xy12/vgrad/_C.cpython-311-x86_64-linux-gnu.so)
==4242==    by 0x49F95A1: cfunction_vectorcall_FASTCALL (methodobject.c:430)
==4242==  Address 0x6583700 is 8 bytes before a block of size 64 alloc'd
==4242==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==4242==    by 0x4F10C3A: PyDataMem_UserNEW (in /usr/lib/python3/dist-packages/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so)
==4242== 
==4242== Thread 2:
==4242== Invalid read of size 8
==4242==    at 0x49A1F00: Py_DECREF (object.h:537)
==4242==    by 0x49A1F00: tupledealloc (tupleobject.c:211)
==4242==  Address 0x6584010 is 16 bytes inside a block of size 64 free'd
==4242==    at 0x4844B83: free (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==4242==    by 0x49A1F00: Py_DECREF (object.h:537)
==4242==    by 0x6E19C11: vg_release (csrc/elementwise.c:40)
==4242==  Block was alloc'd at
==4242==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==4242==    by 0x49D1F30: PyTuple_New (tupleobject.c:85)
==4242== 
==4242== Thread 1:
==4242== Invalid read of size 1
==4242==    at 0x484C3A2: memmove (vg_replace_strmem.c:1382)
==4242==    by 0x49C0E11: PyBytes_FromStringAndSize (bytesobject.c:160)
==4242==    by 0x6A2B0F3: string_at (in /usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so)
==4242==  Address 0x6590048 is 0 bytes after a block of size 8 alloc'd
==4242==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==4242==    by 0x6A4C0A1: ffi_call (in /usr/lib/x86_64-linux-gnu/libffi.so.8.1.2)
==4242== 
==4242== Use of uninitialised value of size 8
==4242==    at 0x4F3A120: PyArray_NewLikeArray (/build/numpy/numpy/_core/src/multiarray/shape.c:310)
==4242==    by 0x4F3B0C0: array_copy (/build/numpy/numpy/_core/src/multiarray/shape.c:88)
==4242==  Uninitialised value was created by a stack allocation
==4242==    at 0x4F3A000: npy_copy (/build/numpy/numpy/_core/src/multiarray/convert.c:12)
==4242== 
==4242== Conditional jump or move depends on uninitialised value(s)
==4242==    at 0x4993233: PyBool_FromLong (boolobject.c:22)
==4242==    by 0x6E1B2CA: vg_relu_forward (csrc/elementwise.c:30)
==4242== 
==4242== 
==4242== HEAP SUMMARY:
==4242==     in use at exit: 327,664 bytes in 2,353 blocks
==4242==   total heap usage: 89,497 allocs, 87,144 frees, 14,465,449 bytes allocated
==4242== 
==4242== For a detailed leak analysis, rerun with: --leak-check=full
==4242== 
==4242== For lists of detected and suppressed errors, rerun with: -s
==4242== ERROR SUMMARY: 112 errors from 8 contexts (suppressed: 0 from 0)
"""
# The reports above in order, and whether each is vgrad's (and by which frame).
CANNED_KINDS = [
    ("Conditional jump or move depends on uninitialised value(s)", False),  # CPython at start-up
    ("Conditional jump or move depends on uninitialised value(s)", False),  # the dynamic loader
    ("Invalid write of size 8", True),  # in a csrc/ file: conv.c
    ("Invalid read of size 8", True),  # in vgrad's object, no debug information
    ("Invalid read of size 8", True),  # in CPython, on a block vgrad's vg_release freed (elementwise.c)
    ("Invalid read of size 1", False),  # ctypes: _ctypes.cpython-311-... is not vgrad's _C
    ("Use of uninitialised value of size 8", False),  # NumPy's own shape.c / convert.c
    ("Conditional jump or move depends on uninitialised value(s)", True),  # csrc/elementwise.c as a path
]


def repo_ours():
    return memcheck.Ours.from_repo(REPO)


def test_csrc_files_are_read_from_the_repository():
    ours = repo_ours()
    assert {p.name for p in (REPO / "csrc").iterdir() if p.is_file()} == set(ours.files)
    assert {"conv.c", "elementwise.c", "module.c"} <= ours.files


def test_canned_log_reports_are_parsed():
    log = memcheck.parse(CANNED)
    assert log.started and log.main == 4242 and log.summaries == {4242: len(CANNED_KINDS)} and not log.unread()
    assert [r.kind for r in log.reports] == [k for k, _ in CANNED_KINDS]
    assert str(log.reports[2].frames[0]) == "im2col_f64 (conv.c:128)"
    assert log.reports[3].frames[0].obj.endswith("vgrad/_C.cpython-311-x86_64-linux-gnu.so")
    assert log.reports[4].lines[0] == "Invalid read of size 8"  # "Thread 2:" is not the report's kind


def test_canned_log_vgrad_reports_are_told_apart():
    log = memcheck.parse(CANNED)
    ours = repo_ours()
    assert [(r.kind, ours.report(r)) for r in log.reports] == CANNED_KINDS


def test_canned_log_fails_the_run_and_prints_only_vgrads_reports(capsys):
    assert memcheck.judge(CANNED, repo_ours()) == memcheck.EXIT_OURS
    out = capsys.readouterr().out
    assert "im2col_f64 (conv.c:128)" in out and "vg_release (csrc/elementwise.c:40)" in out
    assert "is_dst (dl-load.c:216)" not in out  # the loader's report: counted by its top frame only
    assert "x Conditional jump or move depends on uninitialised value(s) at strncmp (strcmp.S:165)" in out
    assert "4 of them in vgrad" in out


def _without_vgrad(text):
    """The canned log without vgrad's reports (and ERROR SUMMARY's count lowered to match)."""
    blocks = text.split("==4242== \n")
    keep = [b for b in blocks if not any(s in b for s in ("conv.c", "vgrad/_C.", "elementwise.c"))]
    return "==4242== \n".join(keep).replace("from 8 contexts", "from 4 contexts")


def test_reports_only_in_libc_cpython_and_numpy_pass(capsys):
    text = _without_vgrad(CANNED)
    assert len(memcheck.parse(text).reports) == 4
    assert memcheck.judge(text, repo_ours()) == 0
    assert "4 error reports, 0 of them in vgrad" in capsys.readouterr().out


def test_a_log_that_cannot_be_trusted_fails():
    ours = repo_ours()
    assert memcheck.judge("", ours) == memcheck.EXIT_UNTRUSTED  # valgrind never ran
    # fewer reports read than valgrind counted: a format this parser does not know
    text = _without_vgrad(CANNED).replace("from 4 contexts", "from 5 contexts")
    assert memcheck.judge(text, ours) == memcheck.EXIT_UNTRUSTED


def test_a_forked_child_inherits_its_parents_contexts():
    """A child forked under valgrind (subprocess, before its exec fails) prints an ERROR SUMMARY that counts
    its parent's contexts too, which the parent printed: no reason to distrust the log."""
    child = ("==4250== \n==4250== Invalid read of size 4\n==4250==    at 0x1: f (x.c:1)\n==4250== \n"
             "==4250== ERROR SUMMARY: 9 errors from {} contexts (suppressed: 0 from 0)\n")
    text = _without_vgrad(CANNED)
    assert memcheck.judge(text + child.format(5), repo_ours()) == 0  # the parent's 4 and its own 1
    assert memcheck.judge(text + child.format(6), repo_ours()) == memcheck.EXIT_UNTRUSTED


def test_frames_are_vgrads_by_object_file_or_function():
    ours = memcheck.Ours(files=frozenset({"conv.c", "shape.c"}), objects=frozenset({"/x/build/_C.so"}),
                         functions=frozenset({"vg_conv2d_forward", "im2col_f64"}))
    F = memcheck.Frame
    assert ours.frame(F("???", obj="/tmp/w/vgrad/_C.cpython-311-x86_64-linux-gnu.so"))
    assert ours.frame(F("???", obj="/tmp/w/vgrad/_C.abi3.so"))
    assert ours.frame(F("??", obj="/x/build/_C.so"))  # the extension named on the command line
    assert not ours.frame(F("string_at", obj="/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311.so"))
    assert not ours.frame(F("vg_conv2d_forward", obj="/usr/lib/libother.so"))  # another object wins
    assert ours.frame(F("im2col_f64", file="conv.c", line=128))  # valgrind's default: base names
    assert ours.frame(F("im2col_f64", file="csrc/conv.c", line=128))  # --fullpath-after=REPO/
    assert ours.frame(F("x", file="/work/vgrad/csrc/shape.c", line=3))
    assert not ours.frame(F("array_copy", file="/build/numpy/_core/src/multiarray/shape.c", line=88))
    assert not ours.frame(F("im2col_f64", file="object.h", line=502))  # a file wins over the name
    assert ours.frame(F("im2col_f64.constprop.0"))  # only a name: judged by it
    assert not ours.frame(F("strncmp"))
    assert memcheck.parse_frame("vg_empty (module.c:201)") == F("vg_empty", file="module.c", line=201)
    assert memcheck.parse_frame("??? (in /lib/x.so)") == F("???", obj="/lib/x.so")


# ------------------------------------------------------------------------------------------------
# Live: a throwaway extension with two memory errors, under valgrind as .ci/valgrind.sh runs it
# ------------------------------------------------------------------------------------------------

BAD_C = r"""
#include <Python.h>
#include <stdlib.h>

/* One element past the end of a block: the off-by-one of a size computed wrongly. */
static void fill_past_end(double *out, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i <= n; i++)
        out[i] = 1.0;
}

static PyObject *write_out_of_bounds(PyObject *self, PyObject *unused)
{
    double *buf = malloc(4 * sizeof(double));
    if (buf == NULL)
        return PyErr_NoMemory();
    fill_past_end(buf, 4);
    free(buf);
    Py_RETURN_NONE;
}

static PyObject *read_uninitialised(PyObject *self, PyObject *unused)
{
    double *buf = malloc(4 * sizeof(double)), sum = 0;
    if (buf == NULL)
        return PyErr_NoMemory();
    buf[0] = 1.0;
    for (int i = 0; i < 4; i++)
        sum += buf[i];
    free(buf);
    return PyBool_FromLong(sum > 0);
}

static PyMethodDef methods[] = {
    {"write_out_of_bounds", write_out_of_bounds, METH_NOARGS, NULL},
    {"read_uninitialised", read_uninitialised, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&def); }
"""

# Loads the extension built with debug information as vgrad._C, and a stripped copy of it from another
# directory, and calls both; then makes errors in libc and CPython alone with ctypes.
BAD_RUN = r"""
import ctypes, importlib.util, sys
root = sys.argv[1]
sys.path.insert(0, root)
from vgrad import _C
_C.write_out_of_bounds()
_C.read_uninitialised()
spec = importlib.util.spec_from_file_location("stripped._C", sys.argv[2])
stripped = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stripped)
stripped.write_out_of_bounds()
stripped.read_uninitialised()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(8)
ctypes.string_at(p, 16)                       # reads past the block: memmove, PyBytes_FromStringAndSize, ctypes
print(ctypes.string_at(p, 8) == b"x" * 8)     # compares uninitialised bytes: CPython's bytes_richcompare
"""


def build_extension(root, source, flags):
    """Compiles source as root/vgrad/_C<suffix> (a throwaway vgrad._C) with gcc and the given flags; the
    source is root/csrc/bad.c, so that its frames are `(bad.c:N)` and csrc/ lists it."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    (root / "csrc").mkdir(parents=True)
    (root / "vgrad").mkdir()
    (root / "vgrad" / "__init__.py").write_text("")
    src = root / "csrc" / "bad.c"
    src.write_text(source)
    so = root / "vgrad" / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    subprocess.run(["gcc", "-shared", "-fPIC", *flags, f"-I{include}", str(src), "-o", str(so)], check=True)
    return so


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind (.ci/valgrind.sh fails without it)")
def test_live_errors_in_a_throwaway_extension_fail_the_run(tmp_path, capsys):
    so = build_extension(tmp_path / "ext", BAD_C, ["-g", "-O0"])
    stripped = tmp_path / "stripped" / "vgrad" / so.name
    stripped.parent.mkdir(parents=True)
    subprocess.run(["strip", "-o", str(stripped), str(so)], check=True)  # no symbols, no debug information
    (tmp_path / "run.py").write_text(BAD_RUN)
    ours = memcheck.Ours.from_repo(tmp_path / "ext", [so, stripped])
    assert ours.files == {"bad.c"} and ours.functions == {"fill_past_end", "read_uninitialised",
                                                          "write_out_of_bounds"}
    log = tmp_path / "memcheck.log"
    status = memcheck.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "ext"), str(stripped)],
                          log, ours)
    out = capsys.readouterr().out
    assert status == memcheck.EXIT_OURS, out
    reports = memcheck.parse(log.read_text()).reports
    mine = [r for r in reports if ours.report(r)]
    by_file = [r for r in mine if any(f.file == "csrc/bad.c" for f in r.frames)]
    by_object = [r for r in mine if any(f.obj == str(stripped) for f in r.frames)]
    assert sorted(r.kind.split(" of")[0] for r in by_file) == [
        "Conditional jump or move depends on uninitialised value(s)", "Invalid write"], out
    write = next(r for r in by_file if r.kind.startswith("Invalid write"))
    assert write.frames[0].function == "fill_past_end" and write.frames[1].function == "write_out_of_bounds"
    assert sorted(r.kind.split(" of")[0] for r in by_object) == [
        "Conditional jump or move depends on uninitialised value(s)", "Invalid write"], out
    assert len(mine) == 4, out
    # ctypes' over-read and CPython's own start-up reports are memcheck errors too, and not vgrad's
    others = [r for r in reports if not ours.report(r)]
    assert any(r.kind.startswith("Invalid read") for r in others), out
    assert any("bytes_compare_eq" in str(r) or "bytes_richcompare" in str(r) for r in others), out


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind (.ci/valgrind.sh fails without it)")
def test_a_shim_script_is_refused(tmp_path, capsys):
    """valgrind on a pyenv shim would check bash, and pass whatever Python did."""
    shim = tmp_path / "python"
    shim.write_text("#!/bin/sh\nexec python3 \"$@\"\n")
    shim.chmod(0o755)
    assert memcheck.run([str(shim), "-c", "pass"], tmp_path / "log", repo_ours()) == memcheck.EXIT_UNTRUSTED
    assert "not a program but a script" in capsys.readouterr().out


def test_the_tests_valgrind_sh_names_exist():
    """.ci/valgrind.sh lists tests by id; a renamed test would make pytest collect nothing there and CI fail
    late (after the sanitizer run). Each file::function it names must be defined."""
    import re
    script = (REPO / ".ci" / "valgrind.sh").read_text()
    ids = re.findall(r"(tests/[\w/]+\.py)::(\w+)", script)
    assert ids, "no test ids found in .ci/valgrind.sh"
    for path, name in ids:
        source = (REPO / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f".ci/valgrind.sh names {path}::{name}, which is not defined"
