"""The fused ops -- attention, layer_norm with a residual (and dropout), gelu with a bias --
against the unfused compositions of primitive ops they replace, and their gradients against finite
differences (float64, shapes drawn by hypothesis)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitune as mt
import minitune.functional as F
from minitune import dispatch
from minitune.testing import assert_close
from op_helpers import check_grad, leaf, seeds, values

qkv_shapes = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6),
                       st.integers(1, 5))                      # (B, NH, T, HS)


def composed_attention(q, k, v, mask_bias, p, seed, scale):
    """The five ops the fused attention replaces, with the same dropout draws."""
    scores = F.matmul(q, F.transpose(k, (0, 1, 3, 2))) * scale
    if mask_bias is not None:
        scores = scores + mask_bias
    probs = F.softmax(scores, axis=-1)
    if p:
        probs = F.dropout(probs, p, rng=np.random.default_rng(seed))
    return F.matmul(probs, v)


def padding_bias(rng, B, T, dtype=np.float64, all_masked_row=False):
    """BERT's (B, 1, 1, T) additive mask: 0 for a real key, the dtype's minimum for padding."""
    lengths = rng.integers(1, T + 1, size=B)
    if all_masked_row:
        lengths[0] = 0
    mask = np.arange(T)[None, :] < lengths[:, None]
    return ((1.0 - mask) * np.finfo(dtype).min).astype(dtype)[:, None, None, :]


@given(shape=qkv_shapes, p=st.sampled_from([0.0, 0.3]), masked=st.booleans(), seed=seeds)
def test_attention_equals_the_composed_ops_and_passes_gradcheck(shape, p, masked, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (leaf(values(seed + i, shape)) for i in range(3))
    bias = padding_bias(rng, shape[0], shape[2]) if masked else None
    scale = 1.0 / np.sqrt(shape[3])

    def fused(q, k, v):
        # a fresh Generator with the same seed on every call: the same dropout mask each time
        return F.scaled_dot_product_attention(q, k, v, bias, dropout_p=p,
                                              rng=np.random.default_rng(seed))

    out = fused(q, k, v)
    ref = composed_attention(q, k, v, bias, p, seed, scale)
    assert_close(out, ref, rtol=1e-12, atol=1e-13)
    g = values(seed + 7, out.shape)
    out.backward(g)
    grads = [x.grad.copy() for x in (q, k, v)]
    for x in (q, k, v):
        x.zero_grad()
    ref.backward(g)
    for got, x in zip(grads, (q, k, v)):
        assert_close(got, x.grad, rtol=1e-10, atol=1e-12)
    check_grad(fused, q, k, v)


def test_attention_rows_with_every_key_masked_are_uniform_not_nan():
    rng = np.random.default_rng(0)
    B, NH, T, HS = 2, 2, 5, 3
    q, k, v = (mt.tensor(rng.normal(size=(B, NH, T, HS)).astype(np.float32)) for _ in range(3))
    bias = padding_bias(rng, B, T, np.float32, all_masked_row=True)
    out = F.scaled_dot_product_attention(q, k, v, bias).data
    assert np.isfinite(out).all()
    # all keys masked: the softmax is uniform, so each query gets the mean of v
    assert_close(out[0], np.broadcast_to(v.data[0].mean(axis=-2, keepdims=True), out[0].shape),
                 rtol=1e-5, atol=1e-6)


def test_attention_dropout_only_in_training_and_checks_its_arguments():
    rng = np.random.default_rng(1)
    q = mt.tensor(rng.normal(size=(1, 2, 4, 3)))
    off = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5, training=False)
    assert_close(off, F.scaled_dot_product_attention(q, q, q), rtol=0, atol=0)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=1.0)
    with pytest.raises(ValueError, match=r"\(B, NH, T, HS\)"):
        F.scaled_dot_product_attention(q, q[:, :1], q)
    with pytest.raises(ValueError, match="does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, np.zeros((1, 1, 1, 5)))


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(2, 6)), seed=seeds)
def test_layer_norm_with_residual_equals_layer_norm_of_the_sum(shape, seed):
    x, r = leaf(values(seed, shape)), leaf(values(seed + 1, shape))
    w, b = leaf(values(seed + 2, shape[-1:])), leaf(values(seed + 3, shape[-1:]))
    fused = F.layer_norm(x, w, b, 1e-5, residual=r)
    assert_close(fused, F.layer_norm(x + r, w, b, 1e-5), rtol=1e-13, atol=1e-13)
    check_grad(lambda x, r, w, b: F.layer_norm(x, w, b, 1e-5, residual=r), x, r, w, b)


def test_layer_norm_gives_input_and_residual_separate_grad_arrays():
    """The op returns one array as the gradient of both x and the residual; two leaves must
    still get .grad arrays of their own (an optimizer scales them in place)."""
    x, r = leaf(np.ones((2, 3))), leaf(np.arange(6.0).reshape(2, 3))
    w, b = leaf(np.ones(3)), leaf(np.zeros(3))
    (F.layer_norm(x, w, b, residual=r) * leaf(np.arange(6.0).reshape(2, 3))).sum().backward()
    assert_close(x.grad, r.grad, rtol=0, atol=0)
    assert not np.shares_memory(x.grad, r.grad)
    with pytest.raises(ValueError, match="residual"):
        F.layer_norm(x, w, b, residual=leaf(np.ones((3, 2))))


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9)),
       p=st.sampled_from([0.2, 0.5]), with_residual=st.booleans(), fused=st.booleans(),
       seed=seeds)
def test_layer_norm_with_dropout_equals_dropout_then_layer_norm_and_passes_gradcheck(
        shape, p, with_residual, fused, seed):
    x, r = leaf(values(seed, shape)), leaf(values(seed + 1, shape))
    w, b = leaf(values(seed + 2, shape[-1:])), leaf(values(seed + 3, shape[-1:]))
    residual = r if with_residual else None

    def one_op(x, r, w, b):
        # a fresh Generator with the same seed on every call: the same dropout mask each time
        return F.layer_norm(x, w, b, 1e-5, residual=r if with_residual else None,
                            dropout_p=p, rng=np.random.default_rng(seed))

    with dispatch.use_fused(fused):                  # the fused CPU op, or the references
        out = one_op(x, r, w, b)
        apart = F.layer_norm(F.dropout(x, p, rng=np.random.default_rng(seed)), w, b, 1e-5,
                             residual=residual)
        assert_close(out, apart, rtol=0, atol=0)
        g = values(seed + 7, shape)
        out.backward(g)
        grads = [t.grad.copy() for t in (x, r, w, b) if t.grad is not None]
        for t in (x, r, w, b):
            t.zero_grad()
        apart.backward(g)
        for got, t in zip(grads, [t for t in (x, r, w, b) if t.grad is not None]):
            assert_close(got, t.grad, rtol=0, atol=0)
        check_grad(one_op, x, r, w, b)


def test_layer_norm_draws_a_dropout_seed_only_when_dropping():
    x = mt.tensor(np.random.default_rng(0).normal(size=(3, 7)))
    w, b = mt.tensor(np.ones(7)), mt.tensor(np.zeros(7))
    for fused in (True, False):
        with dispatch.use_fused(fused):
            plain = F.layer_norm(x, w, b, residual=x)
            rng = np.random.default_rng(1)
            before = rng.bit_generator.state
            for kwargs in (dict(dropout_p=0.5, training=False), dict(dropout_p=0.0)):
                off = F.layer_norm(x, w, b, residual=x, rng=rng, **kwargs)
                assert_close(off, plain, rtol=0, atol=0)
            assert rng.bit_generator.state == before             # nothing drawn
            # dropping, it draws what the dropout op draws: a seed fused, a mask's draws not
            apart = np.random.default_rng(1)
            F.layer_norm(x, w, b, residual=x, dropout_p=0.5, rng=rng)
            F.dropout(x, 0.5, rng=apart)
            assert rng.bit_generator.state == apart.bit_generator.state
    with pytest.raises(ValueError, match="dropout_p"):
        F.layer_norm(x, w, b, dropout_p=1.0)
    with pytest.raises(ValueError, match="residual"):
        F.layer_norm(x, w, b, residual=mt.tensor(np.ones((7, 3))), dropout_p=0.1)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6)), seed=seeds)
def test_gelu_with_bias_equals_gelu_of_the_sum(shape, seed):
    x, b = leaf(values(seed, shape, -3, 3)), leaf(values(seed + 1, shape[-1:]))
    assert_close(F.gelu(x, bias=b), F.gelu(x + b), rtol=1e-14, atol=1e-15)
    check_grad(lambda x, b: F.gelu(x, bias=b), x, b)


def test_float32_fused_ops_stay_float32():
    rng = np.random.default_rng(3)
    x = mt.tensor(rng.normal(size=(2, 3, 4, 5)).astype(np.float32), requires_grad=True)
    b = mt.tensor(np.zeros(5, np.float32), requires_grad=True)
    bias = padding_bias(rng, 2, 4, np.float32)
    outs = [F.scaled_dot_product_attention(x, x, x, bias, dropout_p=0.1,
                                           rng=np.random.default_rng(0)),
            F.gelu(x, bias=b), F.layer_norm(x, b + 1, b, residual=x)]
    for out in outs:
        assert out.dtype == np.float32
        out.sum().backward()
    assert x.grad.dtype == b.grad.dtype == np.float32
