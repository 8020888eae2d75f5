"""Property tests of the shape ops: indexing (basic and integer-array), reshape, transpose, .T,
concatenate, stack. They move values, so forward must equal NumPy's result exactly and backward
must move the gradient back (adding where an element was read more than once)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitune as mt
import minitune.functional as F
from op_helpers import check_forward, check_grad, leaf, seeds, shapes, values


@st.composite
def basic_index(draw):
    shape = draw(shapes(min_dims=1))
    index = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    return shape, index


@st.composite
def integer_array_index(draw):
    # index arrays drawn with replacement: repeated elements are the interesting case
    shape = draw(shapes(min_dims=1))
    index = draw(hnp.integer_array_indices(
        shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)))
    return shape, index


@pytest.mark.parametrize("indices", [basic_index, integer_array_index])
@given(data=st.data(), seed=seeds)
def test_indexing(indices, data, seed):
    shape, index = data.draw(indices())
    a = values(seed, shape)
    t = leaf(a)
    check_forward(t[index], a[index])
    check_grad(lambda x: x[index], t)


def test_repeated_indices_accumulate_gradient():
    t = leaf(np.arange(4.0))
    y = t[np.array([0, 2, 2, 2, 0])]
    (y * leaf([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    np.testing.assert_array_equal(t.grad, [6.0, 0.0, 9.0, 0.0])


def test_mixed_slice_and_array_index_with_repeats():
    a = np.arange(12.0).reshape(3, 4)
    t = leaf(a)
    index = (slice(None), [1, 1, 3])
    check_forward(t[index], a[index])
    t[index].sum().backward()
    np.testing.assert_array_equal(t.grad, np.tile([0.0, 2.0, 0.0, 1.0], (3, 1)))
    check_grad(lambda x: x[index], leaf(a))


def test_index_with_a_tensor_and_a_boolean_mask():
    a = np.arange(6.0).reshape(2, 3)
    t = leaf(a)
    check_forward(t[mt.tensor([1, 1])], a[[1, 1]])
    mask = a > 2.5
    check_forward(t[mask], a[mask])
    check_grad(lambda x: x[mask] * x[mask], t)


@st.composite
def reshape_target(draw):
    shape = draw(shapes())
    target = list(draw(st.permutations(shape)))
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    extra = draw(st.integers(0, 2))
    target = [1] * extra + target          # inserting size-1 dims keeps the size
    return shape, tuple(target)


@given(st_=reshape_target(), seed=seeds, as_args=st.booleans())
def test_reshape(st_, seed, as_args):
    shape, target = st_
    a = values(seed, shape)
    t = leaf(a)

    def fn(x):
        return x.reshape(*target) if as_args and target else x.reshape(target)

    check_forward(fn(t), a.reshape(target))
    check_grad(fn, t)


@st.composite
def transpose_axes(draw):
    shape = draw(shapes())
    nd = len(shape)
    axes = draw(st.one_of(st.none(), st.permutations(range(nd)).map(tuple)))
    if axes and draw(st.booleans()):
        axes = tuple(a - nd for a in axes)            # negative axes
    return shape, axes


@given(sa=transpose_axes(), seed=seeds)
def test_transpose(sa, seed):
    shape, axes = sa
    a = values(seed, shape)
    t = leaf(a)

    def fn(x):
        return x.transpose() if axes is None else x.transpose(*axes)

    check_forward(fn(t), np.transpose(a, axes))
    check_grad(fn, t)
    check_forward(F.transpose(t, axes) if axes is not None else F.transpose(t), a.transpose(axes))
    if axes is None:                                  # .T is transpose() with no axes
        check_forward(t.T, a.T)


@st.composite
def concat_case(draw):
    shape = draw(shapes(min_dims=1))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    n = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    out = []
    for s in sizes:
        piece = list(shape)
        piece[axis] = s
        out.append(tuple(piece))
    return out, axis


@st.composite
def stack_case(draw):
    shape = draw(shapes(max_dims=2))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return [shape] * draw(st.integers(1, 3)), axis


@pytest.mark.parametrize("op, cases", [("concatenate", concat_case), ("stack", stack_case)])
@given(data=st.data(), seed=seeds)
def test_join(op, cases, data, seed):
    piece_shapes, axis = data.draw(cases())
    arrays = [values(seed + i, s) for i, s in enumerate(piece_shapes)]
    tensors = [leaf(a) for a in arrays]
    join = getattr(F, op)
    check_forward(join(tensors, axis=axis), getattr(np, op)(arrays, axis=axis))
    check_grad(lambda *xs: join(xs, axis=axis), *tensors)


def test_concatenate_with_a_constant_input():
    a, c = leaf(np.ones((2, 3))), mt.tensor(np.zeros((1, 3)), dtype=np.float64)
    y = F.concatenate([c, a, c], axis=0)
    assert y.shape == (4, 3)
    (y * leaf(np.arange(12.0).reshape(4, 3))).sum().backward()
    np.testing.assert_array_equal(a.grad, np.arange(3.0, 9.0).reshape(2, 3))
    assert c.grad is None


@pytest.mark.parametrize("op", ["concatenate", "stack"])
def test_join_gradient_goes_back_to_each_piece(op):
    xs = [leaf(np.full((2, 2), float(i))) for i in range(3)]
    y = getattr(F, op)(xs, axis=1)
    (y * y).sum().backward()
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(x.grad, np.full((2, 2), 2.0 * i))
