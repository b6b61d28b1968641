"""csrc/vexp.c: the vectorised float32 exp behind Exp and Sigmoid is within 1 ulp of the correctly rounded
exp over the whole range, and gives libm's answers at the edges (overflow, underflow, subnormals, NaN,
infinities). float64 does not use it: it runs NumPy's own exp loop and gives np.exp's results bit for bit
(tests/test_exact.py checks that in detail)."""
import numpy as np
import pytest

import vgrad._C as C


def ulps(got, want):
    return np.abs(got.astype(np.float64) - want) / np.spacing(want.astype(got.dtype)).astype(np.float64)


def test_float64_is_numpys_exp():
    x = np.concatenate([np.linspace(-708, 708, 400_001), np.random.default_rng(0).standard_normal(10_000)])
    np.testing.assert_array_equal(C.exp_forward(x), np.exp(x))


def test_float32_within_one_ulp_of_the_rounded_float64_exp():
    x = np.linspace(-87, 87, 400_001).astype(np.float32)
    want = np.exp(x.astype(np.float64)).astype(np.float32).astype(np.float64)  # correctly rounded to 0.5 ulp
    assert ulps(C.exp_forward(x), want).max() <= 1.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edges_match_numpy(dtype):
    with np.errstate(over="ignore"):  # 1e300 is inf in float32
        x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.0, 89.0, -87.5, -95.0, -104.0, -110.0, 709.0, 710.0,
                      -708.5, -740.0, -745.0, -746.0, 1e300, -1e300], dtype=dtype)
    with np.errstate(over="ignore", under="ignore"):
        want = np.exp(x)
    got = C.exp_forward(x)
    finite = np.isfinite(want) & (want != 0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    np.testing.assert_allclose(got[finite], want[finite], rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_saturates_cleanly(dtype):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0, np.nan], dtype=dtype)
    with np.errstate(over="ignore"):
        want = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(C.sigmoid_forward(x), want, rtol=4 * np.finfo(dtype).eps)
