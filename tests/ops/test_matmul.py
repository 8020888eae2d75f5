"""Property tests of matmul (batched, broadcast batch dims) and linear against NumPy, with
gradchecks.
"""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minitune.functional as F
from op_helpers import (MAX_SIDE, broadcastable, check_forward, check_grad, leaf, seeds, shapes,
                        values)


@given(batch=broadcastable(max_dims=2, max_side=3), mkn=st.tuples(*[st.integers(1, 4)] * 3),
       seed=seeds)
def test_matmul_batched_with_broadcast_batch_dims(batch, mkn, seed):
    (ba, bb), (m, k, n) = batch, mkn
    a, b = values(seed, ba + (m, k)), values(seed + 1, bb + (k, n))
    ta, tb = leaf(a), leaf(b)
    check_forward(F.matmul(ta, tb), np.matmul(a, b))
    check_forward(ta @ tb, a @ b)
    check_grad(F.matmul, ta, tb)


def test_matmul_with_an_array_operand():
    a, b = values(0, (2, 3)), values(1, (3, 4))
    tb = leaf(b)
    check_forward(a @ tb, a @ b)
    check_grad(lambda y: a @ y, tb)


@given(lead=shapes(min_dims=0, max_dims=2), n_in=st.integers(1, MAX_SIDE),
       n_out=st.integers(1, MAX_SIDE), bias=st.booleans(), seed=seeds)
def test_linear(lead, n_in, n_out, bias, seed):
    x, w, b = values(seed, lead + (n_in,)), values(seed + 1, (n_out, n_in)), values(seed + 2, n_out)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    expected = x @ w.T + (b if bias else 0.0)
    if bias:
        check_forward(F.linear(tx, tw, tb), expected)
        check_grad(F.linear, tx, tw, tb)
    else:
        check_forward(F.linear(tx, tw), expected)
        check_grad(F.linear, tx, tw)


@given(lead=shapes(min_dims=0, max_dims=2), n_in=st.integers(1, MAX_SIDE),
       n_outs=st.lists(st.integers(1, MAX_SIDE), min_size=1, max_size=3), seed=seeds)
def test_stacked_linear_is_several_linears(lead, n_in, n_outs, seed):
    x = values(seed, lead + (n_in,))
    ws = [values(seed + 1 + i, (n, n_in)) for i, n in enumerate(n_outs)]
    bs = [values(seed + 10 + i, n) for i, n in enumerate(n_outs)]
    tx, tws, tbs = leaf(x), [leaf(w) for w in ws], [leaf(b) for b in bs]
    for y, w, b in zip(F.stacked_linear(tx, tws, tbs), ws, bs):
        check_forward(y, x @ w.T + b)
    n = len(n_outs)

    def stacked(x, *params):            # all outputs side by side: one tensor to gradcheck
        return F.concatenate(F.stacked_linear(x, list(params[:n]), list(params[n:])), axis=-1)
    check_grad(stacked, tx, *tws, *tbs)


def test_stacked_linear_names_bad_shapes():
    import pytest
    x = leaf(values(0, (2, 3)))
    with pytest.raises(ValueError, match=r"weights \[\(4, 3\), \(4, 2\)\]"):
        F.stacked_linear(x, [leaf(values(1, (4, 3))), leaf(values(2, (4, 2)))],
                         [leaf(values(3, 4)), leaf(values(4, 4))])
    with pytest.raises(ValueError, match="2 weights but 1 biases"):
        F.stacked_linear(x, [leaf(values(1, (4, 3)))] * 2, [leaf(values(3, 4))])


def test_stacked_linear_with_an_output_left_unused():
    """Only the first output is used (the others are freed before backward): its weights get
    the Linear's gradient, the unused ones zero."""
    x, ws, bs = values(0, (2, 5, 3)), [values(1, (4, 3)), values(2, (6, 3))], [values(3, 4),
                                                                               values(4, 6)]
    tx, tws, tbs = leaf(x), [leaf(w) for w in ws], [leaf(b) for b in bs]
    q = F.stacked_linear(tx, tws, tbs)[0]
    q.sum().backward()
    np.testing.assert_allclose(tws[0].grad, np.ones((2, 5, 4)).reshape(-1, 4).T
                               @ x.reshape(-1, 3))
    np.testing.assert_allclose(tx.grad, np.ones((2, 5, 4)) @ ws[0])
    assert not tws[1].grad.any() and not tbs[1].grad.any()


def test_stacked_linear_takes_gradients_already_joined_as_they_are():
    """When the outputs' gradients are the column blocks of one array (the CPU attention's
    backward makes them so), the backward uses that array as it is, and the result is what
    concatenating them gives; any other layout is concatenated."""
    from minitune.ops import matmul
    edges = [0, 2, 5, 6]
    full = values(0, (3, 4, 6)).reshape(12, 6).reshape(3, 4, 6)   # a view of a (12, 6) array
    gys = [full[..., lo:hi] for lo, hi in zip(edges[:-1], edges[1:])]
    assert matmul._joined(gys, edges) is not None
    np.testing.assert_array_equal(matmul._joined(gys, edges), np.concatenate(gys, axis=-1))
    swapped = [gys[1], gys[0], gys[2]]                   # the right blocks in the wrong order
    assert matmul._joined(swapped, [0, 3, 5, 6]) is None
    assert matmul._joined([g.copy() for g in gys], edges) is None     # three separate arrays
    assert matmul._joined([gys[0], None, gys[2]], edges) is None      # an output left unused
    wider = values(1, (3, 4, 7))                                      # columns left over
    assert matmul._joined([wider[..., lo:hi] for lo, hi in zip(edges[:-1], edges[1:])],
                          edges) is None
