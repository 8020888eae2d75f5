"""Hypothesis strategies for property-testing ops: shapes, broadcast-compatible shapes, arrays.

    from hypothesis import given
    from minitune.testing import strategies as mst

    @given(mst.arrays(mst.shapes(), low=0.1, high=4.0))     # log's domain: positive values
    def test_log(x): ...

Hypothesis draws the *shapes* and an integer *seed*; the values come from
``numpy.random.default_rng(seed)``, uniform inside the op's domain. Why not let hypothesis draw
every value? Shrinking pushes values towards 0 and towards ties, exactly the points where many
ops are not differentiable (|x| at 0, max with equal entries, sqrt and log at 0), so a failing
example would shrink into a false alarm. Continuous random values almost surely avoid them; a
failure still shrinks to the smallest shape, and the seed reproduces the values.

This module needs hypothesis (``pip install minitune[dev]``); ``import minitune`` does not.
"""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

#: Largest side of a drawn shape: finite differences cost two forwards per element, so
#: property tests keep arrays small and let the number of examples do the work.
MAX_SIDE = 4

#: Seeds of the value generator.
seeds = st.integers(0, 2**32 - 1)


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=MAX_SIDE):
    """Array shapes: tuples of ``min_dims``..``max_dims`` sides in ``min_side``..``max_side``.

    ``min_dims=0`` includes the scalar shape ``()``.
    """
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=MAX_SIDE):
    """Tuples of ``num_shapes`` shapes that broadcast together, with size-1 dims and missing
    leading dims, e.g. ((3, 1, 4), (2, 1)): what an elementwise op of several inputs must
    handle (and what its backward undoes with ``sum_to``)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=1,
        max_side=max_side).map(lambda s: s.input_shapes)


def uniform(seed, shape, low=-2.0, high=2.0, min_abs=0.0, dtype=np.float64):
    """The values ``arrays`` draws: uniform on [low, high) with every |value| >= min_abs.

    A plain function, so a test can make values for a shape it computed itself.
    """
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    rng = np.random.default_rng(seed)
    if min_abs <= 0:
        return rng.uniform(low, high, size=shape).astype(dtype)
    # the allowed set is [low, -min_abs] u [min_abs, high): draw a position along its length
    neg = max(0.0, min(high, -min_abs) - low)
    pos = max(0.0, high - max(low, min_abs))
    if neg + pos <= 0:
        raise ValueError(f"no value in [{low}, {high}) has |value| >= {min_abs}")
    t = rng.uniform(0.0, neg + pos, size=shape)
    return np.where(t < neg, low + t, max(low, min_abs) + (t - neg)).astype(dtype)


def arrays(shape=None, low=-2.0, high=2.0, min_abs=0.0, dtype=np.float64):
    """numpy arrays with values in an op's domain.

    Args:
        shape: a fixed shape tuple, a strategy of shapes, or None for ``shapes()``.
        low, high: values are uniform on [low, high) (e.g. low=0.1 for log and sqrt).
        min_abs: keep every value at least this far from 0 (divisors: min_abs=0.5).
        dtype: float64 by default, the precision finite differences need.
    """
    if shape is None:
        shape = shapes()
    elif not isinstance(shape, st.SearchStrategy):
        shape = st.just(tuple(shape))
    return st.tuples(shape, seeds).map(
        lambda s: uniform(s[1], s[0], low, high, min_abs, dtype))


def broadcastable_arrays(num_arrays=2, low=-2.0, high=2.0, min_abs=0.0, min_dims=0,
                         max_dims=3, max_side=MAX_SIDE, dtype=np.float64):
    """Tuples of ``num_arrays`` arrays whose shapes broadcast together (see ``arrays``)."""
    return st.tuples(broadcastable_shapes(num_arrays, min_dims, max_dims, max_side), seeds).map(
        lambda s: tuple(uniform(s[1] + i, shape, low, high, min_abs, dtype)
                        for i, shape in enumerate(s[0])))


@st.composite
def shape_and_axis(draw, min_dims=1, max_dims=3, max_side=MAX_SIDE):
    """A shape and one valid axis of it (possibly negative): for softmax-like ops."""
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    return shape, draw(st.integers(-len(shape), len(shape) - 1))
