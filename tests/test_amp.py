"""Mixed precision (minitune/amp.py): the rounding to bfloat16 and TF32, checked against an
independent definition (nearest representable value by float64 arithmetic); the autocast
switch; and the Linear op under autocast on the CPU (products of rounded operands, float32
accumulation; float64 untouched)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitune.functional as F
from minitune import amp
from minitune.tensor import Tensor

MANTISSA = {"bf16": 7, "tf32": 10}


def nearest(x, precision):
    """x (a float32 value as a Python float) rounded to ``precision`` by arithmetic: the two
    neighbours with MANTISSA bits, the nearer one; ties to even (bf16) or away from 0 (tf32)."""
    if not math.isfinite(x) or x == 0.0:
        return x
    bits = MANTISSA[precision]
    e = max(math.frexp(abs(x))[1] - 1, -126)          # float32's subnormals share exponent -126
    step = 2.0 ** (e - bits)
    lo = math.floor(abs(x) / step) * step
    hi = lo + step
    if abs(x) - lo < hi - abs(x):
        r = lo
    elif abs(x) - lo > hi - abs(x):
        r = hi
    elif precision == "tf32":
        r = hi
    else:
        r = lo if round(lo / step) % 2 == 0 else hi
    if r >= 2.0 ** 128:                               # past the format's largest value
        r = math.inf
    return math.copysign(r, x)


SPECIAL = [1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -2.5,
           3.4028235e38, 3.39e38, 1e-40, -1e-45, 1.17549435e-38, 0.1, -0.0, 0.0]


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_rounding_of_chosen_values(precision):
    x = np.array(SPECIAL, dtype=np.float32)
    got = amp.round_to(x, precision)
    want = np.array([nearest(float(v), precision) for v in x], dtype=np.float64)
    assert got.dtype == np.float32
    assert np.array_equal(got.astype(np.float64), want), (x, got, want)
    assert np.signbit(got[SPECIAL.index(-0.0)])


@given(st.lists(st.integers(0, 2 ** 32 - 1), min_size=1, max_size=50),
       st.sampled_from(["bf16", "tf32"]))
def test_rounding_of_any_bit_pattern(patterns, precision):
    x = np.array(patterns, dtype=np.uint32).view(np.float32)
    got = amp.round_to(x, precision)
    for v, g in zip(x, got):
        if np.isnan(v):
            assert np.isnan(g)
        else:
            assert float(g) == nearest(float(v), precision), (v, g)


def test_fp32_and_float64_are_left_alone():
    x = np.linspace(-1, 1, 7)
    assert amp.round_to(x, "bf16") is x
    y = x.astype(np.float32)
    assert amp.round_to(y, "fp32") is y


def test_autocast_sets_and_restores_the_precision():
    assert amp.current() == "fp32"
    with amp.autocast("bf16"):
        assert amp.current() == "bf16"
        with pytest.raises(RuntimeError):
            with amp.autocast("tf32"):
                assert amp.current() == "tf32"
                raise RuntimeError
        assert amp.current() == "bf16"
    assert amp.current() == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        with amp.autocast("fp16"):
            pass


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_linear_under_autocast_multiplies_rounded_operands(precision):
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(3, 5, 16)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.normal(size=(8, 16)).astype(np.float32), requires_grad=True)
    b = Tensor(rng.normal(size=8).astype(np.float32), requires_grad=True)
    gy = rng.normal(size=(3, 5, 8)).astype(np.float32)
    with amp.autocast(precision):
        y = F.linear(x, w, b)
    y.backward(gy)
    r = lambda a: amp.round_to(a, precision).astype(np.float64)     # noqa: E731
    x2, g2 = x.data.reshape(-1, 16), gy.reshape(-1, 8)
    want_y = r(x2) @ r(w.data).T + b.data
    np.testing.assert_allclose(y.data.reshape(-1, 8), want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.grad.reshape(-1, 16), r(g2) @ r(w.data), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w.grad, r(g2).T @ r(x2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.grad, g2.sum(0), rtol=1e-5, atol=1e-5)
    plain = x2.astype(np.float64) @ w.data.T.astype(np.float64) + b.data
    assert np.abs(want_y - plain).max() > 1e-4          # the rounding did something


def test_float64_products_ignore_autocast():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
    with amp.autocast("bf16"):
        y = F.matmul(Tensor(a), Tensor(b))
    np.testing.assert_array_equal(y.data, a @ b)
