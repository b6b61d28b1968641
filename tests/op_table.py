"""The op table: one entry per built-in op of vgrad.ops.ALL_OPS, plus the helpers the test files share.

Each entry (an OpEntry, in the spirit of PyTorch's OpInfo) holds the op's test inputs: how to make valid sample
inputs (several shapes, in the op's domain), which keyword arguments go with them, which inputs must be refused
(exception type and a message regex that names the op), and a call on special values (inf, NaN, signed zeros,
subnormals, overflowing values). tests/test_ops.py runs its generic tests over this table. c_calls() below gives
one valid call of each function of vgrad._C, for the tests that feed them bad arguments. tests/test_registry.py
fails when an op of ALL_OPS has no entry, or a function of vgrad._C no valid call.

Expected values in the tests never come from the code under test: they come from the op's NumPy
Reference class, from independent NumPy formulas, or from central differences.
"""
import re
from dataclasses import dataclass, field
from typing import Callable, List

import numpy as np

import vgrad as vg
import vgrad.ops as vops

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
# Values in an op's domain
# --------------------------------------------------------------------------------------------------

# real: any value; positive: in [0.5, 2]; nonzero: |x| in [0.5, 2]; relu: |x| >= 0.1 (away from the kink);
# wide: [-30, 30] (sigmoid tails); distinct: each row holds well separated values (RowMax without ties).
DOMAINS = ("real", "positive", "nonzero", "relu", "wide", "distinct")


def values(domain, shape, dtype, rng):
    """A random array of `shape` and `dtype` whose values lie in `domain`."""
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


def shaped(domains, shape_list, kwargs=None):
    """A sample maker: one Sample per entry of shape_list (a tuple of shapes, one per input).

    kwargs is None, a dict, or a function (shapes, rng) -> dict, called once per sample.
    """

    def make(dtype, rng):
        out = []
        for shapes in shape_list:
            inputs = [values(d, s, dtype, rng) for d, s in zip(domains, shapes)]
            kw = kwargs(shapes, rng) if callable(kwargs) else dict(kwargs or {})
            out.append(Sample(inputs, kw))
        return out

    return make


def listed(domain, cases):
    """A sample maker for one-input ops whose kwargs vary per shape: cases is a list of (shape, kwargs)."""

    def make(dtype, rng):
        return [Sample([values(domain, s, dtype, rng)], dict(kw)) for s, kw in cases]

    return make


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------

ELEMENTWISE_SHAPES = [(3, 4), (), (0,), (2, 0, 3), (7,), (2, 3, 4), (1, 1)]
BIG = (517, 1031)


def unary(domain):
    return shaped([domain], [(s,) for s in ELEMENTWISE_SHAPES])


def binary(domain_a, domain_b):
    return shaped([domain_a, domain_b], [(s, s) for s in ELEMENTWISE_SHAPES])


def big_unary(domain):
    return shaped([domain], [(BIG,)])


def big_binary(domain_a, domain_b):
    return shaped([domain_a, domain_b], [(BIG, BIG)])


def select_indices(shapes, rng):
    (n, m), = shapes
    idx = rng.integers(0, m, size=n) if m > 0 else np.zeros(n, dtype=np.int64)
    return {"indices": idx.astype(np.int64)}


def _select_samples(dtype, rng):
    samples = shaped(["real"], [((3, 4),), ((1, 5),), ((0, 4),), ((4, 1),), ((6, 3),)], select_indices)(dtype, rng)
    # other integer index dtypes and a non-contiguous index vector are valid too
    x = values("real", (5, 4), dtype, rng)
    samples.append(Sample([x], {"indices": np.array([3, 0, 1, 3, 2], dtype=np.int32)}))
    x = values("real", (4, 3), dtype, rng)
    samples.append(Sample([x], {"indices": np.array([2, 9, 0, 9, 1, 9, 2, 9], dtype=np.uint8)[::2]}))
    return samples


# --------------------------------------------------------------------------------------------------
# Error cases
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


AXIS = (ValueError, IndexError)  # a dim out of range may be either (numpy's AxisError is both)

# --------------------------------------------------------------------------------------------------
# Special values
# --------------------------------------------------------------------------------------------------

SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -1.0, 800.0, -800.0, 1.0])
SPECIAL_MATRIX = np.array([[1.0, np.nan, 3.0, -0.0], [np.nan, 5.0, 1.0, 0.0], [-np.inf, -np.inf, 2.0, 1e-310],
                           [np.inf, 1.0, np.inf, -1e-310], [0.0, -0.0, -5.0, -0.0], [-0.0, -0.0, -0.0, -0.0],
                           [800.0, -800.0, 1e308, -1e308], [1.0, 2.0, 3.0, 4.0]])
SPECIAL_IMAGES = SPECIAL_MATRIX.reshape(2, 1, 4, 4)  # two 4 x 4 images of one channel
# For the convolution, the same images with +-1e308 scaled to +-1e300: a weight gradient sums products over
# images and positions, and a sum that overflows part-way ends in inf or in NaN depending on the order of its
# terms, which differs (legitimately) between the direct kernels and the Reference's BLAS product. Infinities,
# NaN, zeros and subnormals stay.
SPECIAL_IMAGES_NO_OVERFLOW = np.where(np.abs(SPECIAL_IMAGES) == 1e308, np.sign(SPECIAL_IMAGES) * 1e300,
                                      SPECIAL_IMAGES)
EIGHT_TARGETS = np.array([0, 1, 2, 3, 0, 1, 2, 3])  # one per row of SPECIAL_MATRIX


def special(*inputs, **kwargs):
    """The call of an entry's `special`: float64 arrays (cast to each dtype tested) and keyword arguments."""
    return Sample(list(inputs), kwargs)


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


def unary_elementwise(ops):
    """The element-wise ops of one input among `ops`: those whose class declares `tests = UnaryElementwise(...)`
    (vgrad/ops.py). Their entries, their kernels' valid calls and property tests are built from that alone."""
    return [op for op in ops if isinstance(vars(op).get("tests"), vops.UnaryElementwise)]


def unary_elementwise_entry(op):
    domain = op.tests.domain
    return OpEntry(op, unary(domain), [], large=big_unary(domain), special=special(SPECIAL))


TABLE = [
    OpEntry(vops.Add, binary("real", "real"), shape_mismatch("Add"), large=big_binary("real", "real"),
            special=special(SPECIAL, SPECIAL[::-1])),
    OpEntry(vops.Sub, binary("real", "real"), shape_mismatch("Sub"), large=big_binary("real", "real"),
            special=special(SPECIAL, SPECIAL)),
    OpEntry(vops.Multiply, binary("real", "real"), shape_mismatch("Multiply"), large=big_binary("real", "real"),
            special=special(SPECIAL, SPECIAL[::-1])),
    OpEntry(vops.Div, binary("real", "nonzero"), shape_mismatch("Div"), large=big_binary("real", "nonzero"),
            special=special(SPECIAL, SPECIAL[::-1])),
    OpEntry(
        vops.MatrixMultiply,
        shaped(
            ["real", "real"],
            [((3, 4), (4, 2)), ((1, 1), (1, 1)), ((0, 3), (3, 2)), ((3, 0), (0, 2)), ((2, 3), (3, 0)), ((5, 1), (1, 4))],
        ),
        [
            ErrorCase("inner", [o(2, 3), o(4, 5)], {}, ValueError, msg("MatrixMultiply", "(2, 3)", "(4, 5)")),
            ErrorCase("1d", [o(3), o(3, 2)], {}, ValueError, msg("MatrixMultiply", "(3,)")),
            ErrorCase("3d", [o(2, 2, 2), o(2, 2)], {}, ValueError, msg("MatrixMultiply", "(2, 2, 2)")),
        ],
        large=shaped(["real", "real"], [((130, 257), (257, 67))]),
        special=special(SPECIAL_MATRIX, SPECIAL_MATRIX.T),
        special_float32=False,
    ),
    OpEntry(
        vops.BatchMM,
        shaped(
            ["real", "real"],
            [((4, 3), (5, 3)), ((1, 1), (1, 1)), ((4, 3), (0, 3)), ((0, 3), (5, 3)), ((4, 0), (5, 0)), ((2, 6), (3, 6))],
        ),
        [
            ErrorCase("features", [o(4, 3), o(5, 2)], {}, ValueError, msg("BatchMM", "(4, 3)", "(5, 2)")),
            ErrorCase("1d-vectors", [o(4, 3), o(3)], {}, ValueError, msg("BatchMM", "(3,)")),
            ErrorCase("1d-matrix", [o(3), o(5, 3)], {}, ValueError, msg("BatchMM", "(3,)")),
        ],
        large=shaped(["real", "real"], [((67, 257), (130, 257))]),
        special=special(SPECIAL_MATRIX, SPECIAL_MATRIX),
        special_float32=False,
    ),
    *(unary_elementwise_entry(op) for op in unary_elementwise(vops.ALL_OPS)),  # Log, Exp, Sigmoid, ReLU
    OpEntry(vops.Id, unary("real"), [], passthrough=True, special=special(SPECIAL)),
    OpEntry(vops.Sum, shaped(["real"], [((3, 4),), ((),), ((0,),), ((0, 3),), ((5,),), ((2, 3, 4),)]), [],
            large=big_unary("real"), special=special(SPECIAL[[0, 2, 5]])),
    OpEntry(vops.RowSum, shaped(["real"], [((3, 4),), ((1, 1),), ((0, 3),), ((3, 0),), ((5, 1),)]), needs_2d("RowSum"),
            large=big_unary("real"), special=special(np.array([[1.0, np.inf], [np.inf, -np.inf], [np.nan, 1.0]]))),
    OpEntry(
        vops.RowMax,
        shaped(["distinct"], [((3, 4),), ((1, 1),), ((0, 3),), ((5, 2),), ((2, 7),)]),
        needs_2d("RowMax") + [ErrorCase("empty-rows", [o(3, 0)], {}, ValueError, msg("RowMax"))],
        bools=False,  # bool rows tie
        large=big_unary("distinct"),
        special=special(SPECIAL_MATRIX),
    ),
    OpEntry(
        vops.Normalize,
        shaped(["positive"], [((3, 4),), ((1, 1),), ((0, 3),), ((3, 0),), ((5, 2),)]),
        needs_2d("Normalize"),
        large=big_unary("positive"),
        special=special(np.array([[1.0, -1.0], [0.0, 0.0], [np.inf, 1.0], [1e-310, 1e-310]])),
    ),
    OpEntry(
        vops.Expand,
        listed(
            "real",
            [
                ((1, 4), {"dim": 0, "repeats": 3}),
                ((3, 1), {"dim": 1, "repeats": 5}),
                ((1,), {"dim": 0, "repeats": 4}),
                ((2, 1, 3), {"dim": 1, "repeats": 2}),
                ((1, 3), {"dim": 0, "repeats": 0}),
                ((1, 0), {"dim": 0, "repeats": 3}),
                ((1, 1), {"dim": 1, "repeats": 1}),
                ((3, 1), {"dim": -1, "repeats": 2}),
            ],
        ),
        [
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
        large=listed("real", [((1, BIG[1]), {"dim": 0, "repeats": BIG[0]})]),
        special=special(SPECIAL[None, :], dim=0, repeats=3),
    ),
    OpEntry(
        vops.Select,
        _select_samples,
        [
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
        large=shaped(["real"], [(BIG,)], select_indices),
        special=special(SPECIAL_MATRIX, indices=EIGHT_TARGETS),
    ),
    OpEntry(
        vops.Squeeze,
        listed(
            "real",
            [
                ((1, 4), {"dim": 0}),
                ((3, 1), {"dim": 1}),
                ((1,), {"dim": 0}),
                ((2, 1, 3), {"dim": 1}),
                ((1, 0), {"dim": 0}),
                ((1, 5), {}),  # default dim=0
                ((3, 1), {"dim": -1}),
            ],
        ),
        [
            ErrorCase("not-singleton", [o(2, 3)], {"dim": 0}, ValueError, msg("Squeeze")),
            ErrorCase("dim-range", [o(1, 3)], {"dim": 5}, AXIS, msg("Squeeze")),
        ],
        passthrough=True,
        special=special(SPECIAL[None, :], dim=0),
    ),
    OpEntry(
        vops.Unsqueeze,
        listed(
            "real",
            [
                ((3, 4), {"dim": 0}),
                ((3, 4), {"dim": 1}),
                ((3, 4), {"dim": 2}),
                ((), {"dim": 0}),
                ((0, 3), {"dim": 1}),
                ((5,), {}),  # default dim=0
                ((3, 4), {"dim": -1}),
            ],
        ),
        [ErrorCase("dim-range", [o(2, 3)], {"dim": 4}, AXIS, msg("Unsqueeze"))],
        passthrough=True,
        special=special(SPECIAL, dim=1),
    ),
    # The fused ops of Linear, logsoftmax and logceloss.
    OpEntry(
        vops.Affine,
        shaped(["real", "real", "real"], [((4, 3), (1, 4), (5, 3)), ((2, 6), (2,), (1, 6)), ((3, 2), (1, 3), (0, 2)),
                                          ((1, 1), (1, 1), (3, 1)), ((3, 0), (1, 3), (2, 0))]),
        [
            ErrorCase("features", [o(4, 3), o(1, 4), o(5, 2)], {}, ValueError, msg("Affine", "(5, 2)")),
            ErrorCase("bias-size", [o(4, 3), o(1, 3), o(5, 3)], {}, ValueError, msg("Affine", "bias")),
            ErrorCase("1d-weights", [o(4), o(1, 4), o(5, 4)], {}, ValueError, msg("Affine", "(4,)")),
        ],
        large=shaped(["real", "real", "real"], [((257, 131), (1, 257), (67, 131))]),
        special=special(SPECIAL_MATRIX, SPECIAL[None, :8], SPECIAL_MATRIX[::-1].copy()),
        special_float32=False,
    ),
    OpEntry(
        vops.LogSoftmax,
        shaped(["real"], [((3, 4),), ((1, 1),), ((0, 3),), ((5, 1),), ((2, 7),)]),
        needs_2d("LogSoftmax") + [ErrorCase("empty-rows", [o(3, 0)], {}, ValueError, msg("LogSoftmax", "(3, 0)"))],
        bools=False,
        large=shaped(["real"], [((517, 1031),)]),
        special=special(SPECIAL_MATRIX),
        special_float32=False,
    ),
    OpEntry(
        vops.LogCELoss,
        shaped(["real"], [((3, 4),), ((1, 5),), ((0, 4),), ((4, 1),), ((6, 3),)],
               lambda shapes, rng: {"targets": select_indices(shapes, rng)["indices"]}),
        [
            ErrorCase("out-of-range", [o(3, 4)], {"targets": np.array([0, 4, 1])}, IndexError, msg("LogCELoss")),
            ErrorCase("float-targets", [o(3, 4)], {"targets": np.array([0.0, 1.0, 2.0])}, TypeError,
                      msg("LogCELoss")),
            ErrorCase("length", [o(3, 4)], {"targets": np.array([0, 1])}, ValueError, msg("LogCELoss")),
            ErrorCase("1d-input", [o(4)], {"targets": np.array([0, 1, 2, 3])}, ValueError, msg("LogCELoss", "(4,)")),
        ],
        special=special(SPECIAL_MATRIX, targets=EIGHT_TARGETS),
    ),
]

# --------------------------------------------------------------------------------------------------
# The CNN toolkit (vgrad/nn_ops.py): each sample maker returns Samples with per-sample kwargs
# --------------------------------------------------------------------------------------------------


def _made(cases):
    """A sample maker from cases [(domains, shapes, kwargs or a function rng -> kwargs)]."""

    def make(dtype, rng):
        out = []
        for domains, shapes, kw in cases:
            inputs = [values(d, s, dtype, rng) for d, s in zip(domains, shapes)]
            out.append(Sample(inputs, kw(rng) if callable(kw) else dict(kw)))
        return out

    return make


R2, R3 = ["real"] * 2, ["real"] * 3
# the first sample has no bias, so that replacing its last input (w) by a bad value must fail
CONV_SAMPLES = _made([
    (R2, [(2, 3, 5, 5), (4, 3, 3, 3)], {}),
    (R3, [(1, 2, 6, 5), (3, 2, 3, 2), (3,)], {"stride": 2, "padding": 1}),
    (R3, [(2, 1, 4, 5), (2, 1, 2, 2), (2,)], {"stride": (1, 2), "padding": (0, 1)}),
    (R3, [(0, 2, 4, 4), (3, 2, 3, 3), (3,)], {}),
    (R3, [(1, 1, 3, 3), (1, 1, 3, 3), (1,)], {"padding": 2, "stride": 3}),
    (R3, [(1, 1, 4, 4), (1, 1, 2, 2), (1,)], {"stride": 1}),
    (R3, [(2, 0, 3, 3), (2, 0, 2, 2), (2,)], {}),
])
POOL_SAMPLES = _made([
    (["real"], [(2, 3, 6, 6)], {"kernel_size": 2}),
    (["real"], [(1, 2, 7, 5)], {"kernel_size": 3, "stride": 2}),
    (["real"], [(1, 1, 5, 6)], {"kernel_size": (2, 3), "stride": (1, 2)}),
    (["real"], [(0, 2, 4, 4)], {"kernel_size": 2}),
    (["real"], [(1, 1, 4, 4)], {"kernel_size": 2, "stride": 1}),
])


def pool_errors(name):
    return [
        ErrorCase("zero-kernel", [o(1, 1, 4, 4)], {"kernel_size": 0}, ValueError, msg(name, "kernel_size")),
        ErrorCase("3d", [o(1, 4, 4)], {"kernel_size": 2}, ValueError, msg(name, "(1, 4, 4)")),
        ErrorCase("too-big", [o(1, 1, 2, 2)], {"kernel_size": 3}, ValueError, msg(name, "window")),
        ErrorCase("float-kernel", [o(1, 1, 4, 4)], {"kernel_size": 2.0}, TypeError, msg(name, "kernel_size")),
        ErrorCase("zero-stride", [o(1, 1, 4, 4)], {"kernel_size": 2, "stride": 0}, ValueError, msg(name, "stride")),
    ]


def _keep(shape, p):
    return lambda rng: {"mask": rng.random(shape) >= p, "p": p}


def _running(c):
    return lambda rng: {"running_mean": rng.standard_normal(c), "running_var": rng.uniform(0.5, 2.0, c)}


def _targets(n, c, reduction="mean"):
    return lambda rng: {"targets": rng.integers(0, c, n), "reduction": reduction}


TABLE += [
    OpEntry(
        vops.Convolution,
        CONV_SAMPLES,
        [
            ErrorCase("channels", [o(1, 3, 5, 5), o(2, 2, 3, 3)], {}, ValueError,
                      msg("Convolution", "(1, 3, 5, 5)", "(2, 2, 3, 3)")),
            ErrorCase("3d-input", [o(3, 5, 5), o(2, 3, 3, 3)], {}, ValueError, msg("Convolution", "(3, 5, 5)")),
            ErrorCase("2d-filters", [o(1, 3, 5, 5), o(2, 3)], {}, ValueError, msg("Convolution", "(2, 3)")),
            ErrorCase("too-big", [o(1, 1, 2, 2), o(1, 1, 3, 3)], {}, ValueError, msg("Convolution", "window")),
            ErrorCase("bias-shape", [o(1, 1, 4, 4), o(2, 1, 3, 3), o(3)], {}, ValueError,
                      msg("Convolution", "bias", "(3,)")),
            ErrorCase("zero-stride", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"stride": 0}, ValueError,
                      msg("Convolution", "stride")),
            ErrorCase("negative-padding", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"padding": -1}, ValueError,
                      msg("Convolution", "padding")),
            ErrorCase("float-stride", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"stride": 1.5}, TypeError,
                      msg("Convolution", "stride")),
            ErrorCase("triple-stride", [o(1, 1, 4, 4), o(1, 1, 3, 3)], {"stride": (1, 1, 1)}, ValueError,
                      msg("Convolution", "stride")),
        ],
        large=_made([(R3, [(8, 3, 32, 32), (6, 3, 5, 5), (6,)], {"padding": 1})]),
        special=special(SPECIAL_IMAGES_NO_OVERFLOW, np.array([[[[1.0, -1.0], [0.0, 2.0]]]]), np.array([0.5])),
    ),
    OpEntry(vops.MaxPooling, POOL_SAMPLES, pool_errors("MaxPooling"),
            large=_made([(["real"], [(8, 6, 28, 28)], {"kernel_size": 2})]),
            special=special(SPECIAL_IMAGES, kernel_size=2, stride=1)),
    OpEntry(vops.AvgPooling, POOL_SAMPLES, pool_errors("AvgPooling"),
            large=_made([(["real"], [(8, 6, 28, 28)], {"kernel_size": 3, "stride": 1})]),
            special=special(SPECIAL_IMAGES, kernel_size=2, stride=1)),
    OpEntry(
        vops.DropoutMask,
        _made([
            (["real"], [(3, 4)], _keep((3, 4), 0.3)),
            (["real"], [(2, 3, 4, 5)], _keep((2, 3, 4, 5), 0.5)),
            (["real"], [()], _keep((), 0.5)),
            (["real"], [(0, 3)], _keep((0, 3), 0.1)),
            (["real"], [(4, 2)], _keep((4, 2), 1.0)),
            (["real"], [(4, 2)], _keep((4, 2), 0.0)),
        ]),
        [
            ErrorCase("mask-shape", [o(3, 4)], {"mask": np.ones((4, 3), dtype=bool), "p": 0.5}, ValueError,
                      msg("DropoutMask", "(3, 4)", "(4, 3)")),
            ErrorCase("p-range", [o(3, 4)], {"mask": np.ones((3, 4), dtype=bool), "p": 1.5}, ValueError,
                      msg("DropoutMask", "p")),
            ErrorCase("p-type", [o(3, 4)], {"mask": np.ones((3, 4), dtype=bool), "p": "half"}, TypeError,
                      msg("DropoutMask", "p")),
        ],
        large=_made([(["real"], [BIG], _keep(BIG, 0.4))]),
        special=special(SPECIAL_MATRIX, mask=np.arange(32).reshape(8, 4) % 3 != 0, p=0.25),
    ),
    OpEntry(
        vops.BatchNormalization,
        _made([
            (R3, [(6, 3), (3,), (3,)], {}),
            (R3, [(4, 3, 5, 2), (3,), (3,)], {"eps": 1e-3}),
            (R3, [(5, 2), (2,), (2,)], _running(2)),
            (R3, [(2, 3, 4, 4), (3,), (3,)], _running(3)),
            (R3, [(3, 2), (2,), (2,)], {}),
            (R3, [(2, 2, 3), (2,), (2,)], {}),
        ]),
        [
            ErrorCase("gamma-shape", [o(4, 3), o(2), o(3)], {}, ValueError, msg("BatchNormalization", "(2,)")),
            ErrorCase("1d-input", [o(4), o(4), o(4)], {}, ValueError, msg("BatchNormalization", "(4,)")),
            ErrorCase("one-value", [o(1, 3), o(3), o(3)], {}, ValueError, msg("BatchNormalization", "(1, 3)")),
            ErrorCase("half-running", [o(4, 3), o(3), o(3)], {"running_mean": z(3)}, TypeError,
                      msg("BatchNormalization", "running")),
            ErrorCase("running-shape", [o(4, 3), o(3), o(3)], {"running_mean": z(2), "running_var": o(2)},
                      ValueError, msg("BatchNormalization", "running", "(2,)")),
        ],
        large=_made([(R3, [(16, 8, 24, 24), (8,), (8,)], {})]),
        special=special(SPECIAL_MATRIX, np.array([1.0, -2.0, 0.5, 3.0]), np.array([0.0, 1.0, -1.0, 0.5])),
    ),
    OpEntry(
        vops.CrossEntropy,
        _made([
            (["real"], [(3, 4)], _targets(3, 4)),
            (["real"], [(1, 5)], _targets(1, 5)),
            (["real"], [(0, 4)], _targets(0, 4, "sum")),
            (["real"], [(6, 3)], _targets(6, 3, "sum")),
            (["real"], [(4, 1)], _targets(4, 1)),
            (["wide"], [(5, 7)], _targets(5, 7)),
        ]),
        [
            ErrorCase("out-of-range", [o(3, 4)], {"targets": np.array([0, 4, 1])}, IndexError,
                      msg("CrossEntropy")),
            ErrorCase("negative", [o(3, 4)], {"targets": np.array([0, -1, 1])}, IndexError, msg("CrossEntropy")),
            ErrorCase("float-targets", [o(3, 4)], {"targets": np.array([0.0, 1.0, 2.0])}, TypeError,
                      msg("CrossEntropy")),
            ErrorCase("length", [o(3, 4)], {"targets": np.array([0, 1])}, ValueError, msg("CrossEntropy")),
            ErrorCase("1d-logits", [o(4)], {"targets": np.array([0])}, ValueError, msg("CrossEntropy", "(4,)")),
            ErrorCase("reduction", [o(3, 4)], {"targets": np.array([0, 1, 2]), "reduction": "avg"}, ValueError,
                      msg("CrossEntropy", "reduction")),
        ],
        large=_made([(["real"], [BIG], _targets(BIG[0], BIG[1]))]),
        special=special(SPECIAL_MATRIX, targets=EIGHT_TARGETS),
    ),
    OpEntry(
        vops.Reshape,
        _made([
            (["real"], [(2, 3)], {"shape": (3, 2)}),
            (["real"], [(2, 3, 4)], {"shape": (2, -1)}),
            (["real"], [()], {"shape": (1, 1)}),
            (["real"], [(0, 3)], {"shape": (3, 0)}),
            (["real"], [(4,)], {"shape": (2, 2)}),
        ]),
        [
            ErrorCase("size", [o(2, 3)], {"shape": (4,)}, ValueError, msg("Reshape", "(2, 3)", "(4,)")),
            ErrorCase("two-unknown", [o(2, 3)], {"shape": (-1, -1)}, ValueError, msg("Reshape")),
            ErrorCase("not-a-shape", [o(2, 3)], {"shape": "abc"}, TypeError, msg("Reshape")),
        ],
        passthrough=True,
        special=special(SPECIAL_MATRIX, shape=(4, 8)),
    ),
]

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
    """name -> CCall for every function vgrad._C exports (fresh arrays on each call)."""
    x, y, go = o(2, 3) * 0.5, o(2, 3) * 2.0, o(2, 3)
    calls = {
        "add_forward": CCall((x, y), (0, 1)),
        "sub_forward": CCall((x, y), (0, 1)),
        "mul_forward": CCall((x, y), (0, 1)),
        "div_forward": CCall((x, y), (0, 1)),
        "mul_backward": CCall((go, x, y), (0, 1, 2)),
        "div_backward": CCall((go, x, y), (0, 1, 2)),
        "neg_forward": CCall((x,), (0,)),
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
        "matmul_forward": CCall((o(2, 3), o(3, 4)), (0, 1)),
        "matmul_backward": CCall((o(2, 4), o(2, 3), o(3, 4)), (0, 1, 2)),
        "batchmm_forward": CCall((o(4, 3), o(2, 3)), (0, 1)),
        "batchmm_backward": CCall((o(2, 4), o(4, 3), o(2, 3)), (0, 1, 2)),
        "affine_forward": CCall((o(4, 3), o(1, 4), o(2, 3)), (0, 1, 2)),
        "affine_backward": CCall((o(2, 4), o(4, 3), o(2, 3), (1, 4), True), (0, 1, 2), shapes=(3,)),
        "logsoftmax_forward": CCall((x,), (0,)),
        "logsoftmax_backward": CCall((go, o(2, 3) * 0.25, o(2) * 0.75, np.array([0, 2])), (0, 1, 2), indices=(3,)),
        "logceloss_forward": CCall((-y, np.array([0, 2])), (0,), indices=(1,)),
        "logceloss_backward": CCall((o(), np.array([0, 2]), (2, 3)), (0,), indices=(1,), shapes=(2,)),
        # the CNN kernels (their reference tests are in test_properties_cnn.py)
        "conv2d": CCall((o(1, 1, 3, 3), o(1, 1, 2, 2), o(1), 1, 1, 0, 0), (0, 1)),  # b may be None
        "conv2d_grad": CCall((o(1, 1, 2, 2), o(1, 1, 3, 3), o(1, 1, 2, 2), 1, 1, 0, 0, True, True), (0, 1, 2)),
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
    calls.update(unary_elementwise_calls(vops.ALL_OPS))
    for name, call in calls.items():
        call.op = KERNEL_OWNERS[name].__name__ if name in KERNEL_OWNERS else name
    return calls


def unary_elementwise_calls(ops):
    """name -> CCall for the kernels of the element-wise ops of one input among `ops`: forward(x), backward(go, s)."""
    calls = {}
    for op in unary_elementwise(ops):
        forward, backward = op.kernels
        calls[forward] = CCall((o(2, 3) * 2.0,), (0,), op=op.__name__)
        calls[backward] = CCall((o(2, 3), o(2, 3) * 2.0), (0, 1), op=op.__name__)
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
