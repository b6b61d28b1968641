"""The op table: one entry per built-in op of vgrad.ops.ALL_OPS, built from the op's own declaration of its test
inputs (`tests = ...` in its class; the kinds are in vgrad/op_inputs.py), plus the helpers the test files share.

Each entry (an OpEntry, in the spirit of PyTorch's OpInfo) holds the op's test inputs: how to make valid sample
inputs (several shapes, in the op's domain), which keyword arguments go with them, and a call on special values
(inf, NaN, signed zeros, subnormals, overflowing values), all from the declaration; and which inputs must be refused
(exception type and a message regex that names the op). Those refusals are written here, in ERRORS, not in the op:
they are tests of how the op fails, not inputs it accepts (the ones every op of a kind must refuse, such as unequal
shapes for an element-wise op of two inputs, come with the kind). tests/test_ops.py runs its generic tests over this
table. c_calls() below gives one valid call of each function of vgrad._C (derived for the element-wise ops and the
matrix products, written out for the others), for the tests that feed them bad arguments. tests/test_registry.py
fails when an op of ALL_OPS declares no test inputs, or a function of vgrad._C has no valid call.

Expected values in the tests never come from the code under test: they come from the op's NumPy
Reference class, from independent NumPy formulas, or from central differences.
"""
import re
from dataclasses import dataclass, field
from typing import Callable, List

import numpy as np

import vgrad as vg
import vgrad.ops as vops
from vgrad.op_inputs import (BIG, DOMAINS, ELEMENTWISE_SHAPES, SPECIAL, SPECIAL_MATRIX, BinaryElementwise,  # noqa: F401
                             Call, MatrixProduct, Samples, UnaryElementwise)  # (SPECIAL_MATRIX: for test_ops.py)

# The kinds of declaration an op's `tests` may be
KINDS = (UnaryElementwise, BinaryElementwise, MatrixProduct, Samples)

# --------------------------------------------------------------------------------------------------
# Table types
# --------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One valid call: Op.forward(ctx, *inputs, **kwargs)."""

    inputs: list
    kwargs: dict = field(default_factory=dict)

    def describe(self):
        shapes = ",".join(str(tuple(x.shape)).replace(" ", "") for x in self.inputs)
        kw = ",".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
        return shapes + (f"|{kw}" if kw else "")


@dataclass
class ErrorCase:
    """One invalid call that must raise `exc` with a message matching `match` (searched, DOTALL)."""

    label: str
    inputs: list
    kwargs: dict
    exc: object  # an exception type or a tuple of them
    match: str


@dataclass
class OpEntry:
    op: type
    samples: Callable  # (dtype, rng) -> list of Sample; the same number and shapes for every dtype
    errors: List[ErrorCase]
    ints: bool = True  # integer inputs are meaningful (NumPy's dtypes for the course's ops, float64 for the CNN's)
    bools: bool = True  # bool inputs are meaningful
    passthrough: bool = False  # forward returns its input or a view of it: the input's dtype is kept
    large: Callable = None  # like samples, but big enough for blocked, threaded or GIL-free code paths
    special: Sample = None  # a call on special values: inf, NaN, signed zeros, subnormals, overflowing values
    special_float32: bool = True  # float32 gives the Reference's inf/NaN pattern on them (not where the order of
    #                               float32 sums, or its exp, decides between a number and inf)

    @property
    def name(self):
        return self.op.__name__

    @property
    def exact(self):
        """The course's ops (vgrad.ops, not the CNN toolkit's nn_ops): float64 results bit-identical to the
        Reference's on any layout; other dtypes than float32/float64 computed as NumPy computes them."""
        return self.op not in vops.NN_OPS


def _short(v):
    if isinstance(v, np.ndarray):
        return f"{v.dtype}{list(v.shape)}"
    return repr(v)


def msg(*parts):
    """A regex that matches a message containing every part (literally, in any order)."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


# --------------------------------------------------------------------------------------------------
# Values in an op's domain (vgrad/op_inputs.py says what each domain holds)
# --------------------------------------------------------------------------------------------------


def values(domain, shape, dtype, rng):
    """A random array of `shape` and `dtype` whose values lie in `domain`."""
    if domain not in DOMAINS:
        raise ValueError(f"no domain {domain!r}: the domains are {DOMAINS} (vgrad/op_inputs.py)")
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if domain == "distinct":
        return _distinct_rows(shape, dtype, rng)
    if dtype.kind == "b":
        if domain in ("positive", "nonzero"):
            return np.ones(shape, dtype=bool)
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        if domain == "real":
            lo = 0 if dtype.kind == "u" else -9
            return rng.integers(lo, 10, size=shape).astype(dtype)
        mag = rng.integers(1, 10, size=shape)
        if domain != "positive" and dtype.kind == "i":
            mag = mag * rng.choice([-1, 1], size=shape)
        return mag.astype(dtype)
    # floats: draw in float64, then cast
    if domain == "real":
        x = rng.standard_normal(shape)
    elif domain == "positive":
        x = rng.uniform(0.5, 2.0, shape)
    elif domain == "nonzero":
        x = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], size=shape)
    elif domain == "relu":
        x = rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], size=shape)
    elif domain == "wide":
        x = rng.uniform(-30.0, 30.0, shape)
    else:
        raise ValueError(domain)
    return np.asarray(x).astype(dtype)


def _distinct_rows(shape, dtype, rng):
    n, m = shape
    perms = np.argsort(rng.random((n, m)), axis=1)  # each row a permutation of 0..m-1
    if dtype.kind in "iub":
        return perms.astype(dtype)
    return (perms + rng.uniform(-0.2, 0.2, (n, m))).astype(dtype)  # gaps of at least 0.6


def shaped(domains, shape_list):
    """A sample maker: one Sample per entry of shape_list (a tuple of shapes, one per input)."""

    def make(dtype, rng):
        return [Sample([values(d, s, dtype, rng) for d, s in zip(domains, shapes)]) for shapes in shape_list]

    return make


def from_cases(domains, cases):
    """A sample maker from a declaration's Cases: arrays of each case's shapes with values from `domains` (or the
    case's own), then its keyword arguments, calling those given as functions (shapes, rng) -> value."""

    def make(dtype, rng):
        out = []
        for case in cases:
            inputs = [values(d, s, dtype, rng) for d, s in zip(case.domains or domains, case.shapes)]
            kwargs = {k: v(case.shapes, rng) if callable(v) else v for k, v in case.kwargs.items()}
            out.append(Sample(inputs, kwargs))
        return out

    return make


def special(call):
    """The Sample of a declaration's call on special values: float64 arrays (cast to each dtype tested)."""
    return Sample(list(call.inputs), dict(call.kwargs))


# --------------------------------------------------------------------------------------------------
# Error cases: the inputs each op must refuse
# --------------------------------------------------------------------------------------------------

F = np.float64


def z(*shape):
    return np.zeros(shape, dtype=F)


def o(*shape):
    return np.ones(shape, dtype=F)


def shape_mismatch(name):
    """The equal-shape rule of the elementwise binary ops: ValueError naming op, both shapes, and Expand."""
    return [
        ErrorCase("transposed", [o(2, 3), o(3, 2)], {}, ValueError, msg(name, "(2, 3)", "(3, 2)", "Expand")),
        ErrorCase("no-broadcast", [o(3, 4), o(1, 4)], {}, ValueError, msg(name, "(3, 4)", "(1, 4)")),
        ErrorCase("0d-vs-1d", [o(), o(3)], {}, ValueError, msg(name, "()", "(3,)")),
    ]


def needs_2d(name):
    return [
        ErrorCase("1d", [o(5)], {}, ValueError, msg(name, "(5,)")),
        ErrorCase("3d", [o(2, 3, 4)], {}, ValueError, msg(name, "(2, 3, 4)")),
        ErrorCase("0d", [o()], {}, ValueError, msg(name)),
    ]


def conv_errors(name):
    """The calls Convolution and ConvolutionReLU refuse (the same arguments)."""
    return [
        ErrorCase("channels", [o(1, 3, 5, 5), o(2, 2, 3, 3)], {}, ValueError,
                  msg(name, "(1, 3, 5, 5)", "(2, 2, 3, 3)")),
        ErrorCase("3d-input", [o(3, 5, 5), o(2, 3, 3, 3)], {}, ValueError, msg(name, "(3, 5, 5)")),
        ErrorCase("2d-filters", [o(1, 3, 5, 5), o(2, 3)], {}, ValueError, msg(name, "(2, 3)")),
        ErrorCase("too-big", [o(1, 1, 2, 2), o(1, 1, 3, 3)], {}, ValueError, msg(name, "window")),
        ErrorCase("bias-shape", [o(1, 1, 4, 4), o(2, 1, 3, 3), o(3)], {}, ValueError,
                  msg(name, "bias", "(3,)")),
        ErrorCase("zero-stride", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"stride": 0}, ValueError,
                  msg(name, "stride")),
        ErrorCase("negative-padding", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"padding": -1}, ValueError,
                  msg(name, "padding")),
        ErrorCase("float-stride", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"stride": 1.5}, TypeError,
                  msg(name, "stride")),
        ErrorCase("triple-stride", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"stride": (1, 1, 1)}, ValueError,
                  msg(name, "stride")),
    ]


def pool_errors(name):
    return [
        ErrorCase("zero-kernel", [o(1, 1, 4, 4)], {"kernel_size": 0}, ValueError, msg(name, "kernel_size")),
        ErrorCase("3d", [o(1, 4, 4)], {"kernel_size": 2}, ValueError, msg(name, "(1, 4, 4)")),
        ErrorCase("too-big", [o(1, 1, 2, 2)], {"kernel_size": 3}, ValueError, msg(name, "window")),
        ErrorCase("float-kernel", [o(1, 1, 4, 4)], {"kernel_size": 2.0}, TypeError, msg(name, "kernel_size")),
        ErrorCase("zero-stride", [o(1, 1, 4, 4)], {"kernel_size": 2, "stride": 0}, ValueError, msg(name, "stride")),
    ]


AXIS = (ValueError, IndexError)  # a dim out of range may be either (numpy's AxisError is both)

# op -> the calls it must refuse, besides those of its kind (kind_errors below)
ERRORS = {
    vops.MatrixMultiply: [
        ErrorCase("inner", [o(2, 3), o(4, 5)], {}, ValueError, msg("MatrixMultiply", "(2, 3)", "(4, 5)")),
        ErrorCase("1d", [o(3), o(3, 2)], {}, ValueError, msg("MatrixMultiply", "(3,)")),
        ErrorCase("3d", [o(2, 2, 2), o(2, 2)], {}, ValueError, msg("MatrixMultiply", "(2, 2, 2)")),
    ],
    vops.BatchMM: [
        ErrorCase("features", [o(4, 3), o(5, 2)], {}, ValueError, msg("BatchMM", "(4, 3)", "(5, 2)")),
        ErrorCase("1d-vectors", [o(4, 3), o(3)], {}, ValueError, msg("BatchMM", "(3,)")),
        ErrorCase("1d-matrix", [o(3), o(5, 3)], {}, ValueError, msg("BatchMM", "(3,)")),
    ],
    vops.RowSum: needs_2d("RowSum"),
    vops.RowMax: needs_2d("RowMax") + [ErrorCase("empty-rows", [o(3, 0)], {}, ValueError, msg("RowMax"))],
    vops.Normalize: needs_2d("Normalize"),
    vops.Expand: [
        ErrorCase("not-singleton", [o(2, 3)], {"dim": 0, "repeats": 4}, ValueError, msg("Expand", "(2, 3)")),
        ErrorCase("dim-range", [o(1, 3)], {"dim": 2, "repeats": 4}, AXIS, msg("Expand")),
        ErrorCase("negative-repeats", [o(1, 3)], {"dim": 0, "repeats": -1}, ValueError, msg("Expand")),
        ErrorCase("0d", [o()], {"dim": 0, "repeats": 2}, AXIS, msg("Expand")),
        ErrorCase("none-dim", [o(1, 3)], {"dim": None, "repeats": 2}, TypeError, msg("Expand")),
        ErrorCase("float-repeats", [o(1, 3)], {"dim": 0, "repeats": 2.0}, TypeError, msg("Expand")),
        ErrorCase("huge-repeats", [o(1, 3)], {"dim": 0, "repeats": 2**62}, (ValueError, MemoryError),
                  msg("Expand")),
        ErrorCase("giant-repeats", [o(1, 3)], {"dim": 0, "repeats": 2**70}, (ValueError, OverflowError),
                  msg("Expand")),
    ],
    vops.Select: [
        ErrorCase("out-of-range", [o(3, 4)], {"indices": np.array([0, 4, 1])}, IndexError, msg("Select")),
        ErrorCase("float-indices", [o(3, 4)], {"indices": np.array([0.0, 1.0, 2.0])}, TypeError, msg("Select")),
        ErrorCase("length", [o(3, 4)], {"indices": np.array([0, 1])}, ValueError, msg("Select")),
        ErrorCase("2d-indices", [o(3, 4)], {"indices": np.zeros((3, 1), dtype=np.int64)}, ValueError, msg("Select")),
        ErrorCase("1d-input", [o(4)], {"indices": np.array([0, 1, 2, 3])}, ValueError, msg("Select", "(4,)")),
        ErrorCase("none-indices", [o(3, 4)], {"indices": None}, TypeError, msg("Select")),
        ErrorCase("bool-indices", [o(3, 4)], {"indices": np.array([True, False, True])}, TypeError,
                  msg("Select")),
        ErrorCase("huge-index", [o(3, 4)], {"indices": np.array([0, 1, 2**40])}, IndexError, msg("Select")),
        ErrorCase("huge-uint64", [o(3, 4)], {"indices": np.array([0, 1, 2**63], dtype=np.uint64)}, IndexError,
                  msg("Select")),
    ],
    vops.Squeeze: [
        ErrorCase("not-singleton", [o(2, 3)], {"dim": 0}, ValueError, msg("Squeeze")),
        ErrorCase("dim-range", [o(1, 3)], {"dim": 5}, AXIS, msg("Squeeze")),
    ],
    vops.Unsqueeze: [ErrorCase("dim-range", [o(2, 3)], {"dim": 4}, AXIS, msg("Unsqueeze"))],
    vops.Affine: [
        ErrorCase("features", [o(4, 3), o(1, 4), o(5, 2)], {}, ValueError, msg("Affine", "(5, 2)")),
        ErrorCase("bias-size", [o(4, 3), o(1, 3), o(5, 3)], {}, ValueError, msg("Affine", "bias")),
        ErrorCase("1d-weights", [o(4), o(1, 4), o(5, 4)], {}, ValueError, msg("Affine", "(4,)")),
    ],
    vops.LogSoftmax: needs_2d("LogSoftmax") + [
        ErrorCase("empty-rows", [o(3, 0)], {}, ValueError, msg("LogSoftmax", "(3, 0)"))],
    vops.LogCELoss: [
        ErrorCase("out-of-range", [o(3, 4)], {"targets": np.array([0, 4, 1])}, IndexError, msg("LogCELoss")),
        ErrorCase("float-targets", [o(3, 4)], {"targets": np.array([0.0, 1.0, 2.0])}, TypeError,
                  msg("LogCELoss")),
        ErrorCase("length", [o(3, 4)], {"targets": np.array([0, 1])}, ValueError, msg("LogCELoss")),
        ErrorCase("1d-input", [o(4)], {"targets": np.array([0, 1, 2, 3])}, ValueError, msg("LogCELoss", "(4,)")),
    ],
    # The CNN toolkit (vgrad/nn_ops.py)
    vops.Convolution: conv_errors("Convolution"),
    vops.ConvolutionReLU: conv_errors("ConvolutionReLU"),
    vops.MaxPooling: pool_errors("MaxPooling"),
    vops.AvgPooling: pool_errors("AvgPooling"),
    vops.DropoutMask: [
        ErrorCase("mask-shape", [o(3, 4)], {"mask": np.ones((4, 3), dtype=bool), "p": 0.5}, ValueError,
                  msg("DropoutMask", "(3, 4)", "(4, 3)")),
        ErrorCase("p-range", [o(3, 4)], {"mask": np.ones((3, 4), dtype=bool), "p": 1.5}, ValueError,
                  msg("DropoutMask", "p")),
        ErrorCase("p-type", [o(3, 4)], {"mask": np.ones((3, 4), dtype=bool), "p": "half"}, TypeError,
                  msg("DropoutMask", "p")),
    ],
    vops.BatchNormalization: [
        ErrorCase("gamma-shape", [o(4, 3), o(2), o(3)], {}, ValueError, msg("BatchNormalization", "(2,)")),
        ErrorCase("1d-input", [o(4), o(4), o(4)], {}, ValueError, msg("BatchNormalization", "(4,)")),
        ErrorCase("one-value", [o(1, 3), o(3), o(3)], {}, ValueError, msg("BatchNormalization", "(1, 3)")),
        ErrorCase("half-running", [o(4, 3), o(3), o(3)], {"running_mean": z(3)}, TypeError,
                  msg("BatchNormalization", "running")),
        ErrorCase("running-shape", [o(4, 3), o(3), o(3)], {"running_mean": z(2), "running_var": o(2)},
                  ValueError, msg("BatchNormalization", "running", "(2,)")),
    ],
    vops.CrossEntropy: [
        ErrorCase("out-of-range", [o(3, 4)], {"targets": np.array([0, 4, 1])}, IndexError, msg("CrossEntropy")),
        ErrorCase("negative", [o(3, 4)], {"targets": np.array([0, -1, 1])}, IndexError, msg("CrossEntropy")),
        ErrorCase("float-targets", [o(3, 4)], {"targets": np.array([0.0, 1.0, 2.0])}, TypeError,
                  msg("CrossEntropy")),
        ErrorCase("length", [o(3, 4)], {"targets": np.array([0, 1])}, ValueError, msg("CrossEntropy")),
        ErrorCase("1d-logits", [o(4)], {"targets": np.array([0])}, ValueError, msg("CrossEntropy", "(4,)")),
        ErrorCase("reduction", [o(3, 4)], {"targets": np.array([0, 1, 2]), "reduction": "avg"}, ValueError,
                  msg("CrossEntropy", "reduction")),
    ],
    vops.Reshape: [
        ErrorCase("size", [o(2, 3)], {"shape": (4,)}, ValueError, msg("Reshape", "(2, 3)", "(4,)")),
        ErrorCase("two-unknown", [o(2, 3)], {"shape": (-1, -1)}, ValueError, msg("Reshape")),
        ErrorCase("not-a-shape", [o(2, 3)], {"shape": "abc"}, TypeError, msg("Reshape")),
    ],
}


def kind_errors(op):
    """The calls every op of its kind must refuse: an element-wise op of two inputs, inputs of unequal shapes."""
    return shape_mismatch(op.__name__) if isinstance(declaration(op), BinaryElementwise) else []


# --------------------------------------------------------------------------------------------------
# The table, from the ops' declarations
# --------------------------------------------------------------------------------------------------


def declaration(op):
    """The op's declaration of its test inputs (`tests = ...` in its own class), or None."""
    spec = vars(op).get("tests")
    return spec if isinstance(spec, KINDS) else None


def declared(ops, kind):
    """The ops among `ops` whose declaration is of `kind`."""
    return [op for op in ops if isinstance(declaration(op), kind)]


def entry(op):
    """The op's OpEntry, built from its declaration (None when it declares none)."""
    spec, errors = declaration(op), kind_errors(op) + ERRORS.get(op, [])
    if isinstance(spec, UnaryElementwise):
        return OpEntry(op, shaped([spec.domain], [(s,) for s in ELEMENTWISE_SHAPES]), errors,
                       large=shaped([spec.domain], [(BIG,)]), special=special(Call(SPECIAL)))
    if isinstance(spec, BinaryElementwise):
        return OpEntry(op, shaped(spec.domains, [(s, s) for s in ELEMENTWISE_SHAPES]), errors,
                       large=shaped(spec.domains, [(BIG, BIG)]), special=special(spec.special))
    if isinstance(spec, MatrixProduct):
        domains = ["real"] * len(spec.operands)
        return OpEntry(op, shaped(domains, [spec.shapes(sizes) for sizes in spec.sizes]), errors,
                       large=shaped(domains, [spec.shapes(spec.large)]), special=special(spec.special),
                       special_float32=False)
    if isinstance(spec, Samples):
        return OpEntry(op, from_cases(spec.domains, spec.cases), errors, bools=spec.bools,
                       passthrough=spec.passthrough, large=spec.large and from_cases(spec.domains, [spec.large]),
                       special=special(spec.special), special_float32=spec.special_float32)
    return None


TABLE = [e for e in map(entry, vops.ALL_OPS) if e is not None]

BY_NAME = {e.name: e for e in TABLE}

# --------------------------------------------------------------------------------------------------
# The entry points of vgrad._C, one valid call each (tests/test_properties.py, tests/test_memory.py)
# --------------------------------------------------------------------------------------------------


# Each function of vgrad._C that is an op's kernel -> that op (the one naming it in `kernels`)
KERNEL_OWNERS = {kernel: op for op in vops.ALL_OPS for kernel in op.kernels}


@dataclass
class CCall:
    """A valid call vgrad._C.<name>(*args). The fields give the positions of the arguments that are float arrays,
    integer indices, shapes and ints; `op` is the word its error messages must contain: the name of the op that
    owns the function (filled in by c_calls()), or the helper's own name."""

    args: tuple
    arrays: tuple
    indices: tuple = ()
    shapes: tuple = ()
    ints: tuple = ()
    op: str = None


def c_calls():
    """name -> CCall for every function vgrad._C exports (fresh arrays on each call): those of the ops declared by
    `Samples` and of the helpers written out here, the others' derived from their declarations (declared_calls)."""
    x, y, go = o(2, 3) * 0.5, o(2, 3) * 2.0, o(2, 3)
    calls = {
        "sum_forward": CCall((x,), (0,)),
        "sum_backward": CCall((o(), (2, 3)), (0,), shapes=(1,)),
        "rowsum_forward": CCall((x,), (0,)),
        "rowsum_backward": CCall((o(2), (2, 3)), (0,), shapes=(1,)),
        "rowmax_forward": CCall((x,), (0,)),
        "rowmax_backward": CCall((o(2), np.array([0, 2]), (2, 3)), (0,), indices=(1,), shapes=(2,)),
        "normalize_forward": CCall((y,), (0,)),
        "normalize_backward": CCall((go, y, o(2, 1) * 6.0), (0, 1, 2)),
        "expand_forward": CCall((o(1, 3), 0, 2), (0,), ints=(1, 2)),
        "expand_backward": CCall((go, 0), (0,), ints=(1,)),
        "identity": CCall((x,), (0,)),
        "squeeze": CCall((o(1, 3), 0), (0,), ints=(1,)),
        "unsqueeze": CCall((x, 0), (0,), ints=(1,)),
        "select_forward": CCall((x, np.array([0, 2])), (0,), indices=(1,)),
        "select_backward": CCall((o(2), np.array([[0], [2]]), (2, 3)), (0,), indices=(1,), shapes=(2,)),
        "affine_forward": CCall((o(4, 3), o(1, 4), o(2, 3)), (0, 1, 2)),
        "affine_backward": CCall((o(2, 4), o(4, 3), o(2, 3), (1, 4), True), (0, 1, 2), shapes=(3,)),
        "logsoftmax_forward": CCall((x,), (0,)),
        "logsoftmax_backward": CCall((go, o(2, 3) * 0.25, o(2) * 0.75, np.array([0, 2])), (0, 1, 2), indices=(3,)),
        "logceloss_forward": CCall((-y, np.array([0, 2])), (0,), indices=(1,)),
        "logceloss_backward": CCall((o(), np.array([0, 2]), (2, 3)), (0,), indices=(1,), shapes=(2,)),
        # the CNN kernels (their reference tests are in test_properties_cnn.py)
        "conv2d": CCall((o(1, 1, 3, 3), o(1, 1, 2, 2), o(1), 1, 1, 0, 0), (0, 1)),  # b may be None
        "conv2d_grad": CCall((o(1, 1, 2, 2), o(1, 1, 3, 3), o(1, 1, 2, 2), 1, 1, 0, 0, True, True), (0, 1, 2)),
        "conv2d_relu": CCall((o(1, 1, 3, 3), o(1, 1, 2, 2), o(1), 1, 1, 0, 0), (0, 1)),
        "conv2d_relu_grad": CCall((o(1, 1, 2, 2), o(1, 1, 3, 3), o(1, 1, 2, 2), 1, 1, 0, 0, True, True, o(1, 1, 2, 2)),
                                  (0, 1, 2, 9)),
        "num_threads": CCall((0,), (), ints=(0,)),  # 0 reads the count without changing it
        "maxpool2d_forward": CCall((o(1, 1, 3, 3), 2, 2, 1, 1), (0,)),
        "maxpool2d_backward": CCall((o(1, 1, 2, 2), np.zeros((1, 1, 2, 2), dtype=np.intp), (1, 1, 3, 3)), (0,)),
        "avgpool2d_forward": CCall((o(1, 1, 3, 3), 2, 2, 1, 1), (0,)),
        "avgpool2d_backward": CCall((o(1, 1, 2, 2), (1, 1, 3, 3), 2, 2, 1, 1), (0,)),
        "batchnorm_forward": CCall((x.T.copy(), o(2), o(2), o(2), o(2), 1e-5), (0, 1, 2)),
        "batchnorm_backward": CCall((go.T.copy(), x.T.copy(), o(2), o(2), True), (0, 1, 2, 3)),
        "dropout_forward": CCall((go.T.copy(), np.ones((3, 2), dtype=bool), 0.5), (0,)),
        "dropout_backward": CCall((go.T.copy(), np.ones((3, 2), dtype=bool), 0.5), (0,)),
        "cross_entropy_forward": CCall((x, np.array([0, 2]), "mean"), (0,)),
        "cross_entropy_backward": CCall((np.float64(1.0), o(2, 3) * 0.5, np.array([0, 2]), 2),
                                        (1,)),  # go is a NumPy scalar here, not an array
        "reshape": CCall((o(2, 2), (4,)), (0,), shapes=(1,)),  # (test_memory's bad shape (-1, 3) fits no 4 values)
        # the one step of backpropagation core.py hands to C: current += grad (whatever += accepts, as in Python,
        # so no array position must be refused)
        "add_into": CCall((x.copy(), y), ()),
        # the buffer cache's allocators (large enough to be cached; any dtype NumPy has, so no array positions)
        "cached_empty": CCall(((300, 100), np.float64), (), shapes=(0,)),
        "cached_zeros": CCall(((300, 100), np.float32), (), shapes=(0,)),
        "cached_copy": CCall((o(300, 100), np.float64), ()),
    }
    calls.update(declared_calls(vops.ALL_OPS))
    for name, call in calls.items():
        call.op = KERNEL_OWNERS[name].__name__ if name in KERNEL_OWNERS else name
    return calls


def declared_calls(ops):
    """name -> CCall for the kernels of the ops among `ops` declared element-wise or matrix products: forward(x) and
    backward(go, s) of one input; forward(a, b) and backward(go, a, b) (or go alone) of two; a product's forward on
    its operands, and its backward on go and the operands (sizes 2, 3, 4 for n, k, m)."""
    x, y, go = o(2, 3) * 0.5, o(2, 3) * 2.0, o(2, 3)
    calls = {}
    for op in declared(ops, UnaryElementwise):
        forward, backward = op.kernels
        calls[forward] = CCall((o(2, 3) * 2.0,), (0,), op=op.__name__)
        calls[backward] = CCall((o(2, 3), o(2, 3) * 2.0), (0, 1), op=op.__name__)
    for op in declared(ops, BinaryElementwise):
        calls[op.kernels[0]] = CCall((x, y), (0, 1), op=op.__name__)
        if len(op.kernels) > 1:  # its backward kernel: on go and the inputs, or (Sub's -go) on go alone
            saved = declaration(op).saved
            calls[op.kernels[1]] = CCall((go, x, y) if saved else (x,), (0, 1, 2) if saved else (0,), op=op.__name__)
    for op in declared(ops, MatrixProduct):
        spec, sizes = declaration(op), dict(n=2, k=3, m=4)
        operands = tuple(o(*shape) for shape in spec.shapes(sizes))
        output = o(*(sizes[name] for name in spec.output))
        calls[op.kernels[0]] = CCall(operands, tuple(range(len(operands))), op=op.__name__)
        calls[op.kernels[1]] = CCall((output,) + operands, tuple(range(len(operands) + 1)), op=op.__name__)
    return calls


def c_entry_points():
    """The names of the functions vgrad._C exports (functions.def; not its classes UseReference and
    with_reference)."""
    import types

    from vgrad import _C

    return sorted(n for n in dir(_C) if not n.startswith("_") and isinstance(getattr(_C, n), types.BuiltinFunctionType))


# Bad arguments, by kind of argument: each must give TypeError naming the op. A function of a valid value.
BAD_ARRAYS = {
    "complex": lambda x: x.astype(np.complex128),
    "complex64": lambda x: x.astype(np.complex64),
    "object": lambda x: x.astype(object),
    "str": lambda x: x.astype(str),
    "bytes": lambda x: x.astype(bytes),
    "datetime": lambda x: x.astype("datetime64[s]"),
    "timedelta": lambda x: x.astype("timedelta64[s]"),
    "structured": lambda x: np.zeros(x.shape, dtype=[("a", "f8"), ("b", "i4")]),
    "ragged": lambda x: [[1.0], [1.0, 2.0]],
    "none": lambda x: None,
    "dict": lambda x: {"a": 1.0},
    "text": lambda x: "1.0",
}
BAD_INDICES = {
    "float": lambda k: np.asarray(k, dtype=np.float64),
    "bool": lambda k: np.asarray(k) > 0,
    "complex": lambda k: np.asarray(k, dtype=np.complex128),
    "str": lambda k: np.asarray(k).astype(str),
    "object": lambda k: np.asarray(k).astype(object),
    "none": lambda k: None,
    "ragged": lambda k: [[0], [1, 2]],
}
BAD_SHAPES = {
    "none": lambda s: None,
    "floats": lambda s: tuple(float(v) for v in s),
    "text": lambda s: "ab",
    "nested": lambda s: [[v] for v in s],
    "dict": lambda s: {"a": 1},
    "float-array": lambda s: np.asarray(s, dtype=np.float64),
}
BAD_INTS = {
    "none": lambda v: None,
    "float": lambda v: v + 0.5,
    "text": lambda v: str(v),
    "bool": lambda v: True,
    "numpy-float": lambda v: np.float64(v),
    "array": lambda v: np.array([v, v]),
}

# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

FLOAT_TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6), np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13)}


def c_copy(x):
    """A C-contiguous copy of x that keeps its shape (np.ascontiguousarray turns 0-d into 1-d)."""
    return np.array(x, order="C", copy=True)


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def compute_dtype(*arrays):
    """The dtype vgrad computes in for these inputs (the spec's dtype rule), found independently."""
    kinds = [np.asarray(a).dtype for a in arrays]
    if kinds and all(d in (np.dtype(np.float32), np.dtype(np.float16)) for d in kinds):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def assert_close(got, want, dtype, what=""):
    """got and want agree in shape and value within the tolerance for `dtype`."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    np.testing.assert_allclose(got, want, err_msg=what, **FLOAT_TOL[np.dtype(dtype)])


def assert_exact(got, want, what=""):
    """Bit for bit: the same dtype (in either byte order) and shape, equal values with NaN where want has NaN
    (NaN payloads are not compared), and the same sign on every zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype.newbyteorder("=") == want.dtype.newbyteorder("="), (
        f"{what}: dtype {got.dtype} != expected {want.dtype}")
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=what, strict=True)
    if got.dtype.kind == "f":
        keep = ~np.isnan(want)
        assert np.array_equal(np.signbit(got[keep]), np.signbit(want[keep])), f"{what}: the sign of a zero differs"


def assert_matches(entry, got, want, dtype, what=""):
    """Exactly for the course's ops in float64 (and for any result of another dtype), else within tolerance."""
    if entry.exact and (np.dtype(dtype) == np.float64 or np.asarray(want).dtype.kind != "f"
                        or np.asarray(want).dtype == np.float16):
        assert_exact(got, want, what)
    else:
        assert_close(got, want, dtype, what)


def assert_same_context(ctx, ref_ctx, dtype, what="", exact=False):
    """Same keys, and each value agrees with the Reference's (arrays in shape and value; bit for bit when
    exact)."""
    assert set(ctx) == set(ref_ctx), f"{what}: context keys {sorted(ctx)} != Reference's {sorted(ref_ctx)}"
    for key in ref_ctx:
        a, b = ctx[key], ref_ctx[key]
        if isinstance(b, (tuple, int)):
            assert tuple(np.atleast_1d(a)) == tuple(np.atleast_1d(b)), f"{what}: context[{key!r}] {a!r} != {b!r}"
        else:
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape, f"{what}: context[{key!r}] shape {a.shape} != Reference's {b.shape}"
            if b.dtype.kind in "iub":
                np.testing.assert_array_equal(a, b, err_msg=f"{what}: context[{key!r}]")
            elif exact:
                assert_exact(a, b, f"{what}: context[{key!r}]")
            else:
                np.testing.assert_allclose(a, b, err_msg=f"{what}: context[{key!r}]", **FLOAT_TOL[np.dtype(dtype)])


def forward(op, inputs, kwargs):
    """Runs op.forward on a fresh context; returns (output, context)."""
    ctx = {}
    out = op.forward(ctx, *inputs, **kwargs)
    return out, ctx


def weighted_loss(out_node, weights):
    """loss = Sum(Multiply(out, R)): a scalar whose gradient over out is R."""
    return vg.Sum.do_forward(vg.Multiply.do_forward(out_node, vg.TensorNode(weights)))


def graph_grads(fn, arrays, weights):
    """Builds nodes for arrays, out = fn(*nodes), backprops Sum(out * weights); returns (out value, grads)."""
    nodes = [vg.TensorNode(a) for a in arrays]
    out = fn(*nodes)
    loss = weighted_loss(out, weights)
    loss.backward()
    grads = [n.grad.copy() for n in nodes]
    loss.clear()
    return out.value, grads


def central_differences(f, arrays, eps=1e-6):
    """(f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for every element of every array; f returns a float."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            orig = a[idx]
            a[idx] = orig + eps
            up = f(*arrays)
            a[idx] = orig - eps
            down = f(*arrays)
            a[idx] = orig
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


# --------------------------------------------------------------------------------------------------
# Memory layouts: each returns an array with the same shape and dtype as x and another memory layout
# --------------------------------------------------------------------------------------------------


def _zero_stride(x):
    """A read-only view whose rows all equal x[0] (stride 0 on axis 0): the values change."""
    if x.ndim == 0 or x.shape[0] == 0:
        return x
    return np.broadcast_to(x[:1], x.shape)


def _fortran(x):
    return np.array(x, order="F", copy=True)  # np.asfortranarray would turn 0-d into 1-d


def _transposed(x):
    if x.ndim < 2:
        return x
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(x, -1, -2)), -1, -2)


def _strided(x):
    if x.ndim == 0:
        return x
    big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
    view = big[(slice(None, None, 2),) * x.ndim]
    view[...] = x
    return view


def _negative(x):
    if x.ndim == 0:
        return x
    return np.flip(np.ascontiguousarray(np.flip(x)))


def _readonly(x):
    y = x.copy()
    y.setflags(write=False)
    return y


def _unaligned(x):
    """A writable copy whose data starts one byte past an aligned address (for itemsize > 1)."""
    if x.dtype.itemsize == 1:
        return x.copy()
    buf = np.zeros(x.nbytes + 1, dtype=np.uint8)
    y = np.frombuffer(buf.data[1:], dtype=x.dtype).reshape(x.shape)  # a view of buf, which it keeps alive
    y[...] = x
    return y


def _byteswapped(x):
    """The same values stored in the opposite byte order (its dtype says so: '>f8' on little-endian)."""
    return x.astype(x.dtype.newbyteorder("S"))


LAYOUTS = {
    "fortran": _fortran,
    "transposed": _transposed,
    "strided": _strided,
    "negative": _negative,
    "readonly": _readonly,
    "zero_stride": _zero_stride,
    "unaligned": _unaligned,
}
# Not in LAYOUTS: ops that return their input or a view of it (Id, Squeeze, Unsqueeze, Add's gradients) keep
# its byte order, so the dtype checks of the layout tests do not apply. tests/test_properties.py uses it.
BYTE_SWAPPED = _byteswapped
