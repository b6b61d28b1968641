"""Sizes computed from user input: whatever the sizes, no crash, no write out of bounds, no undefined
behaviour and no silently wrong answer.

The CNN kernels compute sizes from their arguments (OH = (H + 2 pad - kh) / stride + 1, the im2col matrix
(C kh kw, N OH OW), the number of images N C, ...). Sizes that overflow must be refused before anything is
allocated: ValueError for a size no array can have, MemoryError for one that cannot be allocated, each
naming the op. An empty batch (N = 0) with huge other sizes is refused or handled without any product
that overflows.

Every risky call runs in a child process (run_isolated), so a crash or a hang fails one test instead of
ending the pytest run; under .ci/sanitize.sh the child inherits the sanitizer runtime and its options.
The property tests (hypothesis, sizes near 2**31, 2**32, 2**62, 2**63 and products that wrap) run in a
child too, one per entry point of the CNN toolkit, each call checked against a plan worked out here from
the spec with Python's unbounded ints: succeeds with the right shape (and, where it is cheap, the right
values), or raises ValueError/MemoryError/TypeError (IndexError for indices) naming the op. Calls whose
buffers could be allocated but are large (between SMALL_BYTES and HUGE_BYTES) are skipped: they would fill
gigabytes of a shared machine to prove nothing about overflow.

The last part lists holes in the kernel families outside the CNN toolkit (strict xfails until fixed).
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import vgrad
import vgrad._C as C
from vgrad.nn_ops import AvgPooling, MaxPooling

TESTS = Path(__file__).resolve().parent
VGRAD_ROOT = Path(vgrad.__file__).resolve().parents[1]  # the tree whose vgrad the children import

MAXP = 2**63 - 1  # NPY_MAX_INTP
SMALL_BYTES = 2**24  # calls whose every buffer is at most this large run
HUGE_BYTES = 2**45  # 32 TiB: no allocation this large succeeds here (nor under ASan, whose limit is 1 TiB)


# ------------------------------------------------------------------------------------------------
# Running calls in a child process
# ------------------------------------------------------------------------------------------------

# The child reads [(name, expression), ...] and evaluates each, printing a line before (so that a crash
# is pinned on its case) and one after with the result or the exception (lines marked @@; anything else
# it prints, such as hypothesis's falsifying examples, goes with the next result). Without ASan it runs under an
# 8 GiB address-space limit, so that no mistake in a test can fill the machine's memory (ASan reserves
# terabytes of address space for its shadow memory, so the limit is left off under it).
CHILD = r"""
import faulthandler, json, os, resource, sys
if "asan" not in os.environ.get("LD_PRELOAD", ""):
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
sys.path.insert(0, sys.argv[1])
per_case = float(sys.argv[2])
import numpy as np
import vgrad as vg
import vgrad._C as C
T = vg.TensorNode

def describe(r):
    if isinstance(r, T):
        r = r.value
    if isinstance(r, np.ndarray):
        return {"shape": list(r.shape), "dtype": str(r.dtype)}
    if isinstance(r, tuple):
        return [describe(v) for v in r]
    return repr(r)

for name, code in json.load(sys.stdin):
    print("@@" + json.dumps({"start": name}), flush=True)
    # a case stuck in C (holding the GIL) is ended by faulthandler's watchdog thread, which says "Timeout"
    faulthandler.dump_traceback_later(per_case, exit=True)
    if code.startswith("import "):
        exec(code.split(";")[0])
        code = code.split(";", 1)[1]
    try:
        out = {"name": name, "ok": describe(eval(code))}
    except BaseException as e:
        out = {"name": name, "error": type(e).__name__, "message": str(e)[:2000],
               "bases": [c.__name__ for c in type(e).__mro__]}
    faulthandler.cancel_dump_traceback_later()
    print("@@" + json.dumps(out), flush=True)
"""


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(VGRAD_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_isolated(cases, timeout=60):
    """Evaluate {name: expression} in child processes, in order, and return {name: result}: {"ok": ...} or
    {"error": type name, "message": ..., "bases": [...]}, or {"crash": status, "stderr": ...} for a case
    during which the child died (the remaining cases then go on in a new child), or {"hang": seconds} for
    one that took more than `timeout` seconds."""
    results, todo = {}, list(cases.items())
    while todo:
        started, hung = None, False
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(TESTS), str(timeout)], input=json.dumps(todo),
                                  env=_child_env(), cwd=VGRAD_ROOT, capture_output=True, text=True,
                                  timeout=timeout * len(todo) + 120)
            stdout, stderr, status = proc.stdout, proc.stderr, proc.returncode
            hung = "Timeout (" in stderr
        except subprocess.TimeoutExpired as e:  # (the watchdog itself stuck: not expected)
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr, status, hung = "", None, True
        printed = []
        for line in stdout.splitlines():
            if not line.startswith("@@"):
                printed.append(line)
                continue
            msg = json.loads(line[2:])
            if "start" in msg:
                started = msg["start"]
            else:
                msg["printed"], printed = "\n".join(printed), []
                results[msg["name"]], started = msg, None
        if started is not None:
            results[started] = {"hang": timeout} if hung else {"crash": status, "stderr": stderr[-3000:]}
        elif status != 0 or hung:
            raise AssertionError(f"the child process failed outside any case (status {status}):\n{stderr[-3000:]}")
        todo = [(n, c) for n, c in todo if n not in results]
    return results


def assert_refused(result, op, exceptions=("ValueError", "MemoryError", "TypeError"), fragment=None):
    """The call raised one of `exceptions` (or a subclass) with a message naming the op (and containing
    `fragment`)."""
    assert "crash" not in result, f"the process crashed (status {result['crash']}):\n{result['stderr']}"
    assert "hang" not in result, f"the call did not return within {result['hang']} s"
    assert "error" in result, f"expected {'/'.join(exceptions)} naming {op}, got a result: {result['ok']}"
    assert set(result["bases"]) & set(exceptions), f"expected {'/'.join(exceptions)}, got {result['error']}: " \
                                                   f"{result['message']}"
    assert op in result["message"], f"the message does not name {op}: {result['error']}: {result['message']}"
    if fragment is not None:
        assert fragment in result["message"], f"{fragment!r} not in {result['message']!r}"


def assert_ok(result, expected):
    assert "crash" not in result, f"the process crashed (status {result['crash']}):\n{result['stderr']}"
    assert "hang" not in result, f"the call did not return within {result['hang']} s"
    assert "ok" in result, f"expected {expected}, got {result['error']}: {result['message']}"
    assert result["ok"] == expected, f"expected {expected}, got {result['ok']}"


def shape(*dims, dtype="float64"):
    return {"shape": list(dims), "dtype": dtype}


# ------------------------------------------------------------------------------------------------
# Reproductions: each case is (expression, expected); expected is ("refused", op, fragment or None[,
# exception names]) or ("ok", the description of the result)
# ------------------------------------------------------------------------------------------------

X1 = "T(np.ones((1, 1, 2, 2))), T(np.ones((1, 1, 1, 1)))"
REFUSED, OK = "refused", "ok"

CASES = {
    # the three reproductions from the review: OH * OW wrapped to 0 and im2col wrote past a tiny buffer
    "conv padding 2**31-1": (f"vg.conv2d({X1}, padding=2**31 - 1)",
                             (REFUSED, "Convolution", "the output (1, 1, 4294967296, 4294967296) is too large")),
    "conv padding 2**61": (f"vg.conv2d({X1}, padding=2**61)", (REFUSED, "Convolution", "is too large")),
    "conv empty batch of 2**40 images": (
        "vg.conv2d(T(np.ones((2**40, 1, 0, 0))), T(np.ones((1, 1, 1, 1))), padding=2**11)",
        (REFUSED, "Convolution", "the output (1099511627776, 1, 4096, 4096) is too large")),
    "conv empty batch of 2**40 images, C": (
        "C.conv2d(np.ones((2**40, 1, 0, 0)), np.ones((1, 1, 1, 1)), None, 1, 1, 2**11, 2**11)",
        (REFUSED, "Convolution", "is too large")),
    # 2 * pad overflowed (undefined behaviour) before the window check
    "conv padding 2**62": (f"vg.conv2d({X1}, padding=2**62)",
                           (REFUSED, "Convolution", "the padded height (2 + 2 x 4611686018427387904) is too large")),
    "conv padding 2**63-1": (f"vg.conv2d({X1}, padding=2**63 - 1)", (REFUSED, "Convolution", "is too large")),
    "conv padding (0, 2**62)": (f"vg.conv2d({X1}, padding=(0, 2**62))", (REFUSED, "Convolution", "padded width")),
    "conv padding 2**63": (f"vg.conv2d({X1}, padding=2**63)", (REFUSED, "Convolution", "out of range")),
    "conv padding -1": (f"vg.conv2d({X1}, padding=-1)", (REFUSED, "Convolution", "at least 0")),
    "conv padding 2**40 rows only": (f"vg.conv2d({X1}, padding=(2**40, 0))",  # 32 TiB: cannot be allocated
                                     (REFUSED, "Convolution", None, ("ValueError", "MemoryError"))),
    # an empty batch whose output sizes multiply past 2**63
    "conv N=0 huge output": ("C.conv2d(np.ones((0, 1, 2**20, 2**20)), np.ones((1, 1, 1, 1)), None, "
                             "1, 1, 2**31, 2**31)", (REFUSED, "Convolution", "the output (0, 1, 4296015872, 4296015872)")),
    "conv N=0 huge": ("C.conv2d(np.ones((0, 1, 2**29, 2**29)), np.ones((1, 1, 1, 1)), None, 1, 1, 0, 0)",
                      (OK, shape(0, 1, 2**29, 2**29))),
    # a large im2col chunk: C kh kw rows of a huge output (the output is refused before any chunk is made)
    "conv im2col too large": ("C.conv2d(np.ones((1, 2**16, 1, 1)), np.ones((1, 2**16, 1, 1)), None, "
                              "1, 1, 2**22, 2**22)", (REFUSED, "Convolution", None, ("ValueError", "MemoryError"))),
    # an empty batch with C kh kw = 2**58: the kernels must not count through 2**58 empty rows
    "conv N=0, C kh kw = 2**58": ("C.conv2d(np.empty((0, 2**20, 2**20, 2**18)), "
                                  "np.empty((0, 2**20, 2**20, 2**18)), None, 1, 1, 0, 0)",
                                  (OK, shape(0, 0, 1, 1))),
    "conv backward N=0, C kh kw = 2**58": (
        "C.conv2d_grad(np.empty((0, 0, 1, 1)), np.empty((0, 2**20, 2**20, 2**18)), "
        "np.empty((0, 2**20, 2**20, 2**18)), 1, 1, 0, 0, True, True)",
        (OK, [shape(0, 2**20, 2**20, 2**18), shape(0, 2**20, 2**20, 2**18), shape(0)])),
    # huge kernels (from the filters' shape: empty filters) and strides
    "conv empty filters, huge kernel": ("C.conv2d(np.ones((1, 1, 2, 2)), np.empty((0, 1, 2**29, 2**29)), "
                                        "None, 1, 1, 2**30, 2**30)", (REFUSED, "Convolution", "is too large")),
    "conv no channels, huge kernel": ("C.conv2d(np.empty((1, 0, 2**30, 2**29)), np.empty((1, 0, 2**30, 2**29)), "
                                      "np.array([1.5]), 1, 1, 0, 0).tolist()", (OK, "[[[[1.5]]]]")),
    "conv stride 2**63-1": (f"vg.conv2d(T(np.ones((1, 1, 5, 5))), T(np.ones((1, 1, 2, 2))), stride=2**63 - 1)",
                            (OK, shape(1, 1, 1, 1))),
    # the window lies in the padding; ceil(first / stride) used to compute first + stride - 1 (overflow)
    "conv stride 2**63-1 padding 2**61": (
        "C.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2)), None, 2**63 - 1, 2**63 - 1, 2**61, 2**61)"
        ".tolist()", (OK, "[[[[0.0]]]]")),
    "conv stride 2**63": (f"vg.conv2d({X1}, stride=2**63)", (REFUSED, "Convolution", "out of range")),
    "conv stride 0": (f"vg.conv2d({X1}, stride=0)", (REFUSED, "Convolution", "at least 1")),
    "conv backward padding 2**31-1": (
        "C.conv2d_grad(np.ones((1, 1, 1, 1)), np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), "
        "1, 1, 2**31 - 1, 2**31 - 1, False, True)", (REFUSED, "Convolution backward", "is too large")),
    "conv2d kernel_size 0": ("vg.Conv2d(1, 1, 0)", (REFUSED, "Conv2d", "at least 1")),
    "conv2d kernel_size 2**40": ("vg.Conv2d(1, 1, 2**40)", (REFUSED, "Conv2d", "too big")),
    # pooling
    "maxpool kernel 2**62": ("vg.max_pool2d(T(np.ones((1, 1, 2, 2))), 2**62)", (REFUSED, "MaxPooling", "larger")),
    "maxpool kernel 2**63": ("vg.max_pool2d(T(np.ones((1, 1, 2, 2))), 2**63)", (REFUSED, "MaxPooling", "out of range")),
    "maxpool stride 2**63-1": ("vg.max_pool2d(T(np.ones((1, 1, 3, 3))), 2, stride=2**63 - 1)", (OK, shape(1, 1, 1, 1))),
    "maxpool 2**40 images of no channels": ("C.maxpool2d_forward(np.ones((2**40, 0, 2, 2)), 1, 1, 1, 1)",
                                            (OK, [shape(2**40, 0, 2, 2), shape(2**40, 0, 2, 2, dtype="int64")])),
    "maxpool N=0 huge image": ("C.maxpool2d_forward(np.empty((0, 1, 2**29, 2**29)), 2**29, 1, 2**29, 1)",
                               (OK, [shape(0, 1, 1, 2**29), shape(0, 1, 1, 2**29, dtype="int64")])),
    # (a wrapped H W made every index look out of range: an IndexError saying the wrong thing)
    "maxpool backward xshape 2**32 x 2**32": (
        "C.maxpool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), dtype=np.intp), (1, 1, 2**32, 2**32))",
        (REFUSED, "MaxPooling backward", "xshape (1, 1, 4294967296, 4294967296) is too large")),
    "maxpool backward xshape 2**62 x 2**62": (
        "C.maxpool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), dtype=np.intp), (2**62, 2**62, 1, 1))",
        (REFUSED, "MaxPooling backward", "is too large")),
    "maxpool backward empty go, 2**59 images": (
        "C.maxpool2d_backward(np.ones((2**29, 2**30, 0, 1)), np.zeros((2**29, 2**30, 0, 1), dtype=np.intp), "
        "(2**29, 2**30, 0, 1))", (OK, shape(2**29, 2**30, 0, 1))),
    "avgpool kernel (2**29, 2**29) of an empty batch": (
        "C.avgpool2d_forward(np.empty((0, 1, 2**29, 2**29)), 2**29, 2**29, 1, 1)", (OK, shape(0, 1, 1, 1))),
    "avgpool backward xshape 2**62": ("C.avgpool2d_backward(np.ones((1, 1, 1, 1)), (2**62, 2**62, 1, 1), 1, 1, 1, 1)",
                                      (REFUSED, "AvgPooling backward", "is too large")),
    "avgpool backward xshape N=0 2**62": (
        "C.avgpool2d_backward(np.ones((0, 1, 1, 1)), (0, 2**62, 1, 1), 1, 1, 1, 1)",
        (REFUSED, "AvgPooling backward", "is too large")),
    "avgpool backward kernel 2**63-1": (
        "C.avgpool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2, 2), 2**63 - 1, 1, 1, 1)",
        (REFUSED, "AvgPooling backward", "larger")),
    # batch norm
    "batchnorm 2**40 x 2**10 empty": (
        "C.batchnorm_forward(np.ones((2**40, 2**10, 0)), np.ones(2**10), np.ones(2**10), np.zeros(2**10), "
        "np.ones(2**10), 1e-5)[0]", (OK, shape(2**40, 2**10, 0))),
    "batchnorm backward 2**40 x 2**10 empty": (
        "C.batchnorm_backward(np.ones((2**40, 2**10, 0)), np.ones((2**40, 2**10, 0)), np.ones(2**10), "
        "np.ones(2**10), True)[1]", (OK, shape(2**10))),
    "batchnorm training, no values per channel": (
        "C.batchnorm_forward(np.ones((2**40, 2, 0)), np.ones(2), np.ones(2), None, None, 1e-5)",
        (REFUSED, "BatchNormalization", "more than one value")),
    "batchnorm training, no channels": ("vg.BatchNorm1d(0)(T(np.ones((4, 0))))", (REFUSED, "BatchNorm1d", "at least 1")),
    "batchnorm training, one value": ("vg.BatchNorm1d(3)(T(np.ones((1, 3))))",
                                      (REFUSED, "BatchNormalization", "more than one value")),
    # dropout, cross-entropy
    "dropout empty huge": ("C.dropout_forward(np.ones((2**30, 0, 2**20)), np.ones((2**30, 0, 2**20), bool), 0.5)",
                           (OK, shape(2**30, 0, 2**20))),
    "cross-entropy N=0, 2**40 classes": ("C.cross_entropy_forward(np.ones((0, 2**40)), np.zeros(0, int), 'sum')",
                                         (OK, [shape(), shape(0, 2**40)])),
    "cross-entropy backward divisor -1": (
        "C.cross_entropy_backward(np.float64(1), np.ones((2, 2)), np.zeros(2, int), -1)",
        (REFUSED, "CrossEntropy backward", ">= 0")),
    "cross-entropy backward divisor 2**63": (
        "C.cross_entropy_backward(np.float64(1), np.ones((2, 2)), np.zeros(2, int), 2**63)",
        (REFUSED, "CrossEntropy backward", "out of range")),
    # reshape
    "reshape to (2**62, 2**62)": ("vg.reshape(T(np.ones(4)), (2**62, 2**62))", (REFUSED, "Reshape", "too large")),
    "reshape empty to (0, 2**62, 2**62)": ("vg.reshape(T(np.ones(0)), (0, 2**62, 2**62))",
                                           (REFUSED, "Reshape", "too large")),
    "reshape empty to (2**32, 2**32, 0, -1)": ("vg.reshape(T(np.ones(0)), (2**32, 2**32, 0, -1))",
                                               (REFUSED, "Reshape", "too large")),
    "reshape to (2**63-1, -1)": ("vg.reshape(T(np.ones(4)), (2**63 - 1, -1))", (REFUSED, "Reshape", None)),
    "reshape to (2**64,)": ("vg.reshape(T(np.ones(4)), (2**64,))", (REFUSED, "Reshape", None)),
    "reshape empty to (2**40, 0, 2**10)": ("vg.reshape(T(np.ones(0)), (2**40, 0, 2**10))", (OK, shape(2**40, 0, 2**10))),
    "flatten 2**40 empty images": ("vg.flatten(T(np.ones((2**40, 0, 2**10, 2))))", (OK, shape(2**40, 0))),
    # the other families' shapes given as Python tuples (convert.c's vg_parse_shape, shared by them)
    "affine backward bshape that wraps": (  # the product of bshape wrapped to the number of biases (0)
        "C.affine_backward(np.ones((1, 0)), np.ones((0, 1)), np.ones((1, 1)), (2**32, 2**32, 1), True)",
        (REFUSED, "Affine backward", "is too large")),
    "sum backward (2**32, 2**32)": ("C.sum_backward(np.float64(1), (2**32, 2**32))",
                                    (REFUSED, "Sum backward", "is too large")),
    "select backward (2, 2**62)": ("C.select_backward(np.ones(2), np.array([0, 0]), (2, 2**62))",
                                   (REFUSED, "Select backward", "is too large")),
    "logceloss backward (0, 2**63-1)": ("C.logceloss_backward(np.float64(1), np.zeros(0, int), (0, 2**63 - 1))",
                                        (REFUSED, "LogCELoss backward", "is too large")),
}


@pytest.fixture(scope="module")
def reproductions():
    return run_isolated({name: code for name, (code, _) in CASES.items()})


@pytest.mark.parametrize("case", list(CASES))
def test_reproduction(reproductions, case):
    kind, *expected = CASES[case][1]
    result = reproductions[case]
    if kind == OK:
        assert_ok(result, expected[0])
    else:
        op, fragment, *exceptions = expected
        assert_refused(result, op, *exceptions, fragment=fragment)


def test_memory_errors_name_the_op():
    """An allocation that fails (8 TiB) is a MemoryError whose message names the op, not NumPy's alone."""
    res = run_isolated({"conv": "C.conv2d(np.ones((2**40, 0, 2, 2)), np.ones((1, 0, 1, 1)), None, 1, 1, 0, 0)",
                        "maxpool": "C.maxpool2d_backward(np.ones((2**20, 2**20, 0, 1)), "
                                   "np.zeros((2**20, 2**20, 0, 1), dtype=np.intp), (2**20, 2**20, 1, 1))"})
    assert_refused(res["conv"], "Convolution", ("MemoryError",), "Unable to allocate")
    assert_refused(res["maxpool"], "MaxPooling backward", ("MemoryError",))


# ------------------------------------------------------------------------------------------------
# Plans: what a call must do, worked out from the spec with unbounded ints
# ------------------------------------------------------------------------------------------------

REFUSE, SKIP = ("refused",), ("skip",)


def in_ssize(v):
    return -2**63 <= v <= MAXP


def fits(dims, itemsize):
    """NumPy's rule for an array that can exist: dims >= 0, the non-zero ones multiplying to <= MAXP bytes."""
    return all(d >= 0 for d in dims) and itemsize * math.prod(d for d in dims if d) <= MAXP


def nbytes(dims, itemsize):
    return itemsize * math.prod(dims)


def plan(buffers, result, itemsize):
    """("ok", result) when every buffer (shape) the call allocates is small, REFUSE when one cannot exist or
    cannot be allocated, SKIP in between."""
    if not all(fits(b, itemsize) for b in buffers):
        return REFUSE
    largest = max((nbytes(b, itemsize) for b in buffers), default=0)
    if largest >= HUGE_BYTES:
        return REFUSE
    return SKIP if largest > SMALL_BYTES else ("ok", result)


def window(size, k, stride, pad):
    """The number of window positions, or None when the window does not fit or the padded size overflows."""
    if size + 2 * pad > MAXP or size + 2 * pad < k:
        return None
    return (size + 2 * pad - k) // stride + 1


def parse_shape_ok(shape):
    """What vg_parse_shape accepts: ints that fit in intp, none negative, multiplying to a count that fits."""
    return all(in_ssize(d) for d in shape) and fits(shape, 1)


def pool_plan(xs, kh, kw, sh, sw, itemsize):
    if not all(in_ssize(v) for v in (kh, kw, sh, sw)) or min(kh, kw, sh, sw) < 1 or len(xs) != 4:
        return REFUSE
    n, c, h, w = xs
    oh, ow = window(h, kh, sh, 0), window(w, kw, sw, 0)
    if oh is None or ow is None:
        return REFUSE
    return plan([(n, c, oh, ow)], (n, c, oh, ow), itemsize)


# ------------------------------------------------------------------------------------------------
# Strategies: sizes near the overflow boundaries
# ------------------------------------------------------------------------------------------------

# 3 * 6148914691236517206 = 2**64 + 2 wraps to 2; (2**32 + 1)(2**32 - 1) = 2**64 - 1 wraps to -1
BOUNDARY = [2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32, 2**32 + 1, 2**62 - 1, 2**62, 2**62 + 1, 2**63 - 1,
            6148914691236517206, 3074457345618258603, 2**21, 2**22, 2**29, 2**30, 2**40, 2**43]
SIZE = st.one_of(st.integers(1, 3), st.integers(0, 3), st.sampled_from(BOUNDARY))
KSIZE = st.one_of(st.integers(1, 3), st.integers(1, 3), st.sampled_from(BOUNDARY))  # the filters' kh, kw
# int parameters: kernel sizes and strides (>= 1) and padding (>= 0); in one call of five, any of them may
# also be out of intp's range or negative
BAD = [0, -1, -2**63, 2**63, 2**64]
GOOD_PARAM = st.one_of(st.integers(1, 3), st.integers(1, 3), st.sampled_from(BOUNDARY))
GOOD_PAD = st.one_of(st.integers(0, 2), st.integers(0, 2), st.sampled_from(BOUNDARY))


@st.composite
def params(draw, kinds):
    """One int per letter of kinds: "k" a kernel size or stride, "p" a padding."""
    bad = draw(st.integers(0, 4)) == 0
    return tuple(draw(st.sampled_from(BAD) if bad and draw(st.integers(0, 2)) == 0 else
                      GOOD_PARAM if kind == "k" else GOOD_PAD) for kind in kinds)
DTYPE = st.sampled_from([np.float64, np.float32])


@st.composite
def creatable(draw, dims, itemsize, zeroable=None):
    """dims changed just enough to be an array that can be made at no cost: small, or empty (a zero dimension
    somewhere, among the positions `zeroable`, the other sizes multiplying to at most MAXP bytes)."""
    dims = list(dims)
    if dims and nbytes(dims, itemsize) > 2**16:
        dims[draw(st.sampled_from(zeroable or range(len(dims))))] = 0
    while not fits(dims, itemsize):
        i = max(range(len(dims)), key=lambda k: dims[k])
        dims[i] = draw(st.integers(1, 3))
    return tuple(dims)


def array(dims, dtype, rng):
    """Small integers (so that sums are exact in float32 too), or an empty array of any size."""
    if math.prod(dims) == 0:
        return np.empty(dims, dtype=dtype)
    assert nbytes(dims, 8) <= 2**20, f"the test itself asked for a large array {dims}"
    return rng.integers(-3, 4, size=dims).astype(dtype)


def check_refused(fn, op, *args, exceptions=(ValueError, MemoryError, TypeError)):
    try:
        fn(*args)
    except exceptions as e:
        assert op in str(e), f"the message of {type(e).__name__} does not name {op}: {e}"
        return
    raise AssertionError(f"{op}: the call with sizes {describe(args)} should have been refused")


def describe(args):
    return [a.shape if isinstance(a, np.ndarray) else a for a in args]


def check_shapes(got, want, dtype, what):
    """got: an array or a tuple of arrays; want: their shapes, a list (or one shape for one array)."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, list) else [want]
    assert len(got) >= len(want), what
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.shape == w, f"{what}: shape {getattr(g, 'shape', g)}, expected {w}"
        assert g.dtype in (dtype, np.intp), f"{what}: dtype {g.dtype}"


# ------------------------------------------------------------------------------------------------
# Oracles for values (small calls only): direct formulas with Python-int index arithmetic
# ------------------------------------------------------------------------------------------------


def positions(count, stride, offset, size, limit=10**6):
    """The output positions p (< count) whose input index p stride + offset lies in [0, size), and those
    indices; Python ints, so huge strides and paddings cannot overflow."""
    ps = [p for p in range(min(count, limit)) if 0 <= p * stride + offset < size]
    return np.array(ps, dtype=np.intp), np.array([p * stride + offset for p in ps], dtype=np.intp)


def conv_reference(x, w, b, sh, sw, ph, pw, oh, ow):
    n, o = x.shape[0], w.shape[0]
    y = np.zeros((n, o, oh, ow))
    for i in range(w.shape[2]):
        pi, rows = positions(oh, sh, i - ph, x.shape[2])
        for j in range(w.shape[3]):
            qj, cols = positions(ow, sw, j - pw, x.shape[3])
            if len(pi) and len(qj):
                patch = x[:, :, rows][:, :, :, cols].astype(np.float64)
                y[:, :, pi[:, None], qj[None, :]] += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    return y + (0 if b is None else b.astype(np.float64)[None, :, None, None])


def col2im_reference(gcols, xshape, kh, kw, sh, sw, ph, pw, oh, ow):
    gx = np.zeros(xshape)
    g = gcols.reshape(xshape[1], kh, kw, xshape[0], oh, ow)
    for i in range(kh):
        pi, rows = positions(oh, sh, i - ph, xshape[2])
        for j in range(kw):
            qj, cols = positions(ow, sw, j - pw, xshape[3])
            for a, r in zip(pi, rows):  # rows may repeat across i, not within one i
                gx[:, :, r, cols] += g[:, i, j, :, a][:, :, qj].transpose(1, 0, 2)
    return gx


# ------------------------------------------------------------------------------------------------
# Properties, one per CNN entry point of vgrad._C (run in a child process by test_property below)
# ------------------------------------------------------------------------------------------------


@st.composite
def conv_call(draw):
    t = draw(DTYPE)
    size = np.dtype(t).itemsize
    n, c, h, w = (draw(SIZE) for _ in range(4))
    xs = draw(creatable((n, c, h, w), size))
    o, kh, kw = draw(SIZE), draw(KSIZE), draw(KSIZE)
    wc = xs[1] if draw(st.integers(0, 9)) else draw(SIZE)
    ws = draw(creatable((o, wc, kh, kw), size, zeroable=[0]))
    bs = None if draw(st.booleans()) else ((ws[0],) if draw(st.integers(0, 9)) else (draw(st.integers(0, 3)),))
    if bs is not None and nbytes(bs, size) > 2**16:
        bs = None
    return (t, xs, ws, bs) + draw(params("kkpp"))


def conv2d_plan(xs, ws, bs, sh, sw, ph, pw, itemsize):
    """("ok", y's shape) when conv2d's output is small, REFUSE when the call is invalid or y cannot exist,
    SKIP in between. The kernels' own work buffers (a padded image, a chunk of columns) are made an image at
    a time: when one of those is large the call may be refused too (see work_is_large), never crash."""
    if not all(in_ssize(v) for v in (sh, sw, ph, pw)) or min(sh, sw) < 1 or min(ph, pw) < 0:
        return REFUSE
    (n, c, h, wd), (o, wc, kh, kw) = xs, ws
    if wc != c or kh == 0 or kw == 0 or (bs is not None and bs != (o,)):
        return REFUSE
    oh, ow = window(h, kh, sh, ph), window(wd, kw, sw, pw)
    if oh is None or ow is None:
        return REFUSE
    y = (n, o, oh, ow)
    return plan([y], y, itemsize)


def work_is_large(xs, ws, sh, sw, ph, pw, itemsize):
    """Whether a work buffer of one image (its padded copy, or its columns) is more than a small one."""
    (n, c, h, wd), (o, _, kh, kw) = xs, ws
    oh, ow = window(h, kh, sh, ph), window(wd, kw, sw, pw)
    buffers = [(c, h + 2 * ph, wd + 2 * pw), (c * kh * kw, oh * ow)]
    return not all(fits(b, itemsize) and nbytes(b, itemsize) <= SMALL_BYTES for b in buffers)


def run_or_refused(fn, op, large_work, *args):
    """fn(*args), or None when it was refused with a message naming op, which only a large work buffer allows."""
    try:
        return fn(*args)
    except (MemoryError, ValueError) as e:
        assert large_work, f"{op}: a call with small buffers was refused: {e}"
        assert op in str(e), f"the message of {type(e).__name__} does not name {op}: {e}"
        event("refused for its work buffers")
        return None


@settings()
@given(call=conv_call(), seed=st.integers(0, 2**32 - 1))
def property_conv2d(call, seed):
    t, xs, ws, bs, sh, sw, ph, pw = call
    rng = np.random.default_rng(seed)
    x, w = array(xs, t, rng), array(ws, t, rng)
    b = None if bs is None else array(bs, t, rng)
    p = conv2d_plan(xs, ws, bs, sh, sw, ph, pw, np.dtype(t).itemsize)
    event(p[0])
    if p == SKIP:
        return
    if p == REFUSE:
        return check_refused(C.conv2d, "Convolution", x, w, b, sh, sw, ph, pw)
    y = run_or_refused(C.conv2d, "Convolution", work_is_large(xs, ws, sh, sw, ph, pw, np.dtype(t).itemsize),
                       x, w, b, sh, sw, ph, pw)
    if y is None:
        return
    check_shapes(y, p[1], t, "conv2d")
    if y.size and w.size and y.size * ws[2] * ws[3] <= 10**5:  # the values too, where that is cheap
        want = conv_reference(x, w, b, sh, sw, ph, pw, *y.shape[2:])
        np.testing.assert_array_equal(y, want.astype(t), err_msg="conv2d values")


@st.composite
def conv_grad_call(draw):
    t, xs, ws, _, sh, sw, ph, pw = draw(conv_call())
    size = np.dtype(t).itemsize
    # go: usually of the shape the plan expects (when that can be made), else any
    go_s = draw(creatable((draw(SIZE), draw(SIZE), draw(SIZE), draw(SIZE)), size))
    p = conv2d_plan(xs, ws, None, sh, sw, ph, pw, size)
    if p[0] == "ok" and fits(p[1], size) and draw(st.integers(0, 5)):
        go_s = p[1]
    return t, xs, ws, go_s, sh, sw, ph, pw, draw(st.booleans()), draw(st.booleans())


@settings()
@given(call=conv_grad_call(), seed=st.integers(0, 2**32 - 1))
def property_conv2d_grad(call, seed):
    t, xs, ws, go_s, sh, sw, ph, pw, with_bias, needs_x = call
    size = np.dtype(t).itemsize
    rng = np.random.default_rng(seed)
    go, x, w = array(go_s, t, rng), array(xs, t, rng), array(ws, t, rng)
    args = (go, x, w, sh, sw, ph, pw, with_bias, needs_x)
    p = conv2d_plan(xs, ws, None, sh, sw, ph, pw, size)
    if p[0] == "ok" and go_s != p[1]:
        p = REFUSE
    event(p[0])
    if p == SKIP:
        return
    if p == REFUSE:
        return check_refused(C.conv2d_grad, "Convolution", *args)
    got = run_or_refused(C.conv2d_grad, "Convolution", work_is_large(xs, ws, sh, sw, ph, pw, size), *args)
    if got is None:
        return
    assert len(got) == (3 if with_bias else 2)
    assert (got[0] is None) == (not needs_x)
    check_shapes(got[1], ws, t, "conv2d_grad gw")
    if with_bias:
        check_shapes(got[2], (ws[0],), t, "conv2d_grad gb")
        np.testing.assert_allclose(got[2], go.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-6, err_msg="gb")
    if needs_x:
        check_shapes(got[0], xs, t, "conv2d_grad gx")
    n, o, oh, ow = go_s
    if go.size and x.size and w.size and go.size * ws[2] * ws[3] <= 10**5 and x.size * ws[0] <= 10**5:
        # the values, from the columns of a direct formula
        k = ws[1] * ws[2] * ws[3]
        cols = np.zeros((ws[1], ws[2], ws[3], n, oh, ow))
        for i in range(ws[2]):
            pi, rows = positions(oh, sh, i - ph, xs[2])
            for j in range(ws[3]):
                qj, cs = positions(ow, sw, j - pw, xs[3])
                for a, r in zip(pi, rows):
                    cols[:, i, j, :, a, :][:, :, qj] = x[:, :, r, cs].astype(np.float64).transpose(1, 0, 2)
        cols = cols.reshape(k, n * oh * ow)
        go2 = go.astype(np.float64).transpose(1, 0, 2, 3).reshape(o, n * oh * ow)
        np.testing.assert_allclose(got[1], (go2 @ cols.T).reshape(ws), rtol=1e-6, err_msg="gw")
        if needs_x:
            gcols = w.astype(np.float64).reshape(o, k).T @ go2
            want = col2im_reference(gcols, xs, ws[2], ws[3], sh, sw, ph, pw, oh, ow)
            np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=0, err_msg="gx")


@settings()
@given(call=conv_call(), seed=st.integers(0, 2**32 - 1))
def property_conv2d_relu(call, seed):
    """conv2d_relu refuses what conv2d refuses, and otherwise gives the ReLU of conv2d's output."""
    t, xs, ws, bs, sh, sw, ph, pw = call
    rng = np.random.default_rng(seed)
    x, w = array(xs, t, rng), array(ws, t, rng)
    b = None if bs is None else array(bs, t, rng)
    p = conv2d_plan(xs, ws, bs, sh, sw, ph, pw, np.dtype(t).itemsize)
    event(p[0])
    if p == SKIP:
        return
    if p == REFUSE:
        return check_refused(C.conv2d_relu, "ConvolutionReLU", x, w, b, sh, sw, ph, pw)
    y = run_or_refused(C.conv2d_relu, "ConvolutionReLU",
                       work_is_large(xs, ws, sh, sw, ph, pw, np.dtype(t).itemsize), x, w, b, sh, sw, ph, pw)
    if y is None:
        return
    check_shapes(y, p[1], t, "conv2d_relu")
    if y.size and w.size and y.size * ws[2] * ws[3] <= 10**5:
        np.testing.assert_array_equal(y, np.maximum(C.conv2d(x, w, b, sh, sw, ph, pw), 0), err_msg="conv2d_relu")


@settings()
@given(call=conv_grad_call(), seed=st.integers(0, 2**32 - 1), y_size=SIZE, other_y=st.integers(0, 5))
def property_conv2d_relu_grad(call, seed, y_size, other_y):
    """conv2d_relu_grad refuses what conv2d_grad refuses and an output y of another shape than go's, and
    otherwise gives conv2d_grad of go where y > 0."""
    t, xs, ws, go_s, sh, sw, ph, pw, with_bias, needs_x = call
    size = np.dtype(t).itemsize
    y_s = go_s if other_y else go_s[:3] + (y_size,)
    if not fits(y_s, size) or (math.prod(y_s) and nbytes(y_s, 8) > 2**20):  # (one array() can make)
        y_s = go_s
    rng = np.random.default_rng(seed)
    go, x, w = array(go_s, t, rng), array(xs, t, rng), array(ws, t, rng)
    y = array(y_s, t, rng) - 0.5  # (about half of it at most 0)
    args = (go, x, w, sh, sw, ph, pw, with_bias, needs_x, y)
    p = conv2d_plan(xs, ws, None, sh, sw, ph, pw, size)
    if p[0] == "ok" and (go_s != p[1] or y_s != go_s):
        p = REFUSE
    event(p[0])
    if p == SKIP:
        return
    if p == REFUSE:
        return check_refused(C.conv2d_relu_grad, "ConvolutionReLU", *args)
    got = run_or_refused(C.conv2d_relu_grad, "ConvolutionReLU", work_is_large(xs, ws, sh, sw, ph, pw, size), *args)
    if got is None:
        return
    assert len(got) == (3 if with_bias else 2) and (got[0] is None) == (not needs_x)
    if go.size * ws[2] * ws[3] <= 10**5 and x.size * ws[0] <= 10**5:
        want = C.conv2d_grad(np.where(y > 0, go, 0).astype(t), x, w, sh, sw, ph, pw, with_bias, needs_x)
        for k, (g, r) in enumerate(zip(got, want)):
            if r is not None:
                np.testing.assert_array_equal(g, r, err_msg=f"conv2d_relu_grad [{k}]")


@st.composite
def window_of(draw, xshape):
    """kernel sizes and strides for images of xshape: usually kernels that fit (up to the whole image, which
    is huge when the batch is empty), sometimes any."""
    kh, kw, sh, sw = draw(params("kkkk"))
    if len(xshape) == 4 and draw(st.integers(0, 2)):
        fit = [draw(st.sampled_from([v for v in (1, 2, side // 2, side - 1, side) if 1 <= v <= MAXP] or [1]))
               for side in xshape[2:]]
        kh, kw = fit
    return (kh, kw) + ((kh, kw) if draw(st.booleans()) else (sh, sw))


@st.composite
def pool_call(draw):
    t = draw(DTYPE)
    xs = draw(creatable(tuple(draw(SIZE) for _ in range(4)), np.dtype(t).itemsize))
    return (t, xs) + draw(window_of(xs))


def _pool_forward(name, op_class, op, idx_size):
    @settings()
    @given(call=pool_call(), seed=st.integers(0, 2**32 - 1))
    def prop(call, seed):
        t, xs, kh, kw, sh, sw = call
        x = array(xs, t, np.random.default_rng(seed))
        p = pool_plan(xs, kh, kw, sh, sw, idx_size or np.dtype(t).itemsize)
        event(p[0])
        if p == SKIP:
            return
        if p == REFUSE:
            return check_refused(getattr(C, name), op, x, kh, kw, sh, sw)
        got = getattr(C, name)(x, kh, kw, sh, sw)
        check_shapes(got, [p[1], p[1]] if idx_size else p[1], t, name)
        if x.size and kh * kw <= 64:
            want = op_class.Reference.forward({}, x, kernel_size=(kh, kw), stride=(sh, sw))
            y = got[0] if idx_size else got
            np.testing.assert_array_equal(y, want.astype(t), err_msg=f"{name} values")
    return prop


property_maxpool2d_forward = _pool_forward("maxpool2d_forward", MaxPooling, "MaxPooling", 8)
property_avgpool2d_forward = _pool_forward("avgpool2d_forward", AvgPooling, "AvgPooling", 0)


@st.composite
def xshape_4d(draw):
    """A shape given as a tuple: usually one that an array could have (mostly empty ones, when they are
    huge), sometimes any 4 sizes, or one of another length, a negative size or one out of intp's range."""
    xshape = tuple(draw(SIZE) for _ in range(4))
    if draw(st.integers(0, 2)):
        xshape = draw(creatable(xshape, 8))
    if draw(st.integers(0, 9)) == 0:
        xshape = xshape[:draw(st.integers(0, 3))] + (draw(st.sampled_from([2**63, 2**64, -1])),)
    return xshape


def xshape_ok(xshape, itemsize):
    return len(xshape) == 4 and parse_shape_ok(xshape) and fits(xshape, itemsize)


@settings()
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def property_maxpool2d_backward(data, seed):
    t = data.draw(DTYPE)
    size = np.dtype(t).itemsize
    xshape = data.draw(xshape_4d())
    # (creatable as intp too: the indices have go's shape)
    if len(xshape) == 4 and data.draw(st.integers(0, 4)):  # usually a go with xshape's N and C
        go_s = data.draw(creatable(xshape[:2] + (data.draw(SIZE), data.draw(SIZE)), 8))
    else:
        go_s = data.draw(creatable(tuple(data.draw(SIZE) for _ in range(4)), 8))
    rng = np.random.default_rng(seed)
    go = array(go_s, t, rng)
    plane = xshape[2] * xshape[3] if xshape_ok(xshape, size) else 1
    bad_index = data.draw(st.integers(0, 9)) == 0
    idx = rng.integers(0, max(plane, 1), size=go_s) if go.size else np.zeros(go_s, dtype=np.intp)
    if bad_index and idx.size:
        idx.flat[0] = data.draw(st.sampled_from([-1, plane, 2**62]))
    args = (go, idx, xshape)
    if not xshape_ok(xshape, size) or go_s[:2] != xshape[:2] or (idx.size and (idx.min() < 0 or idx.max() >= plane)):
        event("refused")
        return check_refused(C.maxpool2d_backward, "MaxPooling backward", *args,
                             exceptions=(ValueError, MemoryError, TypeError, IndexError))
    p = plan([xshape], xshape, size)
    event(p[0])
    if p == SKIP:
        return
    if p == REFUSE:
        return check_refused(C.maxpool2d_backward, "MaxPooling backward", *args)
    gx = C.maxpool2d_backward(*args)
    check_shapes(gx, xshape, t, "maxpool2d_backward")
    if gx.size:
        want = MaxPooling.Reference.backward({"indices": idx, "xshape": xshape}, go)
        np.testing.assert_array_equal(gx, want, err_msg="maxpool2d_backward values")


@settings()
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def property_avgpool2d_backward(data, seed):
    t = data.draw(DTYPE)
    size = np.dtype(t).itemsize
    xshape = data.draw(xshape_4d())
    kh, kw, sh, sw = data.draw(window_of(xshape))
    p = pool_plan(xshape, kh, kw, sh, sw, size) if xshape_ok(xshape, size) else REFUSE
    if p[0] == "ok" and data.draw(st.integers(0, 5)):
        go_s = p[1]
    else:
        go_s = data.draw(creatable(tuple(data.draw(SIZE) for _ in range(4)), size))
    if not fits(go_s, size) or nbytes(go_s, size) > SMALL_BYTES:
        go_s = (1, 1, 1, 1)
    go = array(go_s, t, np.random.default_rng(seed))
    args = (go, xshape, kh, kw, sh, sw)
    if p[0] == "ok":
        p = plan([xshape], xshape, size) if go_s == p[1] else REFUSE
    event(p[0])
    if p == SKIP:
        return
    if p == REFUSE:
        return check_refused(C.avgpool2d_backward, "AvgPooling backward", *args)
    gx = C.avgpool2d_backward(*args)
    check_shapes(gx, xshape, t, "avgpool2d_backward")
    if gx.size and kh * kw <= 64:
        want = AvgPooling.Reference.backward({"xshape": xshape, "kernel_size": (kh, kw), "stride": (sh, sw)},
                                             go.astype(np.float64))
        np.testing.assert_allclose(gx, want, rtol=1e-5 if t == np.float32 else 1e-12, err_msg="avgpool2d_backward")


@st.composite
def any_shape(draw, itemsize, min_dims=0, max_dims=4):
    return draw(creatable(tuple(draw(SIZE) for _ in range(draw(st.integers(min_dims, max_dims)))), itemsize))


@settings()
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def property_batchnorm(data, seed):
    """batchnorm_forward and batchnorm_backward: empty batches of any size, odd numbers of values."""
    t = data.draw(DTYPE)
    size = np.dtype(t).itemsize
    xs = data.draw(any_shape(size, 1, 4))
    rng = np.random.default_rng(seed)
    x = array(xs, t, rng)
    c = xs[1] if len(xs) >= 2 else 1
    c = c if c <= 2**10 else data.draw(st.integers(0, 3))  # the per-channel vectors are real arrays
    gamma, beta = array((c,), t, rng), array((c,), t, rng)
    running = data.draw(st.booleans())
    mean, var = (array((c,), t, rng), np.abs(array((c,), t, rng))) if running else (None, None)
    per_channel = xs[0] * math.prod(xs[2:]) if len(xs) >= 2 else 0
    valid = len(xs) >= 2 and xs[1] == c and (running or per_channel > 1)
    event("ok" if valid else "refused")
    if not valid:
        return check_refused(C.batchnorm_forward, "BatchNormalization", x, gamma, beta, mean, var, 1e-5)
    y, xhat, m, v, invstd = C.batchnorm_forward(x, gamma, beta, mean, var, 1e-5)
    check_shapes((y, xhat, m, v, invstd), [xs, xs, (c,), (c,), (c,)], t, "batchnorm_forward")
    go = array(xs, t, rng)
    grads = C.batchnorm_backward(go, xhat, gamma, invstd, not running)
    check_shapes(grads, [xs, (c,), (c,)], t, "batchnorm_backward")
    if x.size == 0:
        assert not grads[1].any() and not grads[2].any(), "batchnorm_backward: an empty batch has no gradient"


@settings()
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def property_dropout(data, seed):
    t = data.draw(DTYPE)
    size = np.dtype(t).itemsize
    xs = data.draw(any_shape(size))
    ms = xs if data.draw(st.integers(0, 5)) else data.draw(any_shape(size))
    rng = np.random.default_rng(seed)
    x, mask = array(xs, t, rng), array(ms, t, rng) > 0
    event("ok" if ms == xs else "refused")
    for name in ("dropout_forward", "dropout_backward"):
        if ms != xs:
            check_refused(getattr(C, name), "DropoutMask", x, mask, 0.5)
        else:
            y = getattr(C, name)(x, mask, 0.5)
            check_shapes(y, xs, t, name)
            np.testing.assert_array_equal(y, np.where(mask, x * t(2), t(0)), err_msg=name)


@settings()
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def property_cross_entropy(data, seed):
    """cross_entropy_forward and cross_entropy_backward, with empty batches of many classes, and divisors
    from the boundaries."""
    t = data.draw(DTYPE)
    size = np.dtype(t).itemsize
    n, c = data.draw(creatable((data.draw(SIZE), data.draw(SIZE)), size))
    rng = np.random.default_rng(seed)
    logits = array((n, c), t, rng)
    reduction = data.draw(st.sampled_from(["mean", "sum"]))
    if n > 2**12:  # (2**40 rows of no classes: too many targets to make; these have the wrong length)
        return check_refused(C.cross_entropy_forward, "CrossEntropy", logits, np.zeros(3, dtype=np.intp), reduction)
    targets = rng.integers(0, c, size=n) if c else np.zeros(n, dtype=np.intp)
    if n and not c:
        return check_refused(C.cross_entropy_forward, "CrossEntropy", logits, targets, reduction,
                             exceptions=(ValueError, IndexError))
    loss, softmax = C.cross_entropy_forward(logits, targets, reduction)
    check_shapes((loss, softmax), [(), (n, c)], t, "cross_entropy_forward")
    divisor = data.draw(params("p"))[0]
    args = (np.array(1.0, dtype=t), softmax, targets, divisor)
    if not in_ssize(divisor) or divisor < 0:
        event("refused")
        return check_refused(C.cross_entropy_backward, "CrossEntropy backward", *args)
    event("ok")
    g = C.cross_entropy_backward(*args)
    check_shapes(g, (n, c), t, "cross_entropy_backward")


@settings()
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def property_reshape(data, seed):
    """reshape against np.reshape, to shapes from the boundaries (with -1 sometimes)."""
    t = data.draw(DTYPE)
    size = np.dtype(t).itemsize
    xs = data.draw(any_shape(size))
    x = array(xs, t, np.random.default_rng(seed))
    target = [data.draw(st.one_of(SIZE, st.sampled_from([2**63, 2**64]))) for _ in range(data.draw(st.integers(0, 4)))]
    if target and data.draw(st.booleans()):
        target[data.draw(st.integers(0, len(target) - 1))] = -1
    if data.draw(st.integers(0, 3)) == 0:
        target = list(xs[::-1])
    try:
        want = np.reshape(x, tuple(target))
    except (ValueError, TypeError, OverflowError):
        event("refused")
        return check_refused(C.reshape, "Reshape", x, tuple(target))
    event("ok")
    got = C.reshape(x, tuple(target))
    assert got.shape == want.shape and got.dtype == x.dtype, f"reshape: {got.shape}, expected {want.shape}"


PROPERTIES = {
    "conv2d": property_conv2d,
    "conv2d_grad": property_conv2d_grad,
    "conv2d_relu": property_conv2d_relu,
    "conv2d_relu_grad": property_conv2d_relu_grad,
    "maxpool2d_forward": property_maxpool2d_forward,
    "maxpool2d_backward": property_maxpool2d_backward,
    "avgpool2d_forward": property_avgpool2d_forward,
    "avgpool2d_backward": property_avgpool2d_backward,
    "batchnorm_forward, batchnorm_backward": property_batchnorm,
    "dropout_forward, dropout_backward": property_dropout,
    "cross_entropy_forward, cross_entropy_backward": property_cross_entropy,
    "reshape": property_reshape,
}


def test_properties_cover_the_cnn_entry_points():
    from test_properties_cnn import CNN_REFERENCE_CHECKED
    covered = {name for key in PROPERTIES for name in key.split(", ")}
    # num_threads takes a thread count, not sizes: its range and cap are tested in test_conv_kernels.py
    assert covered == CNN_REFERENCE_CHECKED - {"num_threads"}


@pytest.fixture(scope="module")
def properties():
    return run_isolated({key: f"import test_sizes; test_sizes.PROPERTIES[{key!r}]()" for key in PROPERTIES},
                        timeout=600)


@pytest.mark.parametrize("key", list(PROPERTIES))
def test_property(properties, key):
    result = properties[key]
    assert "crash" not in result, f"the process crashed (status {result['crash']}):\n{result['stderr']}"
    assert "hang" not in result, "the property test did not finish"
    assert "error" not in result, f"{result['error']}: {result['message']}\n{result['printed']}"


# ------------------------------------------------------------------------------------------------
# Holes in the kernel families outside the CNN toolkit (shape.c, reduce.c, select.c, fused.c,
# matmul.c): the failing tests, to be fixed there
# ------------------------------------------------------------------------------------------------


def test_expand_of_an_empty_input_returns_at_once():
    res = run_isolated({"expand": "C.expand_forward(np.ones((2**40, 1, 0)), 1, 2**19)"}, timeout=5)
    assert_ok(res["expand"], shape(2**40, 2**19, 0))


def test_logsoftmax_backward_of_empty_rows_returns_at_once():
    """Rows of no columns (which LogSoftmax's forward refuses): refused at once, however many there are."""
    res = run_isolated({
        "many": "C.logsoftmax_backward(np.empty((2**24, 0)), np.empty((2**24, 0)), np.ones(2**24), "
                "np.zeros(2**24, dtype=np.intp))",
        "sums missing": "C.logsoftmax_backward(np.empty((2**40, 0)), np.empty((2**40, 0)), np.ones(0), "
                        "np.zeros(0, dtype=np.intp))",
    }, timeout=5)
    assert_refused(res["many"], "LogSoftmax backward", ("IndexError",))  # no column for the maxima's indices
    assert_refused(res["sums missing"], "LogSoftmax backward", ("ValueError",))


def test_products_too_large_name_the_op():
    res = run_isolated({
        "cannot exist": "C.matmul_forward(np.empty((2**40, 0)), np.empty((0, 2**40)))",
        "cannot be allocated": "C.matmul_forward(np.empty((2**20, 0)), np.empty((0, 2**20)))",
        "batchmm": "C.batchmm_forward(np.empty((2**40, 0)), np.empty((2**40, 0)))",
        "affine": "C.affine_forward(np.empty((1, 0)), np.ones(1), np.empty((2**40, 0)))",  # y: 8 TiB
    })
    assert_refused(res["cannot exist"], "MatrixMultiply", ("ValueError",))
    assert_refused(res["cannot be allocated"], "MatrixMultiply", ("MemoryError",))
    assert_refused(res["batchmm"], "BatchMM")
    assert_refused(res["affine"], "Affine")
