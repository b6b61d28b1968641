"""The registry of ops, and every other list of ops checked against it.

The ops are the classes of vgrad/ops.py and vgrad/nn_ops.py: vgrad.ops.ALL_OPS lists them by itself, and each
class names in `kernels` the functions of vgrad._C it owns. Everything else that lists ops, or the functions of
vgrad._C, is checked against that here, so that nothing about an op can be forgotten silently:

- its kernels are functions of vgrad._C (csrc/functions.def), and its forward/backward call them;
- every function vgrad._C exports is an op's kernel or one of vgrad.ops.C_HELPERS;
- vgrad exports the op, and the README names it;
- the tests have its inputs (an entry of tests/op_table.py, with special values), a valid call of each of its
  kernels (op_table.c_calls()), and a test of each kernel against the op's NumPy Reference
  (tests/test_properties.py, tests/test_properties_cnn.py).

Each failure says what is missing and where it goes.
"""
import ast
import glob
import inspect
import os
import re
import textwrap

import numpy as np
import pytest

import vgrad as vg
import vgrad._C as C
import vgrad.nn_ops as vnn
import vgrad.ops as vops
from op_table import KERNEL_OWNERS, TABLE, Sample, c_calls, c_entry_points
from test_properties import REFERENCE_CHECKED
from test_properties_cnn import CNN_REFERENCE_CHECKED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = vops.ALL_OPS
KERNELS = [kernel for op in OPS for kernel in getattr(op, "kernels", ())]
EXPORTED = {name for name in dir(C) if not name.startswith("_")}  # its functions, and the classes of C_HELPERS
FUNCTIONS = set(c_entry_points())


def where(op):
    return "vgrad/nn_ops.py" if op in vops.NN_OPS else "vgrad/ops.py"


def by_name(ops):
    return pytest.mark.parametrize("op", ops, ids=lambda op: op.__name__)


# ------------------------------------------------------------------------------------------------
# The registry: the op classes, their kernels, and what vgrad._C exports
# ------------------------------------------------------------------------------------------------


def test_all_ops_are_the_op_classes_of_ops_and_nn_ops():
    """ALL_OPS is every Op subclass that vgrad.ops and vgrad.nn_ops define, each once, the CNN toolkit's last."""
    assert isinstance(OPS, tuple) and len(set(OPS)) == len(OPS)
    assert OPS[len(OPS) - len(vops.NN_OPS):] == vops.NN_OPS
    for module in (vops, vnn):
        defined = {v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, vg.Op) and v.__module__ == module.__name__}
        assert defined <= set(OPS), f"{module.__name__} defines ops that ALL_OPS lacks: {defined - set(OPS)}"


@by_name(OPS)
def test_op_declares_the_kernels_it_owns(op):
    assert "kernels" in vars(op), (
        f"{op.__name__} declares no kernels: add `kernels = ('..._forward', '..._backward')`, the functions of "
        f"vgrad._C that compute it, to its class in {where(op)}")
    kernels = op.kernels
    assert isinstance(kernels, tuple) and kernels and all(isinstance(k, str) for k in kernels), (
        f"{op.__name__}.kernels must be a tuple of names of functions of vgrad._C, not {kernels!r}")
    missing = [k for k in kernels if k not in FUNCTIONS]
    assert not missing, (
        f"{op.__name__}.kernels names {missing}, which vgrad._C does not export: write the kernels in a file of "
        f"csrc/, add a VG_FUNC line for each to csrc/functions.def, and rebuild (python setup.py build_ext "
        f"--inplace)")
    assert isinstance(vars(op).get("Reference"), type) and issubclass(op.Reference, vg.Op), (
        f"{op.__name__} has no nested NumPy `class Reference(Op)`, which the tests check its kernels against")


def test_no_function_of_C_has_two_owners():
    twice = sorted({k for k in KERNELS if KERNELS.count(k) > 1})
    assert not twice, f"kernels named by more than one op: {twice} (an op names only the kernels it owns)"
    both = sorted(set(KERNELS) & set(vops.C_HELPERS))
    assert not both, f"{both}: both an op's kernels and in vgrad.ops.C_HELPERS"


def c_functions_called(op):
    """The functions of vgrad._C the op's own code (not its Reference) calls: every `_C.name` in its class."""
    (cls,) = ast.parse(textwrap.dedent(inspect.getsource(op))).body
    called = set()
    for stmt in cls.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == "Reference":
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "_C":
                called.add(node.attr)
    return called


@by_name(OPS)
def test_kernels_are_functions_the_op_calls(op):
    """An op calls the kernels it names (and may call other ops' kernels: Squeeze's backward is Unsqueeze's)."""
    called = c_functions_called(op)
    unused = sorted(set(op.kernels) - called)
    assert not unused, f"{op.__name__}.kernels names {unused}, which its forward and backward never call"
    unowned = sorted(called - set(KERNELS))
    assert not unowned, (f"{op.__name__} calls {unowned} of vgrad._C, which no op names in its kernels: add "
                         f"them to {op.__name__}.kernels in {where(op)}")


def test_every_export_of_C_is_a_kernel_or_a_helper():
    unknown = sorted(EXPORTED - set(KERNELS) - set(vops.C_HELPERS))
    assert not unknown, (
        f"vgrad._C exports {unknown}, which no op names in its `kernels` and vgrad.ops.C_HELPERS does not "
        f"list: add each to the kernels of the op that calls it (or, if it is no op's, to C_HELPERS)")
    gone = sorted(set(vops.C_HELPERS) - EXPORTED)
    assert not gone, f"vgrad.ops.C_HELPERS lists {gone}, which vgrad._C does not export"


def test_functions_def_lists_what_the_built_extension_exports():
    """csrc/functions.def (the source of vgrad._C's method table) and the built vgrad._C agree: an extension
    built before the last change to csrc/ needs `python setup.py build_ext --inplace`."""
    files = glob.glob(os.path.join(ROOT, "csrc", "*.def"))
    if not files:
        pytest.skip("no csrc/ next to the tests (an installed copy)")
    listed = {name for path in files for name in re.findall(r"^\s*VG_FUNC\(\s*(\w+)", open(path).read(), re.M)}
    assert listed, "found no VG_FUNC(name, ...) line in csrc/*.def, where this test reads vgrad._C's functions"
    assert listed == FUNCTIONS, (f"in csrc/*.def, not in the built vgrad._C: {sorted(listed - FUNCTIONS)}; built, "
                                 f"not in csrc/*.def: {sorted(FUNCTIONS - listed)}: rebuild")


# ------------------------------------------------------------------------------------------------
# vgrad's exports and the README
# ------------------------------------------------------------------------------------------------


@by_name(OPS)
def test_vgrad_exports_the_op(op):
    assert getattr(vg, op.__name__, None) is op, (
        f"vgrad does not export {op.__name__}: add it to the `from .{'nn_ops' if op in vops.NN_OPS else 'ops'} "
        f"import ...` line of vgrad/__init__.py")
    assert getattr(vops, op.__name__, None) is op, f"vgrad.ops.{op.__name__} is not the op"


def test_vgrad_exports_no_other_op():
    others = sorted(name for name, value in vars(vg).items() if isinstance(value, type) and issubclass(value, vg.Op)
                    and value is not vg.Op and value not in OPS)
    assert not others, f"vgrad exports ops that vgrad.ops.ALL_OPS lacks: {others}"


def test_the_readme_names_every_op():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # the code blocks
    quoted = {word for span in re.findall(r"`([^`]+)`", text) for word in re.findall(r"\w+", span)}
    missing = [op.__name__ for op in OPS if op.__name__ not in quoted]
    assert not missing, f"README.md does not name {missing}: add them, in backquotes, where it lists the ops"


# ------------------------------------------------------------------------------------------------
# The tests' inputs of each op and each function of vgrad._C
# ------------------------------------------------------------------------------------------------


def test_every_op_has_one_table_entry():
    table_ops = [e.op for e in TABLE]
    twice = sorted({op.__name__ for op in table_ops if table_ops.count(op) > 1})
    assert not twice, f"ops with two entries in tests/op_table.py TABLE: {twice}"
    missing = [op.__name__ for op in OPS if op not in table_ops]
    assert not missing, (f"ops without an entry in tests/op_table.py TABLE (its samples, error cases and special "
                         f"values): {missing}")
    extra = [op.__name__ for op in table_ops if op not in OPS]
    assert not extra, f"entries of tests/op_table.py TABLE for ops that vgrad.ops.ALL_OPS lacks: {extra}"


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_table_entry_has_samples_and_special_values(entry, rng):
    samples = entry.samples(np.dtype(np.float64), rng)
    assert samples and all(isinstance(s, Sample) for s in samples), f"{entry.name}: no sample inputs"
    assert isinstance(entry.special, Sample) and entry.special.inputs, (
        f"{entry.name}: no special values (inf, NaN, signed zeros, subnormals, overflowing values): add "
        f"`special=special(...)` to its entry in tests/op_table.py")


def test_every_function_of_C_has_a_valid_call():
    calls = c_calls()
    missing = sorted(FUNCTIONS - set(calls))
    assert not missing, (f"functions of vgrad._C without a valid call in tests/op_table.py c_calls() (the tests of "
                         f"bad arguments and reference counts use it): {missing}")
    stale = sorted(set(calls) - FUNCTIONS)
    assert not stale, f"tests/op_table.py c_calls() has calls of functions that vgrad._C lacks: {stale}"
    for name, call in calls.items():
        assert call.op == (KERNEL_OWNERS[name].__name__ if name in KERNEL_OWNERS else name)
        getattr(C, name)(*call.args)  # valid: the bad-argument tests change one argument of it


def test_every_function_of_C_is_checked_against_numpy():
    """Each kernel against its op's NumPy Reference (and add_into against NumPy's +=), on random arguments."""
    checked = REFERENCE_CHECKED | CNN_REFERENCE_CHECKED
    missing = sorted(FUNCTIONS - checked)
    assert not missing, (
        f"functions of vgrad._C that no property test checks against NumPy: {missing}: add each to a family of "
        f"tests/test_properties.py (UNARY_FORWARD, UNARY_BACKWARD, BINARY_FORWARD, BINARY_BACKWARD, MATMUL) or "
        f"write a test for it there (or, for the CNN toolkit, in tests/test_properties_cnn.py), marked "
        f"@checks(name) (@cnn_checks(name))")
    stale = sorted(checked - FUNCTIONS)
    assert not stale, f"property tests of functions that vgrad._C lacks: {stale}"
    both = sorted(REFERENCE_CHECKED & CNN_REFERENCE_CHECKED)
    assert not both, f"checked in both test_properties.py and test_properties_cnn.py: {both}"
