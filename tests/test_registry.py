"""The registry of ops, and every other list of ops checked against it.

The ops are the classes of vgrad/ops.py and vgrad/nn_ops.py: vgrad.ops.ALL_OPS lists them by itself, and each
class names in `kernels` the functions of vgrad._C it owns. Everything else that lists ops, or the functions of
vgrad._C, is checked against that here, so that nothing about an op can be forgotten silently:

- its kernels are functions of vgrad._C (csrc/functions.def), and its forward/backward call them;
- every function vgrad._C exports is an op's kernel or one of vgrad.ops.C_HELPERS;
- vgrad exports the op (vgrad/__init__.py does so for each op of ALL_OPS);
- it declares its test inputs in its class (`tests = ...`, of a kind of vgrad/op_inputs.py), from which
  tests/op_table.py builds its entry (samples, special values); each of its kernels has a valid call
  (op_table.c_calls(), derived from the declaration for the element-wise ops and matrix products) and a test against
  the op's NumPy Reference (tests/test_properties.py, its families derived from the declarations too, or
  tests/test_properties_cnn.py).

The README is not a list to keep complete (`python -m vgrad ops` lists every op, from the registry): the ops its
user-facing lists name must exist, and that is all that is checked of it.

The checks of one op are one function, problems(op, world), over a snapshot of everything that lists ops (a
World). Each built-in op must have none; the throwaway ExampleTanh at the end, an op as a newcomer would write it,
shows that it is complete with its class, its kernels in C and their lines in csrc/functions.def, and that each
missing piece is reported, once, saying what is missing and where it goes.
"""
import ast
import dataclasses
import glob
import inspect
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vgrad as vg
import vgrad._C as C
from vgrad import _C  # the name by which the ops call their kernels (the throwaway ExampleTanh's below are never run)
import vgrad.nn_ops as vnn
import vgrad.ops as vops
from op_table import KERNEL_OWNERS, TABLE, Sample, c_calls, c_entry_points, declared_calls, entry
from test_properties import REFERENCE_CHECKED, derived_checks, unary_families
from test_properties_cnn import CNN_REFERENCE_CHECKED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = vops.ALL_OPS
KERNELS = [kernel for op in OPS for kernel in getattr(op, "kernels", ())]
EXPORTED = {name for name in dir(C) if not name.startswith("_")}  # its functions, and the classes of C_HELPERS
FUNCTIONS = set(c_entry_points())


def by_name(ops):
    return pytest.mark.parametrize("op", ops, ids=lambda op: op.__name__)


def readme_text():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def readme_ops():
    """The op names in the README's lists of ops: the words in backquotes, capitalised as class names are, in each
    passage that begins "The ops `" or "The ops are" and runs to the end of its paragraph or bullet."""
    passages = re.findall(r"The ops (?=`|are\b)(.*?)(?:\n\s*\n|\n- )", readme_text(), flags=re.S)
    return {word for passage in passages for span in re.findall(r"`([^`]+)`", passage)
            for word in re.findall(r"\b[A-Z][a-z]\w*", span)}


@dataclasses.dataclass(frozen=True)
class World:
    """What lists ops or functions of vgrad._C, outside the op classes themselves."""

    ops: tuple  # vgrad.ops.ALL_OPS
    functions: dict  # the functions vgrad._C exports -> their docstrings (its lines in csrc/functions.def)
    exports: dict  # vgrad's namespace: name -> object
    table: tuple  # the ops with an entry in tests/op_table.py TABLE: those declaring their test inputs
    calls: frozenset  # the functions with a valid call in op_table.c_calls()
    checked: frozenset  # the functions a property test checks against NumPy


def make_world(ops, functions, exports):
    """The World of `ops`: the tests' lists are what tests/op_table.py and test_properties.py derive from the ops'
    own declarations (`tests = ...`), plus the valid calls and property tests written out there and in
    test_properties_cnn.py for the ops declared by `Samples`."""
    return World(ops=tuple(ops), functions=dict(functions), exports=dict(exports),
                 table=tuple(op for op in ops if entry(op) is not None),
                 calls=frozenset(c_calls()) | set(declared_calls(ops)),
                 checked=frozenset(REFERENCE_CHECKED | CNN_REFERENCE_CHECKED | derived_checks(ops)))


WORLD = make_world(OPS, {name: getattr(C, name).__doc__ or "" for name in FUNCTIONS}, vars(vg))


def where(op):
    return "vgrad/nn_ops.py" if issubclass(op, vg.Op) and op in vops.NN_OPS else "vgrad/ops.py"


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


def problems(op, world=WORLD):
    """What is missing for `op` (an Op class) to be a complete op of `world`, each as a sentence saying where it
    goes: the empty list for a complete op."""
    name, found = op.__name__, []
    kernels = vars(op).get("kernels")
    if kernels is None:
        return [f"{name} declares no kernels: add `kernels = ('..._forward', '..._backward')`, the functions of "
                f"vgrad._C that compute it, to its class in {where(op)}"]
    if not (isinstance(kernels, tuple) and kernels and all(isinstance(k, str) for k in kernels)):
        return [f"{name}.kernels must be a non-empty tuple of names of functions of vgrad._C, not {kernels!r}"]
    if not (isinstance(vars(op).get("Reference"), type) and issubclass(op.Reference, vg.Op)):
        found.append(f"{name} has no nested NumPy `class Reference(Op)`, which the tests check its kernels against")

    missing = [k for k in kernels if k not in world.functions]
    if missing:
        found.append(f"{name}.kernels names {missing}, which vgrad._C does not export: write the kernels, forward "
                     f"beside backward, in one file of csrc/, add a VG_FUNC line for each to csrc/functions.def, "
                     f"and rebuild (python setup.py build_ext --inplace)")
    unnamed = [k for k in kernels if k in world.functions and not re.search(rf"\({name}\b", world.functions[k])]
    if unnamed:
        found.append(f"the docstrings of {unnamed} in csrc/functions.def do not name {name}: end each with "
                     f"`({name})`, as every line there names the op that calls the function")
    called = c_functions_called(op)
    unused = sorted(set(kernels) - called)
    if unused:
        found.append(f"{name}.kernels names {unused}, which its forward and backward never call")
    owned = {k for other in world.ops for k in other.kernels} | set(kernels)
    unowned = sorted(called - owned)
    if unowned:
        found.append(f"{name} calls {unowned} of vgrad._C, which no op names in its kernels: add them to "
                     f"{name}.kernels in {where(op)}")

    if world.exports.get(name) is not op:
        found.append(f"vgrad.{name} is not the op: vgrad/__init__.py exports every op of vgrad.ops.ALL_OPS under "
                     f"its name, unless a later import there takes the name")

    if op not in world.table:
        # one complaint: the valid calls and property tests of most kinds come with the declaration
        found.append(f"{name} declares no test inputs: add `tests = ...` to its class in {where(op)}, of a kind of "
                     f"vgrad/op_inputs.py (UnaryElementwise, BinaryElementwise, MatrixProduct, or Samples for an op "
                     f"unlike those); from it tests/op_table.py TABLE builds its samples and special values, and "
                     f"the tests their valid calls and property tests (c_calls(), tests/test_properties.py)")
        return found
    no_call = [k for k in kernels if k not in world.calls]
    if no_call:
        found.append(f"{no_call} have no valid call in tests/op_table.py c_calls() (the tests of bad arguments and "
                     f"reference counts change one argument of it): write one there, as {name} is declared by "
                     f"`Samples`, whose calls are not derived")
    unchecked = [k for k in kernels if k not in world.checked]
    if unchecked:
        found.append(f"{unchecked} are checked against {name}.Reference by no property test: write a test for each in "
                     f"tests/test_properties.py (for the CNN toolkit: tests/test_properties_cnn.py), marked "
                     f"@checks(name) (@cnn_checks(name)); the families there (element-wise, matrix products) come "
                     f"from the declarations, not from lists")
    return found


def unowned_functions(world=WORLD):
    """The functions of vgrad._C that no op of `world` names in its kernels and that are not vgrad.ops.C_HELPERS."""
    return sorted(set(world.functions) - {k for op in world.ops for k in op.kernels} - set(vops.C_HELPERS))


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
def test_op_is_complete(op):
    """Its kernels exist and are called, vgrad exports it, it declares its test inputs, and the tests have a valid
    call of each kernel and a check of each against its Reference."""
    found = problems(op)
    assert not found, "\n".join(found)


def test_no_function_of_C_has_two_owners():
    twice = sorted({k for k in KERNELS if KERNELS.count(k) > 1})
    assert not twice, f"kernels named by more than one op: {twice} (an op names only the kernels it owns)"
    both = sorted(set(KERNELS) & set(vops.C_HELPERS))
    assert not both, f"{both}: both an op's kernels and in vgrad.ops.C_HELPERS"


def test_every_export_of_C_is_a_kernel_or_a_helper():
    unknown = unowned_functions() + sorted(EXPORTED - FUNCTIONS - set(vops.C_HELPERS))
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
    private = {name for name in listed if name.startswith("_")}  # a module's own controls (_cache_info: memory.py)
    assert private <= set(dir(C)), f"in csrc/*.def, not in the built vgrad._C: {sorted(private - set(dir(C)))}: rebuild"
    listed -= private
    assert listed, "found no VG_FUNC(name, ...) line in csrc/*.def, where this test reads vgrad._C's functions"
    assert listed == FUNCTIONS, (f"in csrc/*.def, not in the built vgrad._C: {sorted(listed - FUNCTIONS)}; built, "
                                 f"not in csrc/*.def: {sorted(FUNCTIONS - listed)}: rebuild")


# ------------------------------------------------------------------------------------------------
# The other lists: nothing in them that the registry lacks
# ------------------------------------------------------------------------------------------------


def test_vgrad_exports_no_other_op():
    others = sorted(name for name, value in vars(vg).items() if isinstance(value, type) and issubclass(value, vg.Op)
                    and value is not vg.Op and value not in OPS)
    assert not others, f"vgrad exports ops that vgrad.ops.ALL_OPS lacks: {others}"
    for op in OPS:
        assert getattr(vops, op.__name__, None) is op, f"vgrad.ops.{op.__name__} is not the op"


def test_every_op_has_one_table_entry():
    table_ops = [e.op for e in TABLE]
    twice = sorted({op.__name__ for op in table_ops if table_ops.count(op) > 1})
    assert not twice, f"ops with two entries in tests/op_table.py TABLE: {twice}"
    extra = [op.__name__ for op in table_ops if op not in OPS]
    assert not extra, f"entries of tests/op_table.py TABLE for ops that vgrad.ops.ALL_OPS lacks: {extra}"


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_table_entry_has_samples_and_special_values(entry, rng):
    samples = entry.samples(np.dtype(np.float64), rng)
    assert samples and all(isinstance(s, Sample) for s in samples), f"{entry.name}: no sample inputs"
    assert isinstance(entry.special, Sample) and entry.special.inputs, (
        f"{entry.name}: no special values (inf, NaN, signed zeros, subnormals, overflowing values): add "
        f"`special=Call(...)` to its declaration `tests = ...` in {where(entry.op)}")


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
        f"functions of vgrad._C that no property test checks against NumPy: {missing}: declare its op's test "
        f"inputs as an element-wise op or a matrix product (vgrad/op_inputs.py), whose families of tests "
        f"tests/test_properties.py derives, or write a test for it there (or, for the CNN toolkit, in "
        f"tests/test_properties_cnn.py), marked @checks(name) (@cnn_checks(name))")
    stale = sorted(checked - FUNCTIONS)
    assert not stale, f"property tests of functions that vgrad._C lacks: {stale}"
    both = sorted(REFERENCE_CHECKED & CNN_REFERENCE_CHECKED)
    assert not both, f"checked in both test_properties.py and test_properties_cnn.py: {both}"


# ------------------------------------------------------------------------------------------------
# Adding an op: a throwaway ExampleTanh (a tanh under a name no real op takes, so that adding a real Tanh, as the
# docstring of vgrad/ops.py suggests, clashes with nothing here), never added to vgrad, and what the checks above say
# ------------------------------------------------------------------------------------------------


class ExampleTanh(vg.Op):
    """Element-wise hyperbolic tangent, as a newcomer would write it in vgrad/ops.py (it stays here)."""

    kernels = ("example_tanh_forward", "example_tanh_backward")
    tests = vops.UnaryElementwise(domain="real", saved="y", float32_exact=False, several_operations=True)

    @staticmethod
    def forward(context, x):
        context["y"] = y = _C.example_tanh_forward(x)  # not run: c_functions_called reads it
        return y

    @staticmethod
    def backward(context, go):
        return _C.example_tanh_backward(go, context["y"])

    class Reference(vg.Op):
        @staticmethod
        def forward(context, x):
            context["y"] = y = np.tanh(x)
            return y

        @staticmethod
        def backward(context, go):
            return go * (1 - context["y"] ** 2)


class TanhWithoutTests(vg.Op):
    """ExampleTanh, its test inputs forgotten."""

    kernels = ("example_tanh_forward", "example_tanh_backward")

    @staticmethod
    def forward(context, x):
        context["y"] = y = _C.example_tanh_forward(x)
        return y

    @staticmethod
    def backward(context, go):
        return _C.example_tanh_backward(go, context["y"])

    Reference = ExampleTanh.Reference


TanhWithoutTests.__name__ = "ExampleTanh"  # the same op, as its error messages and csrc/functions.def name it

TANH_KERNELS = frozenset(ExampleTanh.kernels)
TANH_DOCS = {"example_tanh_forward": "example_tanh_forward(x) -> tanh(x)  (ExampleTanh)",  # in csrc/functions.def
             "example_tanh_backward": "example_tanh_backward(go, y) -> go * (1 - y**2)  (ExampleTanh)"}


def with_tanh(op=ExampleTanh, registered=True, c=True):
    """WORLD with `op` added: appended to ALL_OPS (so that vgrad exports it) when `registered` (its class written in
    vgrad/ops.py), its kernels written and listed in csrc/functions.def when `c`."""
    ops = OPS + (op,) if registered else OPS
    return make_world(ops, {**WORLD.functions, **TANH_DOCS} if c else WORLD.functions,
                      {**vars(vg), op.__name__: op} if registered else vars(vg))


def test_a_new_op_takes_its_class_its_kernels_and_their_functions_def_lines():
    """With those three, ExampleTanh is complete: its test entry, the valid calls of its kernels, their property tests
    are derived from its class, and no function of vgrad._C lacks an owner. Nothing else names it: not the README,
    not a list of the tests."""
    world = with_tanh()
    assert problems(ExampleTanh, world) == []
    assert unowned_functions(world) == []
    tanh_entry = entry(ExampleTanh)
    samples = tanh_entry.samples(np.dtype(np.float64), np.random.default_rng(0))
    assert samples and all(len(s.inputs) == 1 for s in samples) and tanh_entry.special.inputs
    assert set(declared_calls([ExampleTanh])) == TANH_KERNELS
    assert unary_families([ExampleTanh]) == ({"example_tanh_forward": False}, {"example_tanh_backward": ("y", True)})
    assert derived_checks([ExampleTanh]) == TANH_KERNELS


@pytest.mark.parametrize("missing", ["kernels", "tests"])
def test_a_new_op_missing_one_piece_is_refused(missing):
    """Each piece left out gives exactly one complaint (the class itself: the next test)."""
    if missing == "kernels":  # not written in C, or not listed in csrc/functions.def: vgrad._C does not export them
        op, world, says = ExampleTanh, with_tanh(c=False), "which vgrad._C does not export: write the kernels"
    else:  # the class written without its test inputs
        op, world, says = TanhWithoutTests, with_tanh(TanhWithoutTests), "declares no test inputs: add `tests = ...`"
    found = problems(op, world)
    assert len(found) == 1 and says in found[0], found


def test_kernels_in_C_without_their_op_class_are_refused():
    """The C side written, the Python class forgotten: vgrad._C exports functions no op owns."""
    assert unowned_functions(with_tanh(registered=False)) == sorted(TANH_KERNELS)


def test_a_new_op_without_test_inputs_is_refused_saying_where_they_go():
    found = problems(TanhWithoutTests, with_tanh(TanhWithoutTests))
    assert len(found) == 1
    for where_to in ["vgrad/ops.py", "vgrad/op_inputs.py", "tests/op_table.py TABLE"]:
        assert where_to in found[0], f"no complaint pointing at {where_to} in:\n{found[0]}"


def test_a_new_op_in_no_list_is_refused_for_each_missing_piece():
    """ExampleTanh as it stands (in no list, no C kernels): every missing piece is reported, each saying where."""
    found = "\n".join(problems(TanhWithoutTests))
    for where_to in ["csrc/functions.def", "vgrad/__init__.py", "vgrad/op_inputs.py"]:
        assert where_to in found, f"no complaint pointing at {where_to} in:\n{found}"


def test_an_op_declared_by_samples_needs_its_calls_and_property_tests_written():
    """The one kind whose valid calls and property tests are not derived: leaving them out is reported."""

    class Scale(vg.Op):
        kernels = ("example_tanh_forward", "example_tanh_backward")  # (kernels that exist in the World below)
        tests = vops.Samples(domains=("real",), cases=(vops.Case((3, 4)),), special=vops.Call(vops.SPECIAL))
        forward, backward, Reference = ExampleTanh.forward, ExampleTanh.backward, ExampleTanh.Reference

    found = "\n".join(problems(Scale, with_tanh(Scale)))
    assert "c_calls()" in found and "tests/test_properties.py" in found, found


def test_a_new_op_without_its_kernels_or_calling_others_is_refused():
    class Bare(vg.Op):
        @staticmethod
        def forward(context, x):
            return _C.example_tanh_forward(x)

    assert "declares no kernels" in problems(Bare, with_tanh())[0]

    class Stray(ExampleTanh):
        kernels = ("example_tanh_forward",)  # calls example_tanh_backward too, which no op of the world owns
        Reference = ExampleTanh.Reference

        @staticmethod
        def backward(context, go):
            return _C.example_tanh_backward(go, context["y"])

    found = "\n".join(problems(Stray, with_tanh(registered=False)))
    assert "calls ['example_tanh_backward'] of vgrad._C, which no op names in its kernels" in found


def test_a_functions_def_line_not_naming_its_op_is_refused():
    world = with_tanh()
    world.functions["example_tanh_backward"] = "example_tanh_backward(go, y) -> go * (1 - y**2)"
    found = problems(ExampleTanh, world)
    says = "docstrings of ['example_tanh_backward'] in csrc/functions.def do not name ExampleTanh"
    assert len(found) == 1 and says in found[0]


# ------------------------------------------------------------------------------------------------
# Where people find the ops: the README's lists (checked for staleness) and `python -m vgrad ops` (complete)
# ------------------------------------------------------------------------------------------------


def test_the_readme_names_no_op_that_does_not_exist():
    named = readme_ops()
    assert {"Add", "Sigmoid", "ReLU", "Affine", "Convolution"} <= named, (
        f"the README's lists of ops (the passages beginning 'The ops') were not found, or lost their ops: {named}")
    stale = sorted(named - {op.__name__ for op in OPS})
    assert not stale, f"README.md names ops that vgrad.ops.ALL_OPS lacks: {stale}: rename or remove them there"


def test_the_readme_says_where_the_full_list_is():
    assert "python -m vgrad ops" in readme_text()


def test_python_m_vgrad_ops_lists_every_op_with_its_formula_and_kernels():
    """The listing is made from the registry: each op once, with the start of its docstring (its formula) on its
    line and its kernels on the next."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT] + sys.path)}
    result = subprocess.run([sys.executable, "-m", "vgrad", "ops"], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for op in OPS:
        at = [k for k, line in enumerate(lines) if line.split()[:1] == [op.__name__]]
        assert len(at) == 1, f"{op.__name__} is listed {len(at)} times by python -m vgrad ops"
        line, kernels = lines[at[0]], lines[at[0] + 1].split()
        assert " ".join(op.__doc__.split()[:3]) in line, f"{op.__name__}: not its formula: {line!r}"
        assert kernels[0] == "kernels:" and [k.rstrip(",") for k in kernels[1:]] == list(op.kernels), kernels
