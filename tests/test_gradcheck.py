"""Tests for vg.gradcheck: it passes right backwards (every built-in op) and catches wrong ones, saying where."""
import re

import numpy as np
import pytest

import vgrad as vg
from op_table import TABLE

F = np.float64


def table_rows(message):
    """The rows of gradcheck's table as (index tuple, analytic, numeric, abs err, rel err)."""
    rows = []
    for line in message.splitlines():
        m = re.match(r'^\s+(\([\d, ]*\))\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$', line)
        if m:
            index = tuple(int(k) for k in re.findall(r'\d+', m.group(1)))
            rows.append((index, *(float(v) for v in m.groups()[1:])))
    return rows


# ---------------------------------------------------------------- right backwards pass

CASES = [(entry, k) for entry in TABLE for k in range(len(entry.samples(F, np.random.default_rng(0))))]


@pytest.mark.parametrize('reference', [False, True], ids=['C', 'Reference'])
@pytest.mark.parametrize('entry,k', CASES, ids=[f'{e.name}-{k}' for e, k in CASES])
def test_passes_every_builtin_op(entry, k, reference):
    sample = entry.samples(F, np.random.default_rng(0))[k]
    op = entry.op.Reference if reference else entry.op
    assert vg.gradcheck(op, *sample.inputs, **sample.kwargs) is True


def test_passes_a_function_of_nodes(rng):
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    assert vg.gradcheck(lambda x, w: vg.logsoftmax(vg.sigmoid(x.matmul(w))), x, w)


def test_accepts_integer_and_scalar_inputs():
    assert vg.gradcheck(vg.Exp, np.array([1, 2, 3])) is True
    assert vg.gradcheck(vg.Log, np.array(0.7)) is True
    assert vg.gradcheck(vg.Sigmoid, vg.TensorNode(np.array([0.5, -1.0]))) is True


# ---------------------------------------------------------------- wrong backwards are caught

class SignErrorDiv(vg.Op):
    """a / b with the classic mistake: the gradient over b lacks its minus sign."""

    @staticmethod
    def forward(context, a, b):
        context['a'], context['b'] = a, b
        return a / b

    @staticmethod
    def backward(context, go):
        a, b = context['a'], context['b']
        return go / b, go * a / (b * b)


def test_sign_error_is_caught_on_the_right_input(rng):
    a, b = rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, (3, 4))
    with pytest.raises(vg.GradcheckError) as err:
        vg.gradcheck(SignErrorDiv, a, b)
    message = str(err.value)
    assert isinstance(err.value, AssertionError)  # reads as a failed assert in pytest
    assert 'SignErrorDiv' in message
    assert 'input 1, shape (3, 4): 12 of 12 elements differ' in message
    assert 'input 0' not in message
    rows = table_rows(message)
    assert len(rows) == 5  # the worst five
    for index, analytic, numeric, abs_err, rel_err in rows:
        assert analytic == pytest.approx(-numeric, rel=1e-5)  # only the sign is wrong
        assert rel_err == pytest.approx(2.0, rel=1e-3)
    abs_errs = [row[3] for row in rows]
    assert abs_errs == sorted(abs_errs, reverse=True)


def offset_op(delta, where):
    """x -> 2x, whose backward adds `delta` to the gradient at index `where` only."""

    class Offset(vg.Op):
        @staticmethod
        def forward(context, x):
            return 2 * x

        @staticmethod
        def backward(context, go):
            g = 2 * go
            g[where] += delta
            return g

    return Offset


def test_table_points_at_the_one_wrong_element(rng):
    with pytest.raises(vg.GradcheckError) as err:
        vg.gradcheck(offset_op(0.25, (1, 2)), rng.standard_normal((3, 4)))
    assert '1 of 12 elements differ' in str(err.value)
    (index, analytic, numeric, abs_err, _), = table_rows(str(err.value))
    assert index == (1, 2)
    assert abs_err == pytest.approx(0.25, rel=1e-4)
    assert analytic - numeric == pytest.approx(0.25, rel=1e-4)


class Scaled(vg.Op):
    """x -> 3x whose backward is off by the relative factor `error` (set on a subclass)."""
    error = 0.0

    @classmethod
    def forward(cls, context, x):
        return 3 * x

    @classmethod
    def backward(cls, context, go):
        return 3 * go * (1 + cls.error)


@pytest.mark.parametrize('error,passes', [(1e-2, False), (1e-4, True)])
def test_relative_tolerance(rng, error, passes):
    op = type('Scaled', (Scaled,), {'error': error})
    x = rng.standard_normal(6)
    assert vg.gradcheck(op, x, atol=0.0, rtol=1e-3, raise_exception=False) is passes


@pytest.mark.parametrize('delta,passes', [(1e-4, False), (1e-7, True)])
def test_absolute_tolerance(rng, delta, passes):
    assert vg.gradcheck(offset_op(delta, (0,)), rng.standard_normal(3), atol=1e-5, rtol=0.0,
                        raise_exception=False) is passes


def test_transposed_upstream_gradient_is_caught(rng):
    # With an all-ones upstream gradient this backward would look right; the random projection exposes it.
    class Transposing(vg.Op):
        @staticmethod
        def forward(context, x):
            return 2 * x

        @staticmethod
        def backward(context, go):
            return 2 * go.T

    assert vg.gradcheck(Transposing, rng.standard_normal((3, 3)), raise_exception=False) is False


def test_missing_gradient_is_caught(rng):
    class NoGradForB(vg.Op):
        @staticmethod
        def forward(context, a, b):
            context['b'] = b
            return a * b

        @staticmethod
        def backward(context, go):
            return go * context['b'], None  # None: "no gradient flows to b", which is wrong here

    with pytest.raises(vg.GradcheckError, match=r'input 1, shape \(4,\): 4 of 4'):
        vg.gradcheck(NoGradForB, rng.standard_normal(4), rng.standard_normal(4))


class ProductAndSum(vg.Op):
    """Two inputs, two outputs: (a * b, a + b)."""

    @staticmethod
    def forward(context, a, b):
        context['a'], context['b'] = a, b
        return a * b, a + b

    @staticmethod
    def backward(context, gprod, gsum):
        a, b = context['a'], context['b']
        return gprod * b + gsum, gprod * a + gsum


class ProductAndSumForgetsSum(ProductAndSum):
    @staticmethod
    def backward(context, gprod, gsum):
        a, b = context['a'], context['b']
        return gprod * b + gsum, gprod * a  # b's gradient misses the second output's part


def test_several_inputs_and_outputs(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    assert vg.gradcheck(ProductAndSum, a, b) is True
    with pytest.raises(vg.GradcheckError) as err:
        vg.gradcheck(ProductAndSumForgetsSum, a, b)
    assert 'input 1, shape (2, 3): 6 of 6 elements differ' in str(err.value)
    assert 'input 0' not in str(err.value)
    # A function returning several nodes is projected the same way.
    assert vg.gradcheck(lambda a, b: [a * b, vg.Exp.do_forward(b)], a, b) is True


def test_wrong_op_inside_a_function_is_caught(rng):
    x = rng.standard_normal((2, 3))
    f = lambda x: vg.Sum.do_forward(SignErrorDiv.do_forward(vg.Exp.do_forward(x), x * x + 1.0))  # noqa: E731
    assert vg.gradcheck(f, x, raise_exception=False) is False


# ---------------------------------------------------------------- side effects and misuse

def test_forward_that_changes_its_input_is_reported(rng):
    class InPlaceReLU(vg.Op):
        @staticmethod
        def forward(context, x):
            x[x < 0] = 0
            context['x'] = x
            return x

        @staticmethod
        def backward(context, go):
            return go * (context['x'] > 0)

    x = rng.standard_normal(5)
    x[0] = -1.0
    before = x.copy()
    with pytest.raises(vg.GradcheckError, match='InPlaceReLU changed input 0 in place'):
        vg.gradcheck(InPlaceReLU, x)
    np.testing.assert_array_equal(x, before)  # the caller's array was copied first


@pytest.mark.usefixtures('np_random_state')
def test_leaves_inputs_and_global_random_state_alone(rng):
    a, b = rng.standard_normal((2, 2)), rng.uniform(1, 2, (2, 2))
    a0, b0 = a.copy(), b.copy()
    np.random.seed(11)
    expected_draw = np.random.randn(3)
    np.random.seed(11)
    vg.gradcheck(vg.Div, a, b)
    np.testing.assert_array_equal(np.random.randn(3), expected_draw)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_misuse_raises_type_errors(rng):
    with pytest.raises(TypeError, match='not an Op subclass'):
        vg.gradcheck(dict, np.ones(2))
    with pytest.raises(TypeError, match='expected an Op subclass or a function'):
        vg.gradcheck(3, np.ones(2))
    with pytest.raises(TypeError, match='returned a ndarray'):
        vg.gradcheck(lambda x: x.value * 2, np.ones(2))
    with pytest.raises(ValueError, match='at least one input'):
        vg.gradcheck(vg.Exp)


@pytest.mark.parametrize('settings,message', [
    ({'eps': 0}, 'gradcheck: eps, the step of the central differences, must be a finite number greater than 0, '
                 'got 0'),
    ({'eps': -1e-6}, 'eps, the step of the central differences, must be a finite number greater than 0, got -1e-06'),
    ({'eps': float('nan')}, 'eps, the step of the central differences, must be a finite number greater than 0, '
                            'got nan'),
    ({'atol': -1e-5}, 'gradcheck: atol, an absolute tolerance, must be a finite number >= 0, got -1e-05'),
    ({'rtol': float('nan')}, 'gradcheck: rtol, a relative tolerance, must be a finite number >= 0, got nan'),
    ({'rtol': float('inf')}, 'gradcheck: rtol, a relative tolerance, must be a finite number >= 0, got inf'),
])
def test_nonsensical_step_and_tolerances_are_refused(settings, message):
    # eps=0 used to be a bare ZeroDivisionError; a negative or NaN tolerance fails (or passes) everything
    with pytest.raises(ValueError) as err:
        vg.gradcheck(vg.Sigmoid, np.ones(3), **settings)
    assert message in str(err.value)
    with pytest.raises(TypeError, match='gradcheck: eps, the step of the central differences, must be a number'):
        vg.gradcheck(vg.Sigmoid, np.ones(3), eps='1e-6')


def test_zero_tolerances_are_allowed(rng):
    assert vg.gradcheck(vg.Sigmoid, rng.standard_normal(3), atol=0.0, rtol=1e-3)
