"""Property tests of the elementwise and reduction ops: + - * / ** unary -, exp, log, sqrt, tanh,
sum, mean, max.

Each test draws shapes with hypothesis (broadcasting, size-1 dims, odd sizes), checks the forward
value against the NumPy expression and the gradient against central differences in float64.
"""
import operator

import numpy as np
import pytest
from hypothesis import given

from op_helpers import (away_from_zero, broadcastable, check_forward, check_op, leaf, seeds,
                        shapes, values)

BINARY = {
    "add": (operator.add, values),
    "sub": (operator.sub, values),
    "mul": (operator.mul, values),
    "div": (operator.truediv, away_from_zero),
}


@pytest.mark.parametrize("name", list(BINARY))
@given(shape_pair=broadcastable(), seed=seeds)
def test_binary_broadcasting(name, shape_pair, seed):
    op, second = BINARY[name]
    sa, sb = shape_pair
    check_op(op, op, values(seed, sa), second(seed + 1, sb))


@given(shape_pair=broadcastable(), seed=seeds)
def test_pow_both_inputs(shape_pair, seed):
    # base > 0 so that d/db a**b = a**b log(a) exists
    sa, sb = shape_pair
    check_op(lambda x, y: x ** y, lambda a, b: a ** b,
             values(seed, sa, 0.5, 2.0), values(seed + 1, sb, -2.0, 2.0))


@pytest.mark.parametrize("exponent", [2, 3, -1, 0.5, 2.5])
@given(shape=shapes(), seed=seeds)
def test_pow_scalar_exponent(exponent, shape, seed):
    # integer exponents on any sign; fractional ones on positive bases
    low = -2.0 if isinstance(exponent, int) else 0.3
    a = values(seed, shape, low, 2.0)
    if exponent == -1:
        a = away_from_zero(seed, shape)
    check_op(lambda x: x ** exponent, lambda a: a ** exponent, a)


@pytest.mark.parametrize("name,fn,ref", [
    ("radd", lambda x: 2.5 + x, lambda a: 2.5 + a),
    ("rsub", lambda x: 2.5 - x, lambda a: 2.5 - a),
    ("rmul", lambda x: 2.5 * x, lambda a: 2.5 * a),
    ("rdiv", lambda x: 2.5 / x, lambda a: 2.5 / a),
    ("rpow", lambda x: 2.5 ** x, lambda a: 2.5 ** a),
    ("sub_scalar", lambda x: x - 1.5, lambda a: a - 1.5),
    ("div_scalar", lambda x: x / 4.0, lambda a: a / 4.0),
    ("array_left", lambda x: np.full(x.shape[-1:], 3.0) * x, lambda a: 3.0 * a),
])
@given(shape=shapes(min_dims=1), seed=seeds)
def test_scalar_and_reflected_operands(name, fn, ref, shape, seed):
    check_op(fn, ref, away_from_zero(seed, shape))


UNARY = {
    # name: (tensor fn, numpy reference, domain)
    "neg": (lambda x: -x, np.negative, (-3.0, 3.0)),
    "exp": (lambda x: x.exp(), np.exp, (-3.0, 3.0)),
    "log": (lambda x: x.log(), np.log, (0.2, 4.0)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, (0.2, 4.0)),
    "tanh": (lambda x: x.tanh(), np.tanh, (-3.0, 3.0)),
}


@pytest.mark.parametrize("name", list(UNARY))
@given(shape=shapes(), seed=seeds)
def test_unary(name, shape, seed):
    fn, ref, (low, high) = UNARY[name]
    check_op(fn, ref, values(seed, shape, low, high))


def test_functional_unary_aliases():
    import minitune.functional as F
    a = np.linspace(0.5, 2.0, 6).reshape(2, 3)
    for f, ref in [(F.exp, np.exp), (F.log, np.log), (F.sqrt, np.sqrt), (F.tanh, np.tanh)]:
        check_forward(f(leaf(a)), ref(a))


def test_zero_dim_results_stay_arrays_and_keep_their_gradient():
    # np.tanh of a 0-d array is an np.float64 (a Python float): the product must still treat
    # it as a tensor operand and keep what its gradient needs
    x = leaf(np.array(0.5))
    y = leaf(np.array([1.5, 2.0]))
    (y * x.tanh()).sum().backward()
    assert isinstance(x.tanh().data, np.ndarray)
    np.testing.assert_allclose(x.grad, 3.5 * (1 - np.tanh(0.5) ** 2))
