"""Property tests of sum, mean and max over every axis form, keepdims, scalar tensors and ties."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_helpers import check_op, leaf, seeds, shape_and_axes, values


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@given(sa=shape_and_axes(), keepdims=st.booleans(), seed=seeds)
def test_reductions(name, sa, keepdims, seed):
    shape, axis = sa
    check_op(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims),
             lambda a: getattr(np, name)(a, axis=axis, keepdims=keepdims),
             values(seed, shape))


def test_reductions_of_a_scalar_tensor():
    t = leaf(np.array(1.5))
    for name in ("sum", "mean", "max"):
        y = getattr(t, name)()
        assert y.shape == ()
        t.grad = None
        y.backward()
        assert t.grad == 1.0


def test_max_splits_the_gradient_between_ties():
    t = leaf([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    t.max(axis=1).sum().backward()
    np.testing.assert_array_equal(t.grad, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_mean_gradient_is_one_over_count():
    t = leaf(np.ones((2, 3, 5)))
    t.mean(axis=(0, 2)).sum().backward()
    np.testing.assert_allclose(t.grad, np.full((2, 3, 5), 1.0 / 10))
