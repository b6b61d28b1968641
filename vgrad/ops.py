"""
The built-in ops. Each is a class with a static forward(context, *arrays) and backward(context, *goutputs)
that call a C kernel in vgrad._C, and a nested class Reference: the same op written in plain NumPy, the
formulas you would derive by hand (and the ones vugrad uses). The references document what the kernels
compute, and the tests check the kernels against them. A reference is itself an Op, so you can build a
graph with it, e.g. `vg.Sigmoid.Reference.do_forward(x)`, and compare.

Each op stores in `context` what vugrad stores, under the same keys, so code that reads them keeps working.

Conventions (see csrc/vgrad.h): float64 results are bit-identical to the Reference's, which are vugrad's: the
kernels run NumPy's own exp, log and sum loops and np.matmul, and do their arithmetic in the formula's
order. float32 inputs give float32 results by faster paths, which may differ from NumPy's in the last bits (and
whose matrix products count subnormal operands as zeros, see vg_matmul); mixed float32/float64 inputs are computed
in float64. For any other dtype (integers, bool, float16) the op
runs its Reference, so the result has the dtype NumPy gives (int64 + int64 is int64), as in vugrad: each
op's forward and backward is a `_C.with_reference` of the C-backed method and the Reference's (see the end
of this file), and a kernel declines what it does not compute. Any memory layout works.

Each op also names, in `kernels`, the functions of vgrad._C it owns: they compute it, and their error messages
name it. (An op may call another op's kernels too: Squeeze's backward is Unsqueeze's.) And it declares, in `tests`,
the inputs it accepts: shapes, where their values lie, keyword arguments, special values (the kinds of declaration
are in vgrad/op_inputs.py). The op classes are the registry of ops: ALL_OPS (at the end) lists them by itself, and
every other list of ops is derived from it or checked against it. `python -m vgrad ops` lists them.
Adding an op, say Tanh, takes
  1. a class here: forward and backward calling its kernels, its NumPy Reference,
     `kernels = ('tanh_forward', 'tanh_backward')` and its test inputs, for an element-wise op of one input like
     Tanh `tests = UnaryElementwise(...)`;
  2. its kernels, forward beside backward, and the functions of vgrad._C that call them, in one C file of csrc/
     (an element-wise op: a section of csrc/elementwise_kernels.h, copied from ReLU's; float64 must give
     NumPy's bits, so a formula with a NumPy function other than exp and log, such as np.tanh, needs NumPy's
     own loop for it, which npyloops.c and vgrad.h then look up as they do exp's and log's: libm's tanh
     differs from NumPy's in the last bit);
  3. a line per kernel in csrc/functions.def, the table of what vgrad._C exports.
vgrad/__init__.py exports it by itself (from ALL_OPS), and the tests build its samples, special values, valid calls
of its kernels and property tests from `tests`. tests/test_registry.py fails, saying what to add where, until each
kernel exists and is tested. (An op declared by `Samples`, the kind for ops unlike the others, also needs a valid
call of each kernel in tests/op_table.py c_calls() and a property test of each in tests/test_properties.py, and
test_registry says so; its refusals of bad inputs, if any, are listed in tests/op_table.py ERRORS.)
"""
import numpy as np

from . import _C
from . import core as _core
from .core import Op
from .op_inputs import (BIG, EIGHT_TARGETS, ELEMENTWISE_SHAPES, SPECIAL, SPECIAL_MATRIX, BinaryElementwise, Call,
                        Case, MatrixProduct, Samples, UnaryElementwise, row_indices)


class Add(Op):
    """Element-wise addition a + b of two arrays of the same shape."""
    kernels = ('add_forward',)
    tests = BinaryElementwise(special=Call(SPECIAL, SPECIAL[::-1]))

    @staticmethod
    def forward(context, a, b):
        return _C.add_forward(a, b)

    @staticmethod
    def backward(context, go):
        return go, go

    class Reference(Op):
        @staticmethod
        def forward(context, a, b):
            return a + b

        @staticmethod
        def backward(context, go):
            return go, go


class Sub(Op):
    """Element-wise subtraction a - b of two arrays of the same shape."""
    kernels = ('sub_forward', 'neg_forward')
    tests = BinaryElementwise(special=Call(SPECIAL, SPECIAL))  # inf - inf where both are inf: NaN

    @staticmethod
    def forward(context, a, b):
        return _C.sub_forward(a, b)

    @staticmethod
    def backward(context, go):
        return go, _C.neg_forward(go)

    class Reference(Op):
        @staticmethod
        def forward(context, a, b):
            return a - b

        @staticmethod
        def backward(context, go):
            return go, -go


class Multiply(Op):
    """Element-wise multiplication a * b of two arrays of the same shape."""
    kernels = ('mul_forward', 'mul_backward')
    tests = BinaryElementwise(special=Call(SPECIAL, SPECIAL[::-1]), saved=('a', 'b'))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, a, b):
        context['a'], context['b'] = a, b
        return _C.mul_forward(a, b)

    @staticmethod
    def backward(context, go):
        return _C.mul_backward(go, context['a'], context['b'])

    class Reference(Op):
        @staticmethod
        def forward(context, a, b):
            context['a'], context['b'] = a, b
            return a * b

        @staticmethod
        def backward(context, go):
            a, b = context['a'], context['b']
            return go * b, go * a  # the local gradient over a is b, and over b it is a


class Div(Op):
    """Element-wise division a / b of two arrays of the same shape (the assignment's question 1)."""
    kernels = ('div_forward', 'div_backward')
    tests = BinaryElementwise(special=Call(SPECIAL, SPECIAL[::-1]), domains=('real', 'nonzero'), saved=('a', 'b'),
                              several_operations=True)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, a, b):
        context['a'], context['b'] = a, b
        return _C.div_forward(a, b)

    @staticmethod
    def backward(context, go):
        return _C.div_backward(go, context['a'], context['b'])

    class Reference(Op):
        @staticmethod
        def forward(context, a, b):
            context['a'], context['b'] = a, b
            return a / b

        @staticmethod
        def backward(context, go):
            a, b = context['a'], context['b']
            # d(a/b)/da = 1/b and d(a/b)/db = -a/b^2
            return go / b, -go * a / (b * b)


class MatrixMultiply(Op):
    """Matrix product a @ b of an (n, k) and a (k, m) matrix, through BLAS."""
    kernels = ('matmul_forward', 'matmul_backward')
    tests = MatrixProduct(operands=('nk', 'km'), output='nm', saved=('a', 'b'),
                          sizes=(dict(n=3, k=4, m=2), dict(n=1, k=1, m=1), dict(n=0, k=3, m=2), dict(n=3, k=0, m=2),
                                 dict(n=2, k=3, m=0), dict(n=5, k=1, m=4)),
                          large=dict(n=130, k=257, m=67), special=Call(SPECIAL_MATRIX, SPECIAL_MATRIX.T))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, a, b):
        context['a'], context['b'] = a, b
        return _C.matmul_forward(a, b)

    @staticmethod
    def backward(context, go):
        return _C.matmul_backward(go, context['a'], context['b'])

    class Reference(Op):
        @staticmethod
        def forward(context, a, b):
            context['a'], context['b'] = a, b
            return np.matmul(a, b)

        @staticmethod
        def backward(context, go):
            a, b = context['a'], context['b']
            return np.matmul(go, b.T), np.matmul(a.T, go)


class BatchMM(Op):
    """
    A single (m, k) matrix times a batch of n vectors given as the rows of an (n, k) matrix: the (n, m)
    result holds matrix @ vector for each vector. This is what Linear uses.
    """
    kernels = ('batchmm_forward', 'batchmm_backward')
    tests = MatrixProduct(operands=('mk', 'nk'), output='nm', saved=('matrix', 'vectors'),
                          sizes=(dict(m=4, k=3, n=5), dict(m=1, k=1, n=1), dict(m=4, k=3, n=0), dict(m=0, k=3, n=5),
                                 dict(m=4, k=0, n=5), dict(m=2, k=6, n=3)),
                          large=dict(m=67, k=257, n=130), special=Call(SPECIAL_MATRIX, SPECIAL_MATRIX))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, matrix, vectors):
        context['matrix'], context['vectors'] = matrix, vectors
        return _C.batchmm_forward(matrix, vectors)

    @staticmethod
    def backward(context, go):
        return _C.batchmm_backward(go, context['matrix'], context['vectors'])

    class Reference(Op):
        @staticmethod
        def forward(context, matrix, vectors):
            context['matrix'], context['vectors'] = matrix, vectors
            return np.matmul(vectors, matrix.T)

        @staticmethod
        def backward(context, go):
            matrix, vectors = context['matrix'], context['vectors']
            return np.matmul(go.T, vectors), np.matmul(go, matrix)


class Log(Op):
    """Element-wise natural logarithm."""
    kernels = ('log_forward', 'log_backward')
    tests = UnaryElementwise(domain='positive', saved='x', float32_exact=False, several_operations=False)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        context['x'] = x
        return _C.log_forward(x)

    @staticmethod
    def backward(context, go):
        return _C.log_backward(go, context['x'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            context['x'] = x
            return np.log(x)

        @staticmethod
        def backward(context, go):
            return go / context['x']


class Exp(Op):
    """Element-wise natural exponent."""
    kernels = ('exp_forward', 'exp_backward')
    tests = UnaryElementwise(domain='real', saved='expd', float32_exact=False, several_operations=False)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        context['expd'] = _C.exp_forward(x)
        return context['expd']

    @staticmethod
    def backward(context, go):
        return _C.exp_backward(go, context['expd'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            context['expd'] = np.exp(x)
            return context['expd']

        @staticmethod
        def backward(context, go):
            return go * context['expd']  # exp is its own derivative


class Sigmoid(Op):
    """Element-wise logistic sigmoid 1 / (1 + exp(-x))."""
    kernels = ('sigmoid_forward', 'sigmoid_backward')
    tests = UnaryElementwise(domain='wide', saved='sigx', float32_exact=False, several_operations=True)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        sigx = _C.sigmoid_forward(x)
        context['sigx'] = sigx
        return sigx

    @staticmethod
    def backward(context, go):
        return _C.sigmoid_backward(go, context['sigx'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            sigx = 1 / (1 + np.exp(-x))
            context['sigx'] = sigx
            return sigx

        @staticmethod
        def backward(context, go):
            sigx = context['sigx']
            return go * sigx * (1 - sigx)  # sigma'(x) = sigma(x) (1 - sigma(x))


class ReLU(Op):
    """Element-wise rectified linear unit max(x, 0) (the assignment's question 9)."""
    kernels = ('relu_forward', 'relu_backward')
    tests = UnaryElementwise(domain='relu', saved='x', float32_exact=True, several_operations=True)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        context['x'] = x
        return _C.relu_forward(x)

    @staticmethod
    def backward(context, go):
        return _C.relu_backward(go, context['x'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            context['x'] = x
            return np.maximum(x, 0)

        @staticmethod
        def backward(context, go):
            # the slope is 1 where x > 0 and 0 elsewhere (we take 0 at x = 0)
            return np.where(context['x'] > 0, go, 0)


class Id(Op):
    """The identity: returns its input itself. Useful to add a named node to a graph while debugging."""
    kernels = ('identity',)
    tests = Samples(domains=('real',), cases=tuple(Case(shape) for shape in ELEMENTWISE_SHAPES), special=Call(SPECIAL),
                    passthrough=True)

    @staticmethod
    def forward(context, x):
        return _C.identity(x)

    @staticmethod
    def backward(context, go):
        return go

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            return x

        @staticmethod
        def backward(context, go):
            return go


class Sum(Op):
    """The sum of all elements of a tensor, as a 0-d array (a scalar)."""
    kernels = ('sum_forward', 'sum_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((3, 4)), Case(()), Case((0,)), Case((0, 3)), Case((5,)), Case((2, 3, 4))),
                    large=Case(BIG), special=Call(SPECIAL[[0, 2, 5]]))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        total = _C.sum_forward(x)  # the kernel first: it checks x and names the op if x is unusable
        context['xsize'] = np.shape(x)
        return total

    @staticmethod
    def backward(context, go):
        return _C.sum_backward(go, context['xsize'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            context['xsize'] = x.shape
            return np.asarray(x.sum())

        @staticmethod
        def backward(context, go):
            # every element contributed with weight 1
            return np.full(context['xsize'], go)


class RowSum(Op):
    """The sum of each row of a matrix: (n, m) -> (n,)."""
    kernels = ('rowsum_forward', 'rowsum_backward')
    tests = Samples(domains=('real',), cases=(Case((3, 4)), Case((1, 1)), Case((0, 3)), Case((3, 0)), Case((5, 1))),
                    large=Case(BIG), special=Call(np.array([[1.0, np.inf], [np.inf, -np.inf], [np.nan, 1.0]])))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        rowsum = _C.rowsum_forward(x)
        context['xshape'] = np.shape(x)
        return rowsum

    @staticmethod
    def backward(context, go):
        return _C.rowsum_backward(go, context['xshape'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            context['xshape'] = x.shape
            return x.sum(axis=1)

        @staticmethod
        def backward(context, go):
            return np.broadcast_to(go[:, None], context['xshape']).copy()


class RowMax(Op):
    """The maximum of each row of a matrix: (n, m) -> (n,). The gradient flows to the (first) maximum."""
    kernels = ('rowmax_forward', 'rowmax_backward')
    tests = Samples(domains=('distinct',), cases=(Case((3, 4)), Case((1, 1)), Case((0, 3)), Case((5, 2)), Case((2, 7))),
                    large=Case(BIG), special=Call(SPECIAL_MATRIX), bools=False)  # (bool rows tie)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        rowmax, idxs = _C.rowmax_forward(x)
        context['xshape'] = np.shape(x)
        context['idxs'] = idxs
        return rowmax

    @staticmethod
    def backward(context, go):
        return _C.rowmax_backward(go, context['idxs'], context['xshape'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            context['xshape'] = x.shape
            context['idxs'] = np.argmax(x, axis=1)
            return np.amax(x, axis=1)

        @staticmethod
        def backward(context, go):
            # zeros, with each row's upstream gradient at the position of that row's maximum
            gx = np.zeros(context['xshape'], dtype=go.dtype)
            gx[np.arange(go.shape[0]), context['idxs']] = go
            return gx


class Normalize(Op):
    """Divide each row of a matrix by its sum, so that the rows sum to one."""
    kernels = ('normalize_forward', 'normalize_backward')
    tests = Samples(domains=('positive',), cases=(Case((3, 4)), Case((1, 1)), Case((0, 3)), Case((3, 0)), Case((5, 2))),
                    large=Case(BIG), special=Call(np.array([[1.0, -1.0], [0.0, 0.0], [np.inf, 1.0], [1e-310, 1e-310]])))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        normalized, sumd = _C.normalize_forward(x)
        context['x'], context['sumd'] = x, sumd
        return normalized

    @staticmethod
    def backward(context, go):
        return _C.normalize_backward(go, context['x'], context['sumd'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            sumd = x.sum(axis=1, keepdims=True)
            context['x'], context['sumd'] = x, sumd
            return x / sumd

        @staticmethod
        def backward(context, go):
            x, sumd = context['x'], context['sumd']
            # y_ij = x_ij / s_i with s_i = sum_k x_ik, so dy_ik/dx_ij = [k == j] / s_i - x_ik / s_i^2
            return go / sumd - ((go * x) / (sumd * sumd)).sum(axis=1, keepdims=True)


class Expand(Op):
    """
    Repeat a singleton dimension: Expand.do_forward(x, dim=d, repeats=r) turns size 1 at dimension d into
    size r, as broadcasting would. Its gradient sums over the repeats.
    """
    kernels = ('expand_forward', 'expand_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((1, 4), dim=0, repeats=3), Case((3, 1), dim=1, repeats=5), Case((1,), dim=0, repeats=4),
                           Case((2, 1, 3), dim=1, repeats=2), Case((1, 3), dim=0, repeats=0),
                           Case((1, 0), dim=0, repeats=3), Case((1, 1), dim=1, repeats=1),
                           Case((3, 1), dim=-1, repeats=2)),
                    large=Case((1, BIG[1]), dim=0, repeats=BIG[0]), special=Call(SPECIAL[None, :], dim=0, repeats=3))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, input, *, dim, repeats):
        context['dim'] = dim
        return _C.expand_forward(input, dim, repeats)

    @staticmethod
    def backward(context, goutput):
        return _C.expand_backward(goutput, context['dim'])

    class Reference(Op):
        @staticmethod
        def forward(context, input, *, dim, repeats):
            context['dim'] = dim
            return np.repeat(input, repeats, axis=dim)

        @staticmethod
        def backward(context, goutput):
            return goutput.sum(axis=context['dim'], keepdims=True)


class Select(Op):
    """
    Pick one element from each row of an (n, m) matrix: Select.do_forward(x, indices=k) gives the vector
    x[i, k[i]] of length n. The indices are constants, not nodes: they get no gradient. (PyTorch's gather
    does this and more.)
    """
    kernels = ('select_forward', 'select_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((3, 4), indices=row_indices), Case((1, 5), indices=row_indices),
                           Case((0, 4), indices=row_indices), Case((4, 1), indices=row_indices),
                           Case((6, 3), indices=row_indices),
                           # other integer dtypes of indices, and a non-contiguous index vector
                           Case((5, 4), indices=np.array([3, 0, 1, 3, 2], dtype=np.int32)),
                           Case((4, 3), indices=np.array([2, 9, 0, 9, 1, 9, 2, 9], dtype=np.uint8)[::2])),
                    large=Case(BIG, indices=row_indices), special=Call(SPECIAL_MATRIX, indices=EIGHT_TARGETS))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, input, *, indices):
        selected = _C.select_forward(input, indices)
        context['input_size'] = np.shape(input)
        context['indices'] = np.reshape(indices, (-1, 1))
        return selected

    @staticmethod
    def backward(context, goutput):
        return _C.select_backward(goutput, context['indices'], context['input_size'])

    class Reference(Op):
        @staticmethod
        def forward(context, input, *, indices):
            context['input_size'] = input.shape
            context['indices'] = np.reshape(indices, (-1, 1))
            return np.take_along_axis(input, context['indices'], axis=1)[:, 0]

        @staticmethod
        def backward(context, goutput):
            # zeros, except at the selected element of each row
            gx = np.zeros(context['input_size'], dtype=goutput.dtype)
            np.put_along_axis(gx, context['indices'], goutput[:, None], axis=1)
            return gx


class Squeeze(Op):
    """Remove the singleton dimension `dim` (a view of the input)."""
    kernels = ('squeeze',)  # its backward is Unsqueeze's kernel
    tests = Samples(domains=('real',),
                    cases=(Case((1, 4), dim=0), Case((3, 1), dim=1), Case((1,), dim=0), Case((2, 1, 3), dim=1),
                           Case((1, 0), dim=0), Case((1, 5)), Case((3, 1), dim=-1)),  # (1, 5): the default dim=0
                    special=Call(SPECIAL[None, :], dim=0), passthrough=True)

    @staticmethod
    def forward(context, input, dim=0):
        context['dim'] = dim
        return _C.squeeze(input, dim)

    @staticmethod
    def backward(context, goutput):
        return _C.unsqueeze(goutput, context['dim'])

    class Reference(Op):
        @staticmethod
        def forward(context, input, dim=0):
            context['dim'] = dim
            return input.squeeze(dim)

        @staticmethod
        def backward(context, goutput):
            return np.expand_dims(goutput, axis=context['dim'])


class Unsqueeze(Op):
    """Insert a singleton dimension at `dim` (a view of the input)."""
    kernels = ('unsqueeze',)  # its backward is Squeeze's kernel
    tests = Samples(domains=('real',),
                    cases=(Case((3, 4), dim=0), Case((3, 4), dim=1), Case((3, 4), dim=2), Case((), dim=0),
                           Case((0, 3), dim=1), Case((5,)), Case((3, 4), dim=-1)),  # (5,): the default dim=0
                    special=Call(SPECIAL, dim=1), passthrough=True)

    @staticmethod
    def forward(context, input, dim=0):
        context['dim'] = dim
        return _C.unsqueeze(input, dim)

    @staticmethod
    def backward(context, goutput):
        return _C.squeeze(goutput, context['dim'])

    class Reference(Op):
        @staticmethod
        def forward(context, input, dim=0):
            context['dim'] = dim
            return np.expand_dims(input, axis=dim)

        @staticmethod
        def backward(context, goutput):
            return goutput.squeeze(context['dim'])


class Affine(Op):
    """
    y = x @ w.T + b for a weight matrix w (m, k), a bias b of m elements, and inputs x (n, k): Linear's
    BatchMM, Expand and Add as one op. It computes the same numbers as that chain with one graph node
    instead of three. (Build vugrad's chain instead inside `with vg.unfused():`.)
    """
    kernels = ('affine_forward', 'affine_backward')
    tests = Samples(domains=('real', 'real', 'real'),
                    cases=(Case((4, 3), (1, 4), (5, 3)), Case((2, 6), (2,), (1, 6)), Case((3, 2), (1, 3), (0, 2)),
                           Case((1, 1), (1, 1), (3, 1)), Case((3, 0), (1, 3), (2, 0))),
                    large=Case((257, 131), (1, 257), (67, 131)),
                    special=Call(SPECIAL_MATRIX, SPECIAL[None, :8], SPECIAL_MATRIX[::-1].copy()), special_float32=False)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, w, b, x):
        context['w'], context['b'], context['x'] = w, b, x
        return _C.affine_forward(w, b, x)

    @staticmethod
    def backward(context, go):
        needs = context.get('needs_input_grad')
        return _C.affine_backward(go, context['w'], context['x'], np.shape(context['b']),
                                  needs is None or needs[2])

    class Reference(Op):
        @staticmethod
        def forward(context, w, b, x):
            context['w'], context['b'], context['x'] = w, b, x
            # BatchMM, Expand (the bias as one row, repeated for every input), Add
            return np.matmul(x, w.T) + np.repeat(np.reshape(b, (1, -1)), x.shape[0], axis=0)

        @staticmethod
        def backward(context, go):
            w, b, x = context['w'], context['b'], context['x']
            go = np.ascontiguousarray(go)  # as vugrad hands it to BatchMM and Expand: np.zeros plus go
            # BatchMM's gradients, and Expand's: the sum over the repeated rows
            return np.matmul(go.T, x), go.sum(axis=0, keepdims=True).reshape(np.shape(b)), np.matmul(go, w)


class LogSoftmax(Op):
    """
    The logarithm of the row-wise softmax of a matrix, with the log-sum-exp trick: logsoftmax's ten ops (RowMax,
    Unsqueeze, Expand, Sub, Exp, RowSum, Log, Unsqueeze, Expand, Sub) as one, computing the same numbers in the
    same order, forward and backward.
    """
    kernels = ('logsoftmax_forward', 'logsoftmax_backward')
    tests = Samples(domains=('real',), cases=(Case((3, 4)), Case((1, 1)), Case((0, 3)), Case((5, 1)), Case((2, 7))),
                    large=Case(BIG), special=Call(SPECIAL_MATRIX), bools=False, special_float32=False)
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x):
        y, context['expd'], context['sumd'], context['idxs'] = _C.logsoftmax_forward(x)
        return y

    @staticmethod
    def backward(context, go):
        return _C.logsoftmax_backward(go, context['expd'], context['sumd'], context['idxs'])

    class Reference(Op):
        @staticmethod
        def forward(context, x):
            # vugrad's logsoftmax, op by op
            cols = x.shape[1]
            xmax = np.repeat(np.expand_dims(np.amax(x, axis=1), 1), cols, axis=1)    # RowMax, Unsqueeze, Expand
            diff = x - xmax                                                          # Sub
            expd = np.exp(diff)                                                      # Exp
            sumd = np.sum(expd, axis=1)                                              # RowSum
            denominator = np.repeat(np.expand_dims(np.log(sumd), 1), cols, axis=1)   # Log, Unsqueeze, Expand
            context['expd'], context['sumd'], context['idxs'] = expd, sumd, np.argmax(x, axis=1)
            return diff - denominator                                                # Sub

        @staticmethod
        def backward(context, go):
            # The ten ops' gradients in the order vugrad's backward reaches them, from the last Sub. Each op
            # gets its output's gradient as vugrad keeps it: np.zeros plus the contributions, so C-ordered.
            expd, sumd, idxs = context['expd'], context['sumd'], context['idxs']
            go = np.ascontiguousarray(go)
            gdenominator = -go                                        # Sub: (go, -go)
            glog = gdenominator.sum(axis=1, keepdims=True)[:, 0]      # Expand, Unsqueeze
            gsumd = glog / sumd                                       # Log: go / x
            gexpd = np.broadcast_to(gsumd[:, None], expd.shape)       # RowSum
            gdiff = go + gexpd * expd                                 # diff: go from Sub, then Exp's go * expd
            gxmax = (-gdiff).sum(axis=1, keepdims=True)[:, 0]         # Sub: (gdiff, -gdiff); Expand, Unsqueeze
            gmax = np.zeros(expd.shape, dtype=gxmax.dtype)            # RowMax
            gmax[np.arange(len(idxs)), idxs] = gxmax
            return gdiff + gmax                                       # x: gdiff from Sub, then RowMax's


class LogCELoss(Op):
    """
    The cross-entropy loss from log-probabilities: minus the sum over the rows of the log-probability of
    each row's target class (logceloss's Select, Sum and Multiply by -1 as one op).
    """
    kernels = ('logceloss_forward', 'logceloss_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((3, 4), targets=row_indices), Case((1, 5), targets=row_indices),
                           Case((0, 4), targets=row_indices), Case((4, 1), targets=row_indices),
                           Case((6, 3), targets=row_indices)),
                    special=Call(SPECIAL_MATRIX, targets=EIGHT_TARGETS))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, logprobs, *, targets):
        loss = _C.logceloss_forward(logprobs, targets)
        context['targets'], context['shape'] = targets, np.shape(logprobs)
        return loss

    @staticmethod
    def backward(context, go):
        return _C.logceloss_backward(go, context['targets'], context['shape'])

    class Reference(Op):
        @staticmethod
        def forward(context, logprobs, *, targets):
            context['targets'], context['shape'] = targets, np.shape(logprobs)
            per_instance = np.take_along_axis(logprobs, np.reshape(targets, (-1, 1)), axis=1)[:, 0]  # Select
            return np.asarray(per_instance.sum() * -1.0)                                            # Sum, * -1.0

        @staticmethod
        def backward(context, go):
            # Multiply's gradient go * -1.0, spread by Sum, placed by Select at each row's target
            targets = context['targets']
            glp = np.zeros(context['shape'], dtype=go.dtype)
            glp[np.arange(len(targets)), targets] = go * -1.0
            return glp


# The one list of the built-in ops: every op class defined above, in order (the CNN toolkit's are added below).
# Each names in `kernels` the functions of vgrad._C it owns. Every other list of ops (vgrad's exports, the README,
# the tests' tables, the functions vgrad._C exports) is checked against this one by tests/test_registry.py.
ALL_OPS = tuple(value for value in list(globals().values())
                if isinstance(value, type) and issubclass(value, Op) and value.__module__ == __name__)

# What vgrad._C exports besides the ops' kernels: the machinery around them. Every name it exports is an op's
# kernel or one of these.
C_HELPERS = {
    'add_into': "current += grad: the one step of backpropagation core.py hands to C",
    'num_threads': "the thread count of the CNN kernels' loops over images (vg.set_num_threads, csrc/threads.c)",
    'cached_empty': "np.empty(shape, dtype) with its memory from the cache of large buffers (csrc/alloc.c)",
    'cached_zeros': "np.zeros(shape, dtype) with its memory from the cache of large buffers: TensorNode.grad",
    'cached_copy': "np.array(a, dtype, order='C') with its memory from the cache: the gradients core.py copies",
    'with_reference': "wraps an op's forward or backward so that the Reference's runs when a kernel declines (below)",
    'UseReference': "the TypeError with which a kernel declines a call, leaving it to the op's Reference",
}

for _op in ALL_OPS:
    # readable names for the references in error messages and reprs
    _op.Reference.__name__ = _op.Reference.__qualname__ = f'{_op.__name__}.Reference'
    # The one rule for what the kernels do not compute: they decline (dtypes other than float32/float64, and
    # float64 layouts whose NumPy order of evaluation they do not reproduce) and the Reference runs instead.
    # A with_reference calls the method above, and the Reference's when it declines; it reads as the method
    # (its __wrapped__), and costs one C call.
    _op.forward = _C.with_reference(_op.forward, _op.Reference.forward)
    _op.backward = _C.with_reference(_op.backward, _op.Reference.backward)
del _op

# TensorNode's operators + - * / @ run these ops. core.py, on which every op is built, does not import this
# module: it gets them here, once, when vgrad imports this module.
_core.Add, _core.Sub, _core.Multiply, _core.Div, _core.MatrixMultiply = Add, Sub, Multiply, Div, MatrixMultiply

# The CNN toolkit's ops (convolution, pooling, dropout, batch norm, cross-entropy, reshape) live in nn_ops.py.
# They are this module's too, so that vgrad.ops has every op: vgrad.ops.Convolution is vgrad.nn_ops.Convolution.
from .nn_ops import NN_OPS  # noqa: E402

globals().update({op.__name__: op for op in NN_OPS})
ALL_OPS = ALL_OPS + NN_OPS
