"""
Checking a backward against central differences: `vg.gradcheck(op_or_function, *arrays)`.

The idea, for a student who has just derived a backward by hand: make the output a single number with a
fixed random projection, L = sum_k sum(R_k * output_k), so that backward() gives dL/dx for every input x.
Then estimate the same derivatives numerically, one element at a time,

    dL/dx[i] ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),

and compare. Everything is done in float64, where the central difference's error (of order eps^2 for the
truncation, of order 1e-16 / eps for rounding) is around 1e-10, far below the default tolerances. A random
projection, rather than a plain sum, makes sure that a backward which mixes up the elements of the upstream
gradient (transposes it, say) is caught: with all-ones upstream gradients it would go unnoticed.

The projection is a small NumPy op defined here, not built from vgrad's own ops, so that a broken built-in op
cannot hide a broken backward.
"""
import math
import numbers

import numpy as np

from .core import Op, TensorNode

__all__ = ['gradcheck', 'GradcheckError']


class GradcheckError(AssertionError):
    """
    Raised by gradcheck when backward's gradients differ from the numerical ones. It is an AssertionError,
    so in pytest it reads like a failed assert; its message is a table of the worst elements.
    """


class _Project(Op):
    """L = sum_k sum(weights[k] * output_k): a scalar from any number of outputs, in plain NumPy."""

    @staticmethod
    def forward(context, *outputs, weights):
        context['weights'] = weights
        return np.asarray(sum(float(np.sum(w * np.asarray(o, dtype=np.float64))) for o, w in zip(outputs, weights)))

    @staticmethod
    def backward(context, go):
        return tuple(w * go for w in context['weights'])


def gradcheck(f, *arrays, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0, **kwargs):
    """
    Check the gradients that backpropagation computes for `f` against central differences, in float64.

        vg.gradcheck(vg.Div, a, b)                       # a built-in op, or your own Op subclass
        vg.gradcheck(MyReLU, x)
        vg.gradcheck(vg.Expand, x, dim=1, repeats=3)     # keyword arguments go to the op
        vg.gradcheck(lambda x, w: vg.sigmoid(x.matmul(w)), x, w)   # or any function of TensorNodes

    :param f: an Op subclass, or a function taking one TensorNode per array and returning a TensorNode or a
        list/tuple of them (an op with several outputs returns a list). Outputs of any shape are reduced to a
        scalar with a fixed random projection.
    :param arrays: the input values; they are copied to float64 and never changed.
    :param eps: the step of the central differences, a finite number > 0.
    :param atol, rtol: an element passes when |analytic - numeric| <= atol + rtol * |numeric|; finite, >= 0.
    :param raise_exception: if False, return False on a mismatch instead of raising.
    :param seed: seeds the random projection (np.random's global state is not touched).
    :param kwargs: constant keyword arguments passed on to f (the op's dim=..., indices=...).
    :return: True if every gradient matches.
    :raises GradcheckError: (an AssertionError) on a mismatch, with a table of the worst elements; also when
        f changes its input arrays in place, which makes its backward (and the check) meaningless.
    """
    _check_setting('eps', eps, 'the step of the central differences', positive=True)
    _check_setting('atol', atol, 'an absolute tolerance')
    _check_setting('rtol', rtol, 'a relative tolerance')
    name = _describe(f)
    function = _as_function(f)
    inputs = [np.array(a.value if isinstance(a, TensorNode) else a, dtype=np.float64) for a in arrays]
    if not inputs:
        raise ValueError('gradcheck: give at least one input array to check the gradient over')

    # Analytic gradients: one forward and one backward through the graph.
    nodes = [TensorNode(x.copy()) for x in inputs]
    outputs = _outputs(function(*nodes, **kwargs), name)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(np.shape(o.value)) for o in outputs]
    loss = _Project.do_forward(*outputs, weights=weights)
    loss.backward()
    analytic = [np.array(node.grad, dtype=np.float64) for node in nodes]
    for i, (node, x) in enumerate(zip(nodes, inputs)):
        if not np.array_equal(node.value, x, equal_nan=True):
            return _fail(f'gradcheck: {name} changed input {i} in place during forward or backward. An op must '
                         f'leave its inputs alone (other ops and backward still need them): compute into a new '
                         f'array, e.g. np.maximum(x, 0) instead of x[x < 0] = 0.', raise_exception)
    loss.clear()

    # Numerical gradients: perturb one element at a time.
    def projected(values):
        outs = _outputs(function(*[TensorNode(v) for v in values], **kwargs), name)
        if [np.shape(o.value) for o in outs] != [w.shape for w in weights]:
            raise ValueError(f'gradcheck: {name} gave outputs of different shapes for nearby inputs')
        # Summed at once, before the perturbed element is restored: an output may be a view of an input.
        return sum(float(np.sum(w * np.asarray(o.value, dtype=np.float64))) for o, w in zip(outs, weights))

    work = [x.copy() for x in inputs]
    numeric = []
    for x in work:
        grad = np.zeros_like(x)
        flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: x is a fresh C-contiguous copy
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = projected(work)
            flat[j] = original - eps
            minus = projected(work)
            flat[j] = original
            gflat[j] = (plus - minus) / (2 * eps)
        numeric.append(grad)

    report = _mismatch_report(name, analytic, numeric, eps, atol, rtol)
    if report:
        return _fail(report, raise_exception)
    return True


def _check_setting(what, value, meaning, positive=False):
    """A ValueError naming gradcheck and the value, rather than a ZeroDivisionError (eps=0) or a check that
    nothing can pass (a negative tolerance) or everything passes (a NaN one)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f'gradcheck: {what}, {meaning}, must be a number, got {value!r}')
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f'gradcheck: {what}, {meaning}, must be a finite number '
                         f'{"greater than 0" if positive else ">= 0"}, got {value}')


def _fail(message, raise_exception):
    if raise_exception:
        raise GradcheckError(message)
    return False


def _describe(f):
    return getattr(f, '__qualname__', None) or getattr(f, '__name__', None) or repr(f)


def _as_function(f):
    """An Op subclass becomes its do_forward; any other callable is used as it is."""
    if isinstance(f, type) and issubclass(f, Op):
        return f.do_forward
    if isinstance(f, type):
        raise TypeError(f'gradcheck: {f.__name__} is a class but not an Op subclass; pass an Op subclass or a '
                        f'function of TensorNodes')
    if not callable(f):
        raise TypeError(f'gradcheck: expected an Op subclass or a function of TensorNodes, got '
                        f'{type(f).__name__}')
    return f


def _outputs(result, name):
    """The output TensorNodes of one call of f, as a list."""
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    for k, out in enumerate(outputs):
        if not isinstance(out, TensorNode):
            raise TypeError(f'gradcheck: {name} returned a {type(out).__name__}'
                            f'{f" as output {k}" if len(outputs) > 1 else ""}; it must return TensorNodes '
                            f'(build the result with ops, e.g. Op.do_forward)')
    if not outputs:
        raise TypeError(f'gradcheck: {name} returned no outputs')
    return outputs


def _mismatch_report(name, analytic, numeric, eps, atol, rtol, worst=5):
    """A table of the worst mismatching elements of each input, or '' when all gradients match."""
    sections = []
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        abs_err = np.abs(a - n)
        bad = ~(abs_err <= atol + rtol * np.abs(n))  # NaN in either counts as a mismatch
        if not bad.any():
            continue
        rel_err = abs_err / np.maximum(np.abs(n), np.finfo(np.float64).tiny)
        order = np.argsort(np.where(bad, np.nan_to_num(abs_err, nan=np.inf), -1.0), axis=None)[::-1]
        rows = [('index', 'analytic', 'numeric', 'abs err', 'rel err')]
        for flat in order[:min(worst, int(bad.sum()))]:
            index = np.unravel_index(flat, a.shape) if a.ndim else ()
            rows.append((str(tuple(int(k) for k in index)), f'{a[index]:.6g}', f'{n[index]:.6g}',
                         f'{abs_err[index]:.2e}', f'{rel_err[index]:.2e}'))
        widths = [max(len(row[c]) for row in rows) for c in range(5)]
        table = '\n'.join('    ' + '  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)
        sections.append(f'input {i}, shape {a.shape}: {int(bad.sum())} of {a.size} elements differ; '
                        f'the worst:\n{table}')
    if not sections:
        return ''
    return (f'gradcheck failed for {name}: the gradients from backward() (analytic) differ from central '
            f'differences (numeric), eps={eps:g}, atol={atol:g}, rtol={rtol:g}.\n' + '\n'.join(sections))
