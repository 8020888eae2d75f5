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
