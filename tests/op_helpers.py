"""Helpers shared by the op property tests: minitune's public kit (``minitune.testing``), plus a
few names the tests use and the closed-form references several test files share.

The strategies and checks are the very ones users get (docs/testing-gradients.md): hypothesis
draws the *shapes* (and axes, indices) and a seed; the *values* come from a numpy Generator
seeded by it, uniform inside each op's domain (``mst.uniform``).
"""
import numpy as np
from hypothesis import strategies as st

import minitune as mt
from minitune.testing import check_forward, check_op  # noqa: F401  (re-exported)
from minitune.testing import strategies as mst
from minitune.testing.strategies import MAX_SIDE, seeds, shape_and_axis, shapes  # noqa: F401

broadcastable = mst.broadcastable_shapes
values = mst.uniform


def away_from_zero(seed, shape, low=0.5, high=2.0):
    """Values with |v| in [low, high) and random sign (divisors)."""
    return mst.uniform(seed, shape, -high, high, min_abs=low)


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
    """Gradcheck ``fn`` at ``inputs`` (Tensors); raises GradcheckError naming the worst element.
    For tests whose inputs are built by hand; ``check_op`` does both checks from arrays."""
    assert mt.gradcheck(fn, inputs, **kwargs)
