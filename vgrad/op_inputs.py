"""
What each op declares about the inputs it accepts, as `tests = ...` in its class (vgrad/ops.py, vgrad/nn_ops.py),
in the spirit of PyTorch's OpInfo: a few shapes to try it on (odd and empty sizes among them), where the values
lie, its keyword arguments, a large call for the kernels' blocked, threaded or GIL-free paths, and a call on
special values (inf, NaN, signed zeros, subnormals, overflowing values). Read as documentation, a declaration
says what inputs an op takes; the tests build everything else from it (tests/op_table.py: the op's samples,
special values and valid calls of its kernels; tests/test_properties.py: the property tests of its kind).

There are four kinds, from the most to the least derived:
  UnaryElementwise   x -> f(x), element by element: the shapes, special values and property tests come with the kind
  BinaryElementwise  (a, b) -> f(a, b) on arrays of one shape: likewise, with each input's domain
  MatrixProduct      products of matrices, their shapes given by size names ('nk', 'km')
  Samples            anything else: its calls written out, a Case each

The values of an array input lie in a domain: 'real' (any value), 'positive' ([0.5, 2]), 'nonzero' (|x| in
[0.5, 2]), 'relu' (|x| >= 0.1, away from ReLU's kink), 'wide' ([-30, 30], sigmoid's tails), 'distinct' (each row of
a matrix holds well separated values: a maximum without ties). tests/op_table.values() draws them.
"""
from dataclasses import dataclass

import numpy as np

DOMAINS = ('real', 'positive', 'nonzero', 'relu', 'wide', 'distinct')

# The shapes every element-wise op is tried on: a matrix, 0-d, empty, empty in the middle, odd sizes, 3-d, one element.
ELEMENTWISE_SHAPES = ((3, 4), (), (0,), (2, 0, 3), (7,), (2, 3, 4), (1, 1))
BIG = (517, 1031)  # large, odd-sized: more than a block, a thread's share, or the size below which the GIL is kept

# Special values, in float64 (the tests cast them to each dtype).
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
EIGHT_TARGETS = np.array([0, 1, 2, 3, 0, 1, 2, 3])  # one column index per row of SPECIAL_MATRIX


class Call:
    """A call on given arrays, Op.forward(context, *inputs, **kwargs): an op's call on special values."""
    __slots__ = ('inputs', 'kwargs')

    def __init__(self, *inputs, **kwargs):
        self.inputs, self.kwargs = inputs, kwargs

    def __repr__(self):
        return f'Call({len(self.inputs)} arrays, {sorted(self.kwargs)})'


class Case:
    """
    One sample call: Case(*shapes, **kwargs) gives the op arrays of these shapes, with values drawn from the
    declaration's domains (or this case's own `domains`), and these keyword arguments. A keyword argument that must
    fit the drawn inputs (indices into a matrix, a mask of an array's shape) is given as a function
    (shapes, rng) -> value, such as row_indices below; it is called after the arrays are drawn.
    """
    __slots__ = ('shapes', 'kwargs', 'domains')

    def __init__(self, *shapes, domains=None, **kwargs):
        self.shapes, self.kwargs, self.domains = shapes, kwargs, domains

    def __repr__(self):
        return f'Case{self.shapes + tuple(f"{k}=..." for k in self.kwargs)}'


@dataclass(frozen=True)
class UnaryElementwise:
    """
    An element-wise op on one array, x -> f(x), with `kernels = (forward kernel, backward kernel)`: the forward
    kernel takes x, the backward one go and an array the forward left in the context. It is tried on every shape of
    ELEMENTWISE_SHAPES, a BIG one, and SPECIAL; both kernels are checked against the op's Reference on random
    shapes, dtypes and layouts.
    """
    domain: str  # where the samples' values lie (DOMAINS)
    saved: str  # the context key of the array the backward kernel takes with go
    float32_exact: bool  # the float32 forward kernel gives the Reference's result exactly (else within a few ulps)
    several_operations: bool  # the backward formula has several operations, so float32 with float64 is declined


@dataclass(frozen=True, eq=False)
class BinaryElementwise:
    """
    An element-wise op on two arrays of the same shape, (a, b) -> f(a, b), whose first kernel computes it from a and
    b; a second kernel, if any, is its backward: of go and the inputs, (go, a, b) -> (ga, gb), when it declares
    `saved`, else of go alone (Sub's -go). It is tried on every shape of ELEMENTWISE_SHAPES (both inputs alike), a BIG
    one, and `special`; it must refuse inputs of different shapes; its forward kernel, and a backward kernel of
    (go, a, b), are checked against the op's Reference on random shapes, dtypes and layouts.
    """
    special: Call  # two arrays of special values, one for a and one for b
    domains: tuple = ('real', 'real')  # where the values of a and of b lie (DOMAINS)
    saved: tuple = None  # the context keys of a and b, when the second kernel is a backward taking (go, a, b)
    several_operations: bool = False  # that backward's formula has several operations: float32 with float64 declined


@dataclass(frozen=True, eq=False)
class MatrixProduct:
    """
    A product of matrices, with `kernels = (forward kernel, backward kernel)`. Its operands' shapes are given by
    size names, e.g. ('nk', 'km') for a @ b, and its output's likewise ('nm'); each entry of `sizes` gives the sizes
    of one sample (zeros among them). The forward kernel takes the operands, the backward one go and the operands as
    saved in the context under `saved`. Both are checked against the op's Reference on random sizes, dtypes and
    layouts, and must refuse operands whose sizes do not fit. float32 sums the products in BLAS's order, so on special
    values only float64 is compared.
    """
    operands: tuple  # size names of each operand's (rows, columns)
    output: str  # size names of the result's (rows, columns)
    saved: tuple  # the context keys under which the forward saves the operands for the backward kernel
    sizes: tuple  # one dict {size name: size} per sample
    large: dict  # the sizes of a product large enough for BLAS's blocked, threaded paths
    special: Call

    def shapes(self, sizes):
        """The operands' shapes for these sizes."""
        return tuple(tuple(sizes[name] for name in operand) for operand in self.operands)


@dataclass(frozen=True, eq=False)
class Samples:
    """
    An op's sample calls written out, one Case each: a few shapes (odd and empty sizes among them) and keyword
    arguments, with values from `domains` (one per array input); `large` a call big enough for the kernels' blocked,
    threaded or GIL-free paths; `special` a call on special values. The kernels of such an op have property tests
    of their own (tests/test_properties.py, tests/test_properties_cnn.py).
    """
    domains: tuple  # where the values of each array input lie (DOMAINS)
    cases: tuple  # Case(...) each
    special: Call
    large: Case = None
    passthrough: bool = False  # forward returns its input or a view of it: the input's dtype is kept
    bools: bool = True  # bool inputs are meaningful (not for a maximum: bool rows tie)
    special_float32: bool = True  # in float32 too the special values give the Reference's inf/NaN pattern (not where
    #                               the order of float32 sums, or its exp, decides between a number and inf)


# Keyword arguments that must fit the drawn inputs: functions (shapes, rng) -> value for a Case.

def row_indices(shapes, rng):
    """One valid column index (int64) for each row of the first input, an (n, m) matrix."""
    n, m = shapes[0]
    return (rng.integers(0, m, size=n) if m > 0 else np.zeros(n, dtype=np.int64)).astype(np.int64)


def keep_mask(p):
    """Dropout's mask for the first input: keep each element with probability 1 - p."""
    return lambda shapes, rng: rng.random(shapes[0]) >= p


def running_mean(shapes, rng):
    """A running mean per channel (the second dimension of the first input)."""
    return rng.standard_normal(shapes[0][1])


def running_var(shapes, rng):
    """A running variance per channel, in [0.5, 2]."""
    return rng.uniform(0.5, 2.0, shapes[0][1])
