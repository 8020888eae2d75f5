"""The public hypothesis strategies keep their promises: domains, shapes, broadcasting."""
import numpy as np
import pytest
from hypothesis import given

from minitune.testing import strategies as mst


@given(mst.arrays(mst.shapes(), low=0.1, high=4.0))
def test_arrays_stay_in_the_domain(x):
    assert x.dtype == np.float64
    assert ((x >= 0.1) & (x < 4.0)).all()
    assert x.ndim <= 3 and all(1 <= n <= mst.MAX_SIDE for n in x.shape)


@given(mst.arrays((3, 5), low=-2.0, high=3.0, min_abs=0.5))
def test_min_abs_keeps_values_away_from_zero(x):
    assert x.shape == (3, 5)
    assert (np.abs(x) >= 0.5).all() and ((x >= -2.0) & (x < 3.0)).all()


def test_min_abs_covers_both_signs_in_proportion():
    x = mst.uniform(0, 100_000, low=-1.0, high=3.0, min_abs=0.5)
    assert (np.abs(x) >= 0.5).all()
    # the allowed set is [-1, -0.5] u [0.5, 3): lengths 0.5 and 2.5
    assert abs((x < 0).mean() - 0.5 / 3.0) < 0.01


def test_impossible_domains_are_refused():
    with pytest.raises(ValueError, match="low < high"):
        mst.uniform(0, (2,), low=1.0, high=1.0)
    with pytest.raises(ValueError, match="no value"):
        mst.uniform(0, (2,), low=-0.4, high=0.4, min_abs=0.5)


@given(mst.broadcastable_arrays(3, low=1.0, high=2.0))
def test_broadcastable_arrays_broadcast(xs):
    assert len(xs) == 3
    np.broadcast_shapes(*(x.shape for x in xs))       # raises if they do not
    assert all(((x >= 1.0) & (x < 2.0)).all() for x in xs)


@given(mst.shape_and_axis())
def test_shape_and_axis(sa):
    shape, axis = sa
    assert -len(shape) <= axis < len(shape)


def test_same_seed_same_values():
    np.testing.assert_array_equal(mst.uniform(7, (4, 2)), mst.uniform(7, (4, 2)))
