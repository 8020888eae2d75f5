"""minitune.cpu.layer_norm against the reference ops.nn.layer_norm_forward / _backward, and its
dropout + residual + LayerNorm against the reference dropout then the reference LayerNorm."""
import numpy as np
import pytest

from minitune.autograd import GradTerms
from minitune.cpu import dropout, layer_norm as fused
from minitune.ops import nn as ref
from cpu_helpers import DTYPES, FusedDraws, assert_same, pool_threads  # noqa: F401


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 7, 37), (131, 385)])
@pytest.mark.parametrize("with_residual", [True, False])
def test_layer_norm_matches_reference(dtype, shape, with_residual, pool_threads):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4 + 3).astype(dtype)   # a mean far from 0
    res = rng.standard_normal(shape).astype(dtype) if with_residual else None
    w = rng.standard_normal(shape[-1]).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    y, saved = fused.layer_norm_forward(x, w, b, 1e-12, res)
    y_ref, saved_ref = ref.layer_norm_forward(x, w, b, 1e-12, res)
    assert_same(y, y_ref, dtype)
    assert_same(saved[1], saved_ref[1], dtype)                # rstd (..., 1)
    for got, want in zip(fused.layer_norm_backward(gy, saved),
                         ref.layer_norm_backward(gy, saved_ref)):
        assert_same(got, want, dtype, scale=np.sqrt(x.size))


def test_layer_norm_of_a_constant_row_is_its_bias():
    x = np.full((2, 9), 5.0, np.float32)
    w, b = np.ones(9, np.float32), np.arange(9, dtype=np.float32)
    y, _ = fused.layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))


# ---- dropout + residual + LayerNorm ---------------------------------------------------------

def _inputs(shape, dtype, with_residual, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4 + 3).astype(dtype)
    res = rng.standard_normal(shape).astype(dtype) if with_residual else None
    w, b = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    return x, res, w, b, rng.standard_normal(shape).astype(dtype)


# rows of H = 1, 3, 5, 37 values begin at flat indices that are not multiples of 4 (the mask
# hashes four elements at a time); 131 x 385 cuts into several chunks per thread
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 7, 37), (4, 3, 16), (131, 385)])
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_layer_norm_matches_the_reference_dropout_then_layer_norm(
        dtype, shape, with_residual, p, pool_threads):
    x, res, w, b, gy = _inputs(shape, dtype, with_residual, seed=sum(shape))
    y, saved = fused.dropout_layer_norm_forward(x, w, b, 1e-12, res, p,
                                                np.random.default_rng(7))
    # the references of both ops, the dropout fed the fused masks (cpu_helpers.FusedDraws)
    dropped, drop_saved = ref.dropout_forward(x, p, FusedDraws(7))
    y_ref, ln_saved = ref.layer_norm_forward(dropped, w, b, 1e-12, res)
    assert_same(y, y_ref, dtype)
    assert_same(saved[1], ln_saved[1], dtype)                 # rstd (..., 1)
    gx, gw, gb, gres = fused.dropout_layer_norm_backward(gy, saved)
    gu, gw_ref, gb_ref = ref.layer_norm_backward(gy, ln_saved)
    scale = np.sqrt(x.size)
    assert_same(gx, ref.dropout_backward(gu, drop_saved), dtype, scale=scale)
    assert_same(gres, gu, dtype, scale=scale)
    assert_same(gw, gw_ref, dtype, scale=scale)
    assert_same(gb, gb_ref, dtype, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (2, 7, 37), (131, 385)])
@pytest.mark.parametrize("with_residual", [True, False])
def test_dropout_layer_norm_is_bitwise_the_fused_dropout_then_the_fused_layer_norm(
        dtype, shape, with_residual, pool_threads):
    """What makes a training run bitwise the same as with the two ops apart: every result,
    and the Generator's state after the call (one seed drawn)."""
    x, res, w, b, gy = _inputs(shape, dtype, with_residual)
    rng, rng_apart = np.random.default_rng(3), np.random.default_rng(3)
    y, saved = fused.dropout_layer_norm_forward(x, w, b, 1e-12, res, 0.3, rng)
    dropped, drop_saved = dropout.dropout_forward(x, 0.3, rng_apart)
    y_apart, ln_saved = fused.layer_norm_forward(dropped, w, b, 1e-12, res)
    assert rng.bit_generator.state == rng_apart.bit_generator.state
    for got, want in [(y, y_apart), (saved[0], ln_saved[0]), (saved[1], ln_saved[1])]:
        assert got.dtype == want.dtype and np.array_equal(got, want)
    gx, gw, gb, gres = fused.dropout_layer_norm_backward(gy, saved)
    gu, gw_apart, gb_apart = fused.layer_norm_backward(gy, ln_saved)
    gx_apart = dropout.dropout_backward(gu, drop_saved)
    for got, want in [(gx, gx_apart), (gres, gu), (gw, gw_apart), (gb, gb_apart)]:
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_dropout_layer_norm_drops_about_p_of_x_and_never_the_residual():
    x, res, w, b, gy = _inputs((400, 250), np.float32, with_residual=True)
    _, saved = fused.dropout_layer_norm_forward(x, w, b, 1e-12, res, 0.2,
                                                np.random.default_rng(1))
    gx, _, _, gres = fused.dropout_layer_norm_backward(gy, saved)
    assert abs((gx == 0).mean() - 0.2) < 0.005
    assert (gres != 0).all()
    kept = gx != 0
    scale = np.float32(ref.dropout_threshold(0.2)[1])          # 65536 / (65536 - 13107)
    np.testing.assert_array_equal(gx[kept], gres[kept] * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_under_no_grad_the_forward_skips_xhat_and_gives_the_same_bits(dtype):
    """No backward will run: xhat is not written (None in saved), y is the same to the bit."""
    import minitune as mt
    rng = np.random.default_rng(4)
    x, r = (rng.standard_normal((37, 48)).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal(48).astype(dtype), rng.standard_normal(48).astype(dtype)
    y, saved = fused.layer_norm_forward(x, w, b, 1e-12, residual=r)
    with mt.no_grad():
        y_eval, saved_eval = fused.layer_norm_forward(x, w, b, 1e-12, residual=r)
    assert saved[0] is not None and saved_eval[0] is None
    np.testing.assert_array_equal(y_eval, y)
    np.testing.assert_array_equal(saved_eval[1], saved[1])


# ---- the output's gradient as unsummed terms (autograd.GradTerms) ----------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 7, 37), (131, 385)])
@pytest.mark.parametrize("terms", [1, 2, 3])
@pytest.mark.parametrize("p", [0.0, 0.1])
def test_backward_adds_grad_terms_to_the_bits_of_their_sum(dtype, shape, terms, p,
                                                           pool_threads):
    """Terms added in the row pass, in order: every gradient the bits of the backward given
    ((g0 + g1) + g2), with and without the fused dropout."""
    x, res, w, b, _ = _inputs(shape, dtype, True, seed=len(shape))
    rng = np.random.default_rng(terms)
    gys = [rng.standard_normal(shape).astype(dtype) * 10.0 ** i for i in range(terms)]
    total = gys[0]
    for g in gys[1:]:
        total = total + g
    if p:
        _, saved = fused.dropout_layer_norm_forward(x, w, b, 1e-12, res, p,
                                                    np.random.default_rng(7))
        backward = fused.dropout_layer_norm_backward
    else:
        _, saved = fused.layer_norm_forward(x, w, b, 1e-12, res)
        backward = fused.layer_norm_backward
    for got, want in zip(backward(GradTerms(tuple(gys)), saved), backward(total, saved)):
        np.testing.assert_array_equal(got, want)
