"""check_op passes a correct op and catches a wrong forward or a planted wrong backward."""
import numpy as np
import pytest
from hypothesis import given

import minitune as mt
import minitune.functional as F
from minitune.backend import get_array_module
from minitune.testing import GradcheckError, check_op
from minitune.testing import strategies as mst


class SiLU(mt.Function):
    """x * sigmoid(x), any shape; ``wrong=True`` plants a backward that forgets a term."""

    def __init__(self, wrong=False):
        self.wrong = wrong

    def forward(self, x):
        xp = get_array_module(x)
        self.x, self.s = x, 1.0 / (1.0 + xp.exp(-x))
        return x * self.s

    def backward(self, gy):
        # gx = gy * s * (1 + x (1 - s))
        if self.wrong:
            return gy * self.s
        return gy * self.s * (1.0 + self.x * (1.0 - self.s))


def silu(x):
    return SiLU().apply(x)


def silu_wrong(x):
    return SiLU(wrong=True).apply(x)


def np_silu(a):
    return a / (1.0 + np.exp(-a))


@given(mst.arrays(mst.shapes()))
def test_a_correct_op_passes(x):
    out = check_op(silu, np_silu, x)
    assert out.shape == x.shape


def test_a_planted_wrong_backward_is_caught_and_named():
    x = mst.uniform(0, (3, 4))
    with pytest.raises(GradcheckError, match=r"silu_wrong backward: .*input 0") as e:
        check_op(silu_wrong, np_silu, x)
    assert e.value.input_index == 0 and e.value.element is not None


def test_a_wrong_backward_is_caught_in_directional_mode_too():
    x = mst.uniform(1, (40, 30))        # 1200 elements: auto picks the directional check
    with pytest.raises(GradcheckError, match="directional"):
        check_op(silu_wrong, np_silu, x)


def test_a_wrong_forward_is_caught():
    with pytest.raises(AssertionError, match="forward vs reference"):
        check_op(silu, lambda a: a / (1.0 + np.exp(-a)) + 1e-9, mst.uniform(0, (5,)))
    with pytest.raises(AssertionError, match="shape"):
        check_op(silu, lambda a: np_silu(a).sum(), mst.uniform(0, (5,)))


@given(mst.broadcastable_arrays(2))
def test_several_inputs_with_broadcasting(xs):
    a, b = xs
    check_op(lambda x, y: x * y.tanh(), lambda x, y: x * np.tanh(y), a, b)


def test_integer_inputs_pass_through_and_wrt_selects():
    w = mst.uniform(0, (6, 3))
    ids = np.array([[0, 5, 5], [2, 1, 0]])
    check_op(F.embedding, lambda i, t: t[i], ids, w)
    # only b differentiated: a stays a numpy array inside fn
    seen = []
    check_op(lambda a, b: (seen.append(type(a)), a * b)[1], lambda a, b: a * b,
             mst.uniform(1, (2,)), mst.uniform(2, (2,)), wrt=[1])
    assert all(t is np.ndarray for t in seen)


def test_forward_only():
    check_op(silu_wrong, np_silu, mst.uniform(0, (4,)), grad=False)
