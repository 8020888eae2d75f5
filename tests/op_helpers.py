"""Helpers shared by the op property tests: shape strategies, seeded values, gradcheck wrapper.

Hypothesis draws the *shapes* (and axes, indices); the *values* come from a numpy Generator seeded
by a drawn integer, uniform inside each op's domain. Continuous random values avoid the points
where an op is not differentiable (ties in max, 0 for sqrt/log, 0 divisors), which hypothesis'
shrinking towards 0 would otherwise hit on purpose.
"""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitune as mt
from minitune.testing import assert_close

MAX_SIDE = 4
seeds = st.integers(0, 2**32 - 1)


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=MAX_SIDE):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable(num_shapes=2, min_dims=0, max_dims=3, max_side=MAX_SIDE):
    """Tuples of shapes that broadcast together (size-1 dims and missing leading dims)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims,
                                             max_dims=max_dims, min_side=1,
                                             max_side=max_side).map(lambda s: s.input_shapes)


@st.composite
def shape_and_axis(draw, min_dims=1):
    """A shape and one axis of it (maybe negative): softmax, log_softmax."""
    shape = draw(shapes(min_dims=min_dims))
    return shape, draw(st.integers(-len(shape), len(shape) - 1))


@st.composite
def shape_and_axes(draw, min_dims=1):
    """A shape and an axis argument for it: None, an int (maybe negative) or a tuple
    (reductions)."""
    shape = draw(shapes(min_dims=min_dims))
    nd = len(shape)
    axis = draw(st.one_of(
        st.none(),
        st.integers(-nd, nd - 1),
        st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple)))
    return shape, axis


def values(seed, shape, low=-2.0, high=2.0, dtype=np.float64):
    """Uniform values in [low, high): a numpy array of ``shape``."""
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


def away_from_zero(seed, shape, low=0.5, high=2.0):
    """Values with |v| in [low, high) and random sign (divisors)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def np_softmax(a, axis):
    """Closed-form softmax along ``axis`` (the reference of F.softmax and cross_entropy)."""
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(a, axis):
    """Closed-form log-softmax along ``axis``."""
    m = a.max(axis=axis, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def leaf(array):
    """A float64 leaf Tensor that requires grad."""
    return mt.tensor(np.asarray(array, dtype=np.float64), dtype=np.float64, requires_grad=True)


def check_grad(fn, *inputs, **kwargs):
    """Gradcheck ``fn`` at ``inputs``; raises GradcheckError with the worst element on failure."""
    assert mt.gradcheck(fn, inputs, **kwargs)


def check_forward(out, expected, rtol=1e-12, atol=1e-12):
    """Forward value (a Tensor) against a closed-form NumPy reference; shape and dtype too."""
    expected = np.asarray(expected)
    assert isinstance(out, mt.Tensor)
    assert out.shape == expected.shape, (out.shape, expected.shape)
    assert_close(out, expected, rtol=rtol, atol=atol)
