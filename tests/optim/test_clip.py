"""clip_grad_norm: every norm type, small and non-finite norms left alone, a property test."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitune.nn import Parameter
from minitune.optim import clip_grad_norm


def _grads(rng, scale):
    ps = [Parameter(np.zeros(s)) for s in [(4, 5), (5,), (3, 2, 2)]]
    for p in ps:
        p.grad = rng.normal(size=p.data.shape) * scale
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_clips_to_max_norm(norm_type):
    rng = np.random.default_rng(4)
    ps = _grads(rng, 5.0)
    flat = np.concatenate([p.grad.ravel() for p in ps])
    expected = np.linalg.norm(flat, ord=norm_type)
    before = [p.grad.copy() for p in ps]
    norm = clip_grad_norm(ps, max_norm=1.0, norm_type=norm_type)
    assert isinstance(norm, float) and norm == pytest.approx(expected, rel=1e-12)
    coef = 1.0 / (expected + 1e-6)
    for p, g in zip(ps, before):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12)
    after = np.linalg.norm(np.concatenate([p.grad.ravel() for p in ps]), ord=norm_type)
    assert after == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_small_grads_alone():
    rng = np.random.default_rng(5)
    ps = _grads(rng, 0.01)
    before = [p.grad.copy() for p in ps]
    norm = clip_grad_norm(ps, max_norm=1.0)
    assert norm < 1.0
    for p, g in zip(ps, before):
        np.testing.assert_array_equal(p.grad, g)
    assert clip_grad_norm([Parameter(np.zeros(2))], 1.0) == 0.0      # no grads at all


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_returns_nonfinite_norm_untouched(bad):
    rng = np.random.default_rng(6)
    ps = _grads(rng, 5.0)
    ps[1].grad[2] = bad
    before = [p.grad.copy() for p in ps]
    norm = clip_grad_norm(ps, max_norm=1.0)
    assert (math.isnan(norm) if np.isnan(bad) else norm == math.inf)
    for p, g in zip(ps, before):
        np.testing.assert_array_equal(p.grad, g)


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-3, 1e3), max_norm=st.floats(1e-2, 10.0))
def test_clip_grad_norm_property(scale, max_norm):
    ps = _grads(np.random.default_rng(7), scale)
    ps[0].grad = ps[0].grad.astype(np.float32)
    clip_grad_norm(ps, max_norm)
    after = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in ps))
    assert after <= max_norm * (1 + 1e-6)
    assert ps[0].grad.dtype == np.float32
